"""ONNX Runtime inference for the exported graphs (no torch import: sender and receiver run on numpy + ORT).

- :class:`SenderModel`: 5-channel frame -> keypoints + jacobians (graph ``sender``).
- :class:`ReceiverModel`: ``set_source(source5)`` once (graph ``receiver_source``, outputs cached), then
  ``frame(kp, jac, mel)`` per frame (graph ``receiver_frame``) -> uint8 (256, 256, 3) RGB.
- :func:`relative_motion`: numpy twin of :func:`avfr.codec.nets.keypoints.relative_motion` for cross-identity
  calls (apply it to the received keypoints before :meth:`ReceiverModel.frame`).

Providers: ``['CUDAExecutionProvider', 'CPUExecutionProvider']`` only when CUDA is in
``ort.get_available_providers()`` (onnxruntime-gpu installed), else CPU only.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = "avfr-onnx/1"
MANIFEST_DEVICES = ("cpu", "gpu")  # what a generator is sized for (OnnxManifest.device)
HOLD_INPUT = "held_frames"  # (1, 1) float32 input of receiver_frame graphs of ``generator.hold_input`` models
SOURCE_OUTPUTS = ("kp_source", "jac_source", "src64", "src128", "source_out", "feat64", "skip128", "skip256")


def default_providers() -> list[str]:
    """CUDA then CPU when onnxruntime-gpu can use CUDA here, else CPU only."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _check_sha256(path: Path, expected: str | None) -> bytes:
    data = path.read_bytes()
    if expected is not None:
        digest = hashlib.sha256(data).hexdigest()
        if len(expected) < 8 or not digest.startswith(expected.lower()):
            raise ValueError(f"{path}: sha256 {digest} does not match expected {expected}")
    return data


def make_session(
    path: str | Path,
    threads: int | None = None,
    providers: list[str] | None = None,
    expected_sha256: str | None = None,
) -> ort.InferenceSession:
    """Create an ORT session.

    Args:
        path: .onnx file.
        threads: intra-op threads (None: ORT default = all cores).
        providers: execution providers (None: :func:`default_providers`).
        expected_sha256: full hex digest or a prefix of >= 8 chars to verify, or None.

    Raises:
        ValueError: hash mismatch.
        FileNotFoundError: no such file.
    """
    data = _check_sha256(Path(path), expected_sha256)
    so = ort.SessionOptions()
    if threads is not None:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(data, so, providers=providers or default_providers())


