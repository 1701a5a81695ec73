"""The model both peers run: the shipped ONNX graphs and the identity sent in the Hello."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from avfr.codec.runtime.sessions import OnnxManifest, load_manifest
from avfr.codec.runtime.weights import shipped_manifest

__all__ = ["CallModel", "load_call_model"]


@dataclass(frozen=True)
class CallModel:
    """A loaded manifest and the identity the Hello carries.

    The Hello names the keypoint detector, not the generator: the sender's keypoints depend only on its sender
    graph, so any receiver generator trained on that (frozen) detector can draw them, a small one on a CPU and
    a wider one on a GPU.

    Attributes:
        manifest: graph paths and hashes.
        model_id: the detector's name (the manifest's ``detector``; Hello.model_id).
        weights_sha256: sha256 of the sender graph, the detector that makes the keypoints
            (Hello.weights_sha256: a receiver accepts a call iff it holds a generator for that detector).
        path: the manifest file (a browser receiver fetches it), when loaded from one.
        manifest_sha256: sha256 of the manifest file, which pins all three graphs (this generator exactly).
    """

    manifest: OnnxManifest
    model_id: str
    weights_sha256: str
    path: Path | None = None
    manifest_sha256: str = ""

    @property
    def generator(self) -> str:
        """The generator's name (the manifest's ``name``, e.g. "avfr-small")."""
        return self.manifest.name


def load_call_model(manifest_path: str | Path | None = None) -> CallModel:
    """Load a manifest (default: the shipped trained model).

    Raises:
        FileNotFoundError: no such manifest.
        ValueError: not an ONNX manifest.
    """
    path = Path(manifest_path) if manifest_path is not None else shipped_manifest()
    manifest = load_manifest(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return CallModel(manifest, manifest.detector, manifest.sha256["sender"], path, digest)
