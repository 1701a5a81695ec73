"""avfr.benchmarks: the rate-quality harness behind ``avfr-codec bench`` (anchor encoders, quality metrics, the
report), the loopback call, and the standalone benchmark scripts (``python -m avfr.benchmarks.NAME``).

Imports ``avfr.proto``, ``avfr.codec``, ``avfr.sender`` and ``avfr.receiver``; only ``avfr.cli`` imports it.
"""

from avfr import lazy_exports

_EXPORTS: dict[str, str] = {
    "anchor_specs": "anchors",
    "missing_encoders": "anchors",
    "CallRefusedError": "loopback",
    "loopback_call": "loopback",
    "stats_line": "loopback",
    "stats_loop": "loopback",
    "ffmpeg_exe": "quality",
    "identity_backend": "quality",
    "AVFR_POINTS": "rate_quality",
    "AvfrModels": "rate_quality",
    "SenderMemo": "rate_quality",
    "avfr_path": "rate_quality",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
