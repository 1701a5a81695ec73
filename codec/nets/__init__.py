"""avfr.codec.nets: the AVFR-GAN networks, one file per block of the paper, the keypoint math and the model assembly.

Imports no other room of ``avfr.codec`` (torch only); ``train`` and ``runtime`` build on it.
"""

from avfr import lazy_exports

_EXPORTS: dict[str, str] = {
    "AudioEncoderConfig": "audio_encoder",
    "MOUTH_STD_PCT": "audio_encoder",
    "MelTrunk": "audio_encoder",
    "MultiScaleDiscriminator": "discriminator",
    "affine_jacobian": "keypoints",
    "affine_points": "keypoints",
    "affine_warp_image": "keypoints",
    "coordinate_grid": "keypoints",
    "inverse_2x2": "keypoints",
    "kp_to_gaussian": "keypoints",
    "matmul_2x2": "keypoints",
    "random_affine": "keypoints",
    "relative_motion": "keypoints",
    "resize_flow": "keypoints",
    "warp": "keypoints",
    "AvfrConfig": "model",
    "AvfrModel": "model",
    "CONFIGS": "model",
    "SPEECH_PREFIXES": "model",
    "WEIGHTS_FORMAT": "model",
    "file_sha256": "model",
    "load_weights": "model",
    "save_weights": "model",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
