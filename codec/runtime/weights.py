"""The shipped model: where its files are and how to load them with their hashes checked.

``models/`` (installed as ``avfr/models``) holds, for each shipped model ``<name>``:

- ``<name>-<sha8>.pt``: torch weights (fp16 tensors + config JSON; ``avfr.codec.nets.model.load_weights``), for
  fine-tuning and re-export;
- ``<name>.json`` and ``<name>-<graph>-<sha8>.onnx``: the three inference graphs (``avfr.codec.runtime.export``),
  run by ``avfr.codec.runtime.sessions`` with onnxruntime.

The file name carries the first 8 hex digits of the file's SHA-256; loaders verify the full hash.
"""

from __future__ import annotations

from pathlib import Path

import avfr

SHIPPED_MODEL = "avfr-small"


def models_dir() -> Path:
    """Folder of the shipped weights (``models/`` of the checkout, ``avfr/models`` of an install)."""
    return Path(avfr.__file__).resolve().parent / "models"


def shipped_manifest(name: str = SHIPPED_MODEL) -> Path:
    """Path of the ONNX manifest ``<name>.json``.

    Raises:
        FileNotFoundError: no such shipped model.
    """
    path = models_dir() / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no shipped model {name!r}: {path} is missing")
    return path


def generator_for(device: str, name: str = SHIPPED_MODEL) -> Path:
    """The manifest of the generator a receiver on ``device`` should draw ``name``'s keypoints with.

    Every shipped manifest trained on the same keypoint detector as ``name`` (same ``detector`` and sender
    graph sha256) reads the same stream; on "cuda" the one sized for a GPU (manifest ``device`` "gpu") is
    preferred when one is shipped, elsewhere (and when none is) ``name`` itself.

    Raises:
        FileNotFoundError: ``name`` is not shipped.
    """
    from avfr.codec.runtime.sessions import load_manifest

    own_path = shipped_manifest(name)
    if device != "cuda":
        return own_path
    own = load_manifest(own_path)
    for path in sorted(models_dir().glob("*.json")):
        try:
            other = load_manifest(path)
        except (ValueError, KeyError, TypeError, OSError):
            continue  # not a manifest of this format
        if (other.device == "gpu" and other.detector == own.detector
                and other.sha256.get("sender") == own.sha256["sender"] and other.num_kp == own.num_kp):
            return path
    return own_path


def shipped_torch_weights(name: str = SHIPPED_MODEL) -> tuple[Path, str]:
    """Path of ``<name>-<sha8>.pt`` and its sha8 (the loader checks the full file against it).

    Raises:
        FileNotFoundError: none, or several candidates (ambiguous).
    """
    found = sorted(models_dir().glob(f"{name}-[0-9a-f]" + "[0-9a-f]" * 7 + ".pt"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one {name}-<sha8>.pt in {models_dir()}, found {len(found)}")
    return found[0], found[0].stem.rsplit("-", 1)[1]
