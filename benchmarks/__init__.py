"""avfr.benchmarks: the rate-quality harness behind ``avfr-codec bench`` (anchor encoders, quality metrics, the
report), the loopback call, and the standalone benchmark scripts (``python -m avfr.benchmarks.NAME``).

Imports ``avfr.proto``, ``avfr.codec``, ``avfr.sender`` and ``avfr.receiver``; only ``avfr.cli`` imports it.
"""

from avfr import lazy_exports

_EXPORTS: dict[str, str] = {
    "CALL_SECONDS": "accounting",
    "anchor_specs": "anchors",
    "missing_encoders": "anchors",
    "AUDIO_BITRATE_BPS": "avfr_call",
    "AVFR_POINTS": "avfr_call",
    "AvfrModels": "avfr_call",
    "SOURCE_WEBP_QUALITY": "avfr_call",
    "SenderMemo": "avfr_call",
    "avfr_path": "avfr_call",
    "Evaluator": "evaluator",
    "identity_status": "evaluator",
    "identity_backend": "identity",
    "CallRefusedError": "loopback",
    "loopback_call": "loopback",
    "stats_line": "loopback",
    "stats_loop": "loopback",
    "ffmpeg_exe": "pixel_metrics",
    "run_clip": "rate_quality",
    "BenchConfig": "resume",
    "load_done": "resume",
    "missing_parts": "resume",
    "probe_specs": "resume",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
