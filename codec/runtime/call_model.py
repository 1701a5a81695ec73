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

    Attributes:
        manifest: graph paths and hashes.
        model_id: the manifest's model name (Hello.model_id).
        weights_sha256: sha256 of the manifest file, which pins the sha256 of all three graphs
            (Hello.weights_sha256: two peers agree iff they run the same graphs).
        path: the manifest file (a browser receiver fetches it), when loaded from one.
    """

    manifest: OnnxManifest
    model_id: str
    weights_sha256: str
    path: Path | None = None


def load_call_model(manifest_path: str | Path | None = None) -> CallModel:
    """Load a manifest (default: the shipped trained model).

    Raises:
        FileNotFoundError: no such manifest.
        ValueError: not an ONNX manifest.
    """
    path = Path(manifest_path) if manifest_path is not None else shipped_manifest()
    manifest = load_manifest(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return CallModel(manifest, manifest.name, digest, path)
