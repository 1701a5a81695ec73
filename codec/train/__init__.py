"""avfr.codec.train: the training loop with its settings, networks, checkpoints and validation; sampling and
augmentation of training pairs (with their Opus mels), losses and validation metrics.

Imports ``avfr.codec.nets`` and ``avfr.codec.data``, never ``avfr.codec.runtime``.
"""

from avfr import lazy_exports

_EXPORTS: dict[str, str] = {
    "AugmentConfig": "augment",
    "AveragedWeights": "averaging",
    "average_weights": "averaging",
    "BEST_CKPT": "checkpoint",
    "LAST_CKPT": "checkpoint",
    "LOG_CSV": "checkpoint",
    "VAL_CSV": "checkpoint",
    "load_checkpoint": "checkpoint",
    "model_from_checkpoint": "checkpoint",
    "snapshot_name": "checkpoint",
    "TrainConfig": "config",
    "lr_factor": "config",
    "train": "loop",
    "DiscriminatorLoss": "losses",
    "GeneratorLoss": "losses",
    "LossWeights": "losses",
    "WireNoise": "losses",
    "box_mask": "losses",
    "masked_l1": "losses",
    "multiscale_ssim_loss": "losses",
    "ssim": "losses",
    "OPUS_BITRATES_BPS": "mels",
    "SILENT_LOG_MEL": "mels",
    "pixel_metrics": "metrics",
    "PairIndex": "trainset",
    "TrainSet": "trainset",
    "WidenedWeights": "widening",
    "widen_model": "widening",
    "widen_weights": "widening",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