def inverse_2x2(m: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Closed-form inverse of (..., 2, 2) matrices (|det| clamped to eps, sign kept)."""
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    det = np.where(det < 0, -1.0, 1.0) * np.maximum(np.abs(det), eps)
    inv = np.stack([np.stack([d, -b], -1), np.stack([-c, a], -1)], -2)
    return (inv / det[..., None, None]).astype(m.dtype)


def relative_motion(
    kp_driving: np.ndarray,
    jac_driving: np.ndarray,
    kp_driving_initial: np.ndarray,
    jac_driving_initial: np.ndarray,
    kp_source: np.ndarray,
    jac_source: np.ndarray,
    movement_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """FOMM relative motion (numpy): ``kp_s + scale (kp_d - kp_d0)``, ``jac_d inv(jac_d0) jac_s``.

    Args:
        kp_*: (..., K, 2) float32; jac_*: (..., K, 2, 2) float32.
        movement_scale: FOMM adapt-movement-scale factor (1.0: off).

    Returns:
        kp (..., K, 2), jac (..., K, 2, 2) float32.
    """
    kp = kp_source + movement_scale * (kp_driving - kp_driving_initial)
    jac = jac_driving @ inverse_2x2(jac_driving_initial) @ jac_source
    return kp.astype(np.float32), jac.astype(np.float32)


@dataclass(frozen=True)
class OnnxManifest:
    """What ``avfr.codec.runtime.export.export_model`` wrote: graph paths, their SHA-256 and K.

    ``detector`` names the keypoint detector (the sender graph, pinned by ``sha256["sender"]``) whose keypoints
    the receiver graphs were trained on: generators of several sizes trained on one frozen detector read the
    same keypoint stream. ``device`` is what the generator is sized for: "cpu" (onnxruntime on a 2-core
    receiver) or "gpu" (a receiver with CUDA: `avfr.codec.runtime.weights.generator_for`).
    """

    name: str
    num_kp: int
    use_audio: bool
    use_priors: bool
    sender: Path
    receiver_source: Path
    receiver_frame: Path
    sha256: dict[str, str]
    detector: str = ""
    device: str = "cpu"


def load_manifest(path: str | Path) -> OnnxManifest:
    """Read ``<name>.json`` written by the exporter (graph files are next to it).

    Raises:
        ValueError: not a manifest of this format.
    """
    p = Path(path)
    data = json.loads(p.read_text())
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{p}: not an {MANIFEST_FORMAT} manifest")
    graphs = data["graphs"]
    device = str(data.get("device", "cpu"))
    if device not in MANIFEST_DEVICES:
        raise ValueError(f"{p}: device {device!r} is not one of {MANIFEST_DEVICES}")
    return OnnxManifest(
        name=str(data["name"]),
        num_kp=int(data["num_kp"]),
        use_audio=bool(data["use_audio"]),
        use_priors=bool(data["use_priors"]),
        sender=p.parent / graphs["sender"]["file"],
        receiver_source=p.parent / graphs["receiver_source"]["file"],
        receiver_frame=p.parent / graphs["receiver_frame"]["file"],
        sha256={k: str(v["sha256"]) for k, v in graphs.items()},
        detector=str(data.get("detector", data["name"])),  # manifests before the field: the model's own name
        device=device,
    )


def _frame5(frame: np.ndarray) -> np.ndarray:
    """(5, H, W) or (1, 5, H, W) float in [0, 1] -> (1, 5, H, W) float32."""
    x = np.asarray(frame, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 5:
        raise ValueError(f"expected a (1, 5, H, W) or (5, H, W) frame, got {x.shape}")
    return x


class SenderModel:
    """Keypoint detector at the sender: 5-channel frame -> kp (K, 2), jac (K, 2, 2)."""

    def __init__(
        self,
        path: str | Path,
        threads: int | None = None,
        providers: list[str] | None = None,
        expected_sha256: str | None = None,
    ) -> None:
        self.session = make_session(path, threads, providers, expected_sha256)
        self.num_kp = int(self.session.get_outputs()[0].shape[1])

    def keypoints(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frame (5, 256, 256) or (1, 5, 256, 256) float32 in [0, 1] -> kp (K, 2) in [-1, 1], jac (K, 2, 2).

        Raises:
            ValueError: bad frame shape.
        """
        kp, jac = self.session.run(None, {"frame": _frame5(frame)})
        return kp[0], jac[0]


class ReceiverModel:
    """Generator at the receiver: cache a source once, then render frames from keypoints + mel."""

    def __init__(
        self,
        source_path: str | Path,
        frame_path: str | Path,
        threads: int | None = None,
        providers: list[str] | None = None,
        expected_sha256: tuple[str | None, str | None] = (None, None),
    ) -> None:
        self.source_session = make_session(source_path, threads, providers, expected_sha256[0])
        self.frame_session = make_session(frame_path, threads, providers, expected_sha256[1])
        self.frame_inputs = [i.name for i in self.frame_session.get_inputs()]
        self._cache: dict[str, np.ndarray] | None = None

    @classmethod
    def from_manifest(cls, manifest: OnnxManifest, threads: int | None = None) -> ReceiverModel:
        """Build from a manifest, verifying both graph hashes."""
        return cls(
            manifest.receiver_source,
            manifest.receiver_frame,
            threads,
            expected_sha256=(manifest.sha256["receiver_source"], manifest.sha256["receiver_frame"]),
        )

    @property
    def has_source(self) -> bool:
        return self._cache is not None

    @property
    def source_keypoints(self) -> tuple[np.ndarray, np.ndarray]:
        """kp (K, 2), jac (K, 2, 2) of the cached source (for relative motion).

        Raises:
            RuntimeError: no source set yet.
        """
        if self._cache is None:
            raise RuntimeError("set_source() has not been called")
        return self._cache["kp_source"][0], self._cache["jac_source"][0]

    @property
    def source_tensors(self) -> dict[str, np.ndarray]:
        """The identity encoder's 8 outputs for the cached source (``SOURCE_OUTPUTS``, batch 1; a copy of the
        dict, the arrays shared): what a batched renderer serving many calls takes instead of the image.

        Raises:
            RuntimeError: no source set yet.
        """
        if self._cache is None:
            raise RuntimeError("set_source() has not been called")
        return dict(self._cache)

    def set_source(self, source: np.ndarray) -> None:
        """Run the identity encoder once: source (5, 256, 256) or (1, 5, 256, 256) float32 in [0, 1]."""
        outs = self.source_session.run(None, {"source": _frame5(source)})
        self._cache = dict(zip(SOURCE_OUTPUTS, outs, strict=True))

    def restore_source(self, tensors: dict[str, np.ndarray]) -> None:
        """Cache a source again from what `source_tensors` returned (no identity encoder run).

        Raises:
            ValueError: not the identity encoder's outputs (``SOURCE_OUTPUTS``).
        """
        if set(tensors) != set(SOURCE_OUTPUTS):
            raise ValueError(f"source tensors must be {SOURCE_OUTPUTS}, got {sorted(tensors)}")
        self._cache = dict(tensors)

    @property
    def uses_hold(self) -> bool:
        """Whether the graph takes ``held_frames`` (models trained with held keypoints)."""
        return HOLD_INPUT in self.frame_inputs

    def frame_float(self, kp: np.ndarray, jac: np.ndarray, mel: np.ndarray, held_frames: int = 0) -> np.ndarray:
        """Render one frame as float.

        Args:
            kp: (K, 2) or (1, K, 2) driving keypoints (already relative-adapted if wanted).
            jac: (K, 2, 2) or (1, K, 2, 2).
            mel: (80, 19) or (1, 1, 80, 19) log-mel window (ignored by no-audio models).
            held_frames: for how many frames ``kp`` have been held in place of lost ones (0: this frame's
                own); models without the input ignore it.

        Returns:
            (1, 3, 256, 256) float32 in (0, 1).

        Raises:
            RuntimeError: no source set.
            ValueError: bad shapes.
        """
        if self._cache is None:
            raise RuntimeError("set_source() has not been called")
        k = self._cache["kp_source"].shape[1]
        kp_a = np.asarray(kp, dtype=np.float32).reshape(1, k, 2)
        jac_a = np.asarray(jac, dtype=np.float32).reshape(1, k, 2, 2)
        mel_a = np.asarray(mel, dtype=np.float32)
        mel_a = mel_a.reshape(1, 1, *mel_a.shape[-2:])
        feed = dict(self._cache)
        feed.update(kp_driving=kp_a, jac_driving=jac_a, mel=mel_a)
        feed[HOLD_INPUT] = np.full((1, 1), max(0, int(held_frames)), np.float32)
        (out,) = self.frame_session.run(None, {name: feed[name] for name in self.frame_inputs})
        return out

    def frame(self, kp: np.ndarray, jac: np.ndarray, mel: np.ndarray, held_frames: int = 0) -> np.ndarray:
        """Render one frame: same arguments as :meth:`frame_float` -> uint8 (256, 256, 3) RGB."""
        out = self.frame_float(kp, jac, mel, held_frames)
        return np.clip(out[0].transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
