"""avfr.codec.data: clips (decode, resample, crop), mel windows, mediapipe priors, the prepared-clip cache,
datasets, the data report and training bundles.

Imports no other room of ``avfr.codec``; ``train`` and ``runtime`` build on it.
"""

from avfr import lazy_exports

_EXPORTS: dict[str, str] = {
    "LOG_FLOOR": "audio",
    "SAMPLES_PER_FRAME": "audio",
    "SAMPLE_RATE": "audio",
    "clip_log_mel": "audio",
    "decode_audio": "audio",
    "log_mel_window": "audio",
    "mel_filterbank": "audio",
    "mel_window": "audio",
    "opus_delay_samples": "audio",
    "opus_roundtrip": "audio",
    "pcm_window": "audio",
    "window_bounds": "audio",
    "load_bundle": "bundle",
    "write_bundle": "bundle",
    "ClipArrays": "cache",
    "FRAME_SIZE": "cache",
    "NUM_LANDMARKS": "cache",
    "PIPELINE_VERSION": "cache",
    "check_entry": "cache",
    "default_cache_dir": "cache",
    "open_clip": "cache",
    "TalkingHeadDataset": "dataset",
    "cached_entries": "lookup",
    "find_entries": "lookup",
    "load_clips": "lookup",
    "open_mapped": "mapped",
    "remove_mapped": "mapped",
    "save_mapped": "mapped",
    "mouth_opening": "mouth",
    "mouth_shape": "mouth",
    "prepare": "preparation",
    "LIP_LANDMARKS": "priors",
    "PriorExtractor": "priors",
    "five_channel": "priors",
    "mesh_edges": "priors",
    "render_mesh": "priors",
    "format_report": "report",
    "discover_clips": "sources",
    "manifest_releases": "sources",
    "CropBox": "video",
    "VideoReader": "video",
    "crop_and_resize": "video",
    "probe_video": "video",
    "square_crop_box": "video",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
