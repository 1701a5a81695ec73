"""Identity metric of the rate-quality benchmark (``avfr-codec bench``), also for cross-identity reenactment.

:class:`IdentityEmbedder`: dlib's 128-d face-recognition embedding (``face_recognition_models``, optional
``[bench]`` extra); distance < 0.6 is dlib's "same person" threshold. :func:`identity_backend` says whether it
can run, and why not.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def identity_backend() -> tuple[bool, str]:
    """Whether the dlib identity embedding can run here.

    Returns:
        (available, "dlib <version> + face_recognition_models" or the reason it is not).
    """
    if importlib.util.find_spec("dlib") is None:
        return False, ("dlib is not installed (optional extra [bench]: pip install dlib-bin 'setuptools<81' Click; "
                       "pip install --no-deps face_recognition_models)")
    if _dlib_models_dir() is None:
        return False, "face_recognition_models is not installed (pip install --no-deps face_recognition_models)"
    import dlib

    return True, f"dlib {dlib.__version__} + face_recognition_models (dlib_face_recognition_resnet_model_v1)"


def _dlib_models_dir() -> Path | None:
    spec = importlib.util.find_spec("face_recognition_models")  # found without importing (it imports pkg_resources)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "models"
    return path if (path / "dlib_face_recognition_resnet_model_v1.dat").exists() else None


class IdentityEmbedder:
    """dlib ResNet face embedding (128-d, unit scale: same person < 0.6) of RGB frames.

    The face box comes from dlib's HOG detector, or the whole frame when it finds none (talking-head crops
    fill the frame); alignment uses dlib's 5-point shape predictor.

    Raises:
        ImportError: dlib or face_recognition_models is missing (see :func:`identity_backend`).
    """

    def __init__(self) -> None:
        ok, why = identity_backend()
        if not ok:
            raise ImportError(why)
        import dlib

        models = _dlib_models_dir()
        if models is None:  # identity_backend checked it; keeps type checkers happy
            raise ImportError("face_recognition_models is not installed")
        self._source: tuple[bytes, np.ndarray] | None = None  # (digest, embedding) of the last source image
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        self._dlib = dlib

    def embed(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB -> float64 (128,) embedding."""
        image = np.ascontiguousarray(rgb, dtype=np.uint8)
        boxes = self._detector(image, 0)
        if len(boxes):
            box = max(boxes, key=lambda r: r.width() * r.height())
        else:
            box = self._dlib.rectangle(0, 0, image.shape[1] - 1, image.shape[0] - 1)
        shape = self._shape(image, box)
        return np.array(self._net.compute_face_descriptor(image, shape), np.float64)

    def distance(self, frames: Sequence[np.ndarray], source: np.ndarray) -> float:
        """Mean embedding distance of frames to the source image.

        Args:
            frames: uint8 (H, W, 3) RGB frames (subsample long videos: ~0.1 s per frame).
            source: uint8 (H, W, 3) RGB source image.
        """
        image = np.ascontiguousarray(source, dtype=np.uint8)
        digest = hashlib.blake2b(image.tobytes(), digest_size=16).digest() + repr(image.shape).encode()
        if self._source is None or self._source[0] != digest:  # one source serves every row of a clip
            self._source = (digest, self.embed(image))
        ref = self._source[1]
        return float(np.mean([np.linalg.norm(self.embed(f) - ref) for f in frames]))
