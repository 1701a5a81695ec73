"""`Hello` (first message of a call), the `Session` built from it, and the receiver's acceptance check."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from avfr.proto.control import Error
from avfr.proto.errors import ErrorCode, ProtocolError
from avfr.proto.framing import (
    WIRE_VERSION,
    MessageType,
    check_bool,
    check_float,
    check_int,
    check_str,
    expect_type,
    pack_body,
    unpack_body,
)
from avfr.proto.quant import MAX_BITS, MAX_JAC_ABS_MAX, MIN_BITS, MIN_JAC_ABS_MAX, QuantParams

__all__ = [
    "CLOCK_RATE_HZ",
    "MAX_NUM_KP",
    "AudioParams",
    "Hello",
    "Session",
    "ModelInfo",
    "Capabilities",
    "validate_hello",
    "encode_hello",
    "decode_hello",
]

CLOCK_RATE_HZ = 90_000  # the media clock of ts_90k, shared by keypoints and audio
MAX_NUM_KP = 64
MAX_FPS = 120
MAX_KEY_INTERVAL_FRAMES = 10_000
MODEL_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
CODEC_RE = re.compile(r"[a-z0-9]{1,16}")
OPUS_SAMPLE_RATES_HZ = (8000, 12000, 16000, 24000, 48000)
OPUS_FRAME_MS = (10, 20, 40, 60)


@dataclass(frozen=True)
class AudioParams:
    """The audio stream of a call (one Opus packet per AUDIO message).

    Attributes:
        codec: "opus" (the only codec defined in version 1; others are refused, not malformed).
        sample_rate_hz: Opus decode rate, one of 8000/12000/16000/24000/48000.
        channels: 1 (mono speech) or 2.
        frame_ms: duration of one packet: 10, 20, 40 or 60.
        bitrate_bps: target Opus bitrate.
    """

    codec: str = "opus"
    sample_rate_hz: int = 16_000
    channels: int = 1
    frame_ms: int = 20
    bitrate_bps: int = 16_000

    def __post_init__(self) -> None:
        check_str(self.codec, "audio.codec", 16, CODEC_RE)
        check_int(self.sample_rate_hz, "audio.sample_rate_hz", 8000, 48_000)
        check_int(self.channels, "audio.channels", 1, 2)
        check_int(self.frame_ms, "audio.frame_ms", 1, 120)
        check_int(self.bitrate_bps, "audio.bitrate_bps", 500, 512_000)

    @property
    def ts_step_90k(self) -> int:
        """ts_90k increment between consecutive audio packets."""
        return self.frame_ms * (CLOCK_RATE_HZ // 1000)


@dataclass(frozen=True)
class Hello:
    """First message on the reliable channel: what the sender will send and with which model.

    Attributes:
        model_id: name of the keypoint detector that produced the keypoints (e.g. "avfr-small"); any generator
            trained on that detector can draw them (SPEC.md, rule 7).
        weights_sha256: lowercase hex sha256 of the detector's weights (the sender graph).
        num_kp: K, keypoints per frame.
        fps: keypoint packets per second; 90000 / fps must be an integer (ts_90k step).
        quant: bit depths and jacobian range of the keypoint stream.
        key_interval_frames: the sender sends a key packet at least every this many frames.
        audio: the audio stream's parameters.
        causal_window: True: the audio window of frame i is the 200 ms before it (no look-ahead);
            False: centred on it (100 ms look-ahead).
        version: wire version (the tag's high nibble; always WIRE_VERSION once decoded).
    """

    model_id: str
    weights_sha256: str
    num_kp: int = 10
    fps: int = 25
    quant: QuantParams = field(default_factory=QuantParams)
    key_interval_frames: int = 100
    audio: AudioParams = field(default_factory=AudioParams)
    causal_window: bool = False
    version: int = WIRE_VERSION

    def __post_init__(self) -> None:
        check_str(self.model_id, "Hello.model_id", 64, MODEL_ID_RE)
        check_str(self.weights_sha256, "Hello.weights_sha256", 64, SHA256_RE)
        _check_media(self, "Hello")


@dataclass(frozen=True)
class Session:
    """What decoding a call's media needs; built from the accepted Hello (`Session.from_hello`).

    Attributes:
        num_kp: K.
        fps: keypoint frames per second.
        quant: bit depths and ranges.
        key_interval_frames: longest run of delta packets the sender promised.
        audio: the audio stream's parameters.
        causal_window: audio window mode.
        version: wire version.
    """

    num_kp: int = 10
    fps: int = 25
    quant: QuantParams = field(default_factory=QuantParams)
    key_interval_frames: int = 100
    audio: AudioParams = field(default_factory=AudioParams)
    causal_window: bool = False
    version: int = WIRE_VERSION

    def __post_init__(self) -> None:
        _check_media(self, "Session")

    @classmethod
    def from_hello(cls, hello: Hello) -> Session:
        """The session a receiver runs after accepting `hello`."""
        return cls(hello.num_kp, hello.fps, hello.quant, hello.key_interval_frames, hello.audio,
                   hello.causal_window, hello.version)

    @property
    def ts_step_90k(self) -> int:
        """Nominal ts_90k increment between consecutive keypoint frames (3600 at 25 fps)."""
        return CLOCK_RATE_HZ // self.fps


def _check_media(msg: Hello | Session, name: str) -> None:
    """Checks shared by Hello and Session (everything but the model)."""
    check_int(msg.num_kp, f"{name}.num_kp", 1, MAX_NUM_KP)
    check_int(msg.fps, f"{name}.fps", 1, MAX_FPS)
    if CLOCK_RATE_HZ % msg.fps:
        raise ProtocolError(f"{name}.fps={msg.fps} does not divide the {CLOCK_RATE_HZ} Hz media clock")
    if not isinstance(msg.quant, QuantParams):
        raise ProtocolError(f"{name}.quant must be QuantParams, got {type(msg.quant).__name__}")
    check_int(msg.key_interval_frames, f"{name}.key_interval_frames", 1, MAX_KEY_INTERVAL_FRAMES)
    if not isinstance(msg.audio, AudioParams):
        raise ProtocolError(f"{name}.audio must be AudioParams, got {type(msg.audio).__name__}")
    check_bool(msg.causal_window, f"{name}.causal_window")
    check_int(msg.version, f"{name}.version", WIRE_VERSION, WIRE_VERSION)


@dataclass(frozen=True)
class ModelInfo:
    """A generator the receiver holds, by the keypoint detector it was trained on (what a Hello names)."""

    model_id: str
    weights_sha256: str
    num_kp: int = 10


@dataclass(frozen=True)
class Capabilities:
    """What a receiver can decode and render; `validate_hello` checks a peer's Hello against it.

    Attributes:
        models: the models it holds (id, weights hash, K).
        fps: frame rates it renders.
        kp_bits: (min, max) keypoint bit depth accepted.
        jac_bits: (min, max) jacobian bit depth accepted.
        jac_abs_max: (min, max) jacobian clamp range accepted.
        audio_codecs: audio codecs it decodes.
        audio_sample_rates_hz, audio_channels, audio_frame_ms: audio formats it decodes.
        max_audio_bitrate_bps: highest audio bitrate it accepts.
        causal_window_modes: window modes its models support (False: centred, True: causal).
    """

    models: tuple[ModelInfo, ...]
    fps: tuple[int, ...] = (25,)
    kp_bits: tuple[int, int] = (MIN_BITS, MAX_BITS)
    jac_bits: tuple[int, int] = (MIN_BITS, MAX_BITS)
    jac_abs_max: tuple[float, float] = (MIN_JAC_ABS_MAX, MAX_JAC_ABS_MAX)
    audio_codecs: tuple[str, ...] = ("opus",)
    audio_sample_rates_hz: tuple[int, ...] = OPUS_SAMPLE_RATES_HZ
    audio_channels: tuple[int, ...] = (1,)
    audio_frame_ms: tuple[int, ...] = OPUS_FRAME_MS
    max_audio_bitrate_bps: int = 128_000
    causal_window_modes: tuple[bool, ...] = (False, True)


def validate_hello(hello: Hello, caps: Capabilities) -> Error | None:
    """Check a peer's (well-formed) Hello against what this receiver supports.

    Unknown wire versions never get here: `decode_hello` raises ProtocolError with code
    UNSUPPORTED_VERSION, which `error_from_exception` turns into the reply.

    Args:
        hello: the decoded Hello.
        caps: this receiver's capabilities.

    Returns:
        None to accept, else the `Error` to send back (code + a reason naming the offending field).
    """
    by_id = {m.model_id: m for m in caps.models}
    model = by_id.get(hello.model_id)
    if model is None:
        held = ", ".join(sorted(by_id)) or "none"
        return Error(
            ErrorCode.UNKNOWN_MODEL, f"unknown model {hello.model_id!r} (this receiver holds: {held})"
        )
    if model.weights_sha256 != hello.weights_sha256:
        return Error(
            ErrorCode.WEIGHTS_MISMATCH,
            f"model {hello.model_id!r}: peer weights sha256 {hello.weights_sha256[:12]}..., "
            f"receiver has {model.weights_sha256[:12]}...",
        )
    if hello.num_kp != model.num_kp:
        return _params(f"num_kp={hello.num_kp} but model {hello.model_id!r} uses K={model.num_kp}")
    if hello.fps not in caps.fps:
        return _params(f"fps={hello.fps} not supported (supported: {_list(caps.fps)})")
    q = hello.quant
    for name, value, (lo, hi) in (
        ("kp_bits", q.kp_bits, caps.kp_bits),
        ("jac_bits", q.jac_bits, caps.jac_bits),
        ("jac_abs_max", q.jac_abs_max, caps.jac_abs_max),
    ):
        if not lo <= value <= hi:
            return _params(f"{name}={value} outside the supported range [{lo}, {hi}]")
    a = hello.audio
    for name, value, allowed in (
        ("audio.codec", a.codec, caps.audio_codecs),
        ("audio.sample_rate_hz", a.sample_rate_hz, caps.audio_sample_rates_hz),
        ("audio.channels", a.channels, caps.audio_channels),
        ("audio.frame_ms", a.frame_ms, caps.audio_frame_ms),
    ):
        if value not in allowed:
            return _params(f"{name}={value!r} not supported (supported: {_list(allowed)})")
    if a.bitrate_bps > caps.max_audio_bitrate_bps:
        return _params(f"audio.bitrate_bps={a.bitrate_bps} above the limit {caps.max_audio_bitrate_bps}")
    if hello.causal_window not in caps.causal_window_modes:
        mode = "causal" if hello.causal_window else "centred"
        return _params(f"{mode} audio window not supported by this receiver")
    return None


def _params(text: str) -> Error:
    return Error(ErrorCode.UNSUPPORTED_PARAMS, text)


def _list(values: tuple[object, ...]) -> str:
    return ", ".join(str(v) for v in values)


def encode_hello(msg: Hello) -> bytes:
    """Hello -> bytes: tag, msgpack [model_id, weights_sha256, num_kp, fps, kp_bits, jac_bits, jac_abs_max,
    key_interval_frames, [codec, sample_rate_hz, channels, frame_ms, bitrate_bps], causal_window]."""
    a, q = msg.audio, msg.quant
    return pack_body(
        MessageType.HELLO,
        [msg.model_id, msg.weights_sha256, msg.num_kp, msg.fps, q.kp_bits, q.jac_bits, q.jac_abs_max,
         msg.key_interval_frames, [a.codec, a.sample_rate_hz, a.channels, a.frame_ms, a.bitrate_bps],
         msg.causal_window],
    )


def decode_hello(data: bytes) -> Hello:
    """bytes -> Hello.

    Raises:
        ProtocolError: code UNSUPPORTED_VERSION for another wire version, MALFORMED for anything else
            (each field is type- and range-checked).
    """
    expect_type(data, MessageType.HELLO)
    (model_id, sha, num_kp, fps, kp_bits, jac_bits, jac_abs_max, key_interval, audio,
     causal) = unpack_body(data, MessageType.HELLO, 10)
    if type(audio) is not list or len(audio) != 5:
        raise ProtocolError("Hello.audio must be an array of 5 fields")
    quant = QuantParams(
        check_int(kp_bits, "Hello.kp_bits", MIN_BITS, MAX_BITS),
        check_int(jac_bits, "Hello.jac_bits", MIN_BITS, MAX_BITS),
        check_float(jac_abs_max, "Hello.jac_abs_max", MIN_JAC_ABS_MAX, MAX_JAC_ABS_MAX),
    )
    return Hello(model_id, sha, num_kp, fps, quant, key_interval, AudioParams(*audio), causal)
