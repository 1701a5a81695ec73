"""avfr: a low-bandwidth video-call codec built on Audio-Visual Face Reenactment (AVFR-GAN).

Subpackages, with dependencies pointing one way (``proto <- codec <- sender, receiver <- benchmarks <- cli``):
``avfr.proto`` (wire format), ``avfr.codec`` (networks, data, training, runtime), ``avfr.sender`` /
``avfr.receiver`` (call peers), ``avfr.benchmarks`` (rate-quality harness), ``avfr.cli`` (``avfr-codec``).
Importing ``avfr`` defines ``__version__`` and :func:`lazy_exports`, nothing else.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__version__ = "0.1.0"


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` that import each re-exported name on first use.

    A room re-exports the names other rooms use without importing all its modules (and torch, mediapipe)
    when one name is asked for.

    Args:
        package: the package's ``__name__``.
        exports: exported name -> module of the package that defines it (``"load_clips": "cache"``).

    Returns:
        (``__getattr__``, ``__dir__``) to assign in the package's ``__init__``.
    """
    namespace = importlib.import_module(package).__dict__

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value  # later lookups skip __getattr__
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return getattr_, dir_
