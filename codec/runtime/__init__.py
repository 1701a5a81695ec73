"""avfr.codec.runtime: ONNX export, onnxruntime sessions, weights and their hashes, and what both call peers use
(the call model, the source-image codec, the Opus encoder/decoder).

Imports ``avfr.codec.nets`` and ``avfr.codec.data``, never ``avfr.codec.train``; ``avfr.sender`` and
``avfr.receiver`` share it instead of importing each other.
"""

from avfr import lazy_exports

_EXPORTS: dict[str, str] = {
    "CallModel": "call_model",
    "load_call_model": "call_model",
    "ExportedModel": "export",
    "SOURCE_OUTPUTS": "export",
    "example_inputs": "export",
    "export_model": "export",
    "OPUS_FRAME_SAMPLES": "opus",
    "OpusDecoder": "opus",
    "OpusEncoder": "opus",
    "ReceiverModel": "sessions",
    "SenderModel": "sessions",
    "load_manifest": "sessions",
    "make_session": "sessions",
    "relative_motion": "sessions",
    "MAX_SOURCE_SIDE_PX": "source_image",
    "SOURCE_FORMAT": "source_image",
    "decode_source_image": "source_image",
    "encode_source_image": "source_image",
    "source_image_size": "source_image",
    "source_input": "source_image",
    "SHIPPED_MODEL": "weights",
    "generator_for": "weights",
    "models_dir": "weights",
    "shipped_manifest": "weights",
    "shipped_torch_weights": "weights",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
