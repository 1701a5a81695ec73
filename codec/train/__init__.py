"""avfr.codec.train: the training loop, its checkpoints and validation, sampling of training pairs, losses and
validation metrics.

Imports ``avfr.codec.nets`` and ``avfr.codec.data``, never ``avfr.codec.runtime``.
"""

from avfr import lazy_exports

_EXPORTS: dict[str, str] = {
    "BEST_CKPT": "loop",
    "LAST_CKPT": "loop",
    "LOG_CSV": "loop",
    "TrainConfig": "loop",
    "VAL_CSV": "loop",
    "load_checkpoint": "loop",
    "lr_factor": "loop",
    "model_from_checkpoint": "loop",
    "snapshot_name": "loop",
    "train": "loop",
    "DiscriminatorLoss": "losses",
    "GeneratorLoss": "losses",
    "LossWeights": "losses",
    "WireNoise": "losses",
    "box_mask": "losses",
    "masked_l1": "losses",
    "multiscale_ssim_loss": "losses",
    "ssim": "losses",
    "pixel_metrics": "metrics",
    "AugmentConfig": "trainset",
    "OPUS_BITRATES_BPS": "trainset",
    "PairIndex": "trainset",
    "SILENT_LOG_MEL": "trainset",
    "TrainSet": "trainset",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
