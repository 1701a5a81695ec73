"""AUDIO: one Opus packet with its seq and ts_90k on the keypoints' media clock (SPEC.md, "AUDIO")."""

from __future__ import annotations

from dataclasses import dataclass, field

from avfr.proto.errors import ProtocolError
from avfr.proto.framing import MAX_OPUS_PACKET_BYTES, MessageType, expect_type, make_tag

__all__ = ["AUDIO_HEADER_BYTES", "Audio", "encode_audio", "decode_audio"]

AUDIO_HEADER_BYTES = 7  # tag, seq (uint16), ts_90k (uint32)
TS_STEP_AUDIO_90K = 1800  # ts_90k step of one 20 ms Opus packet (the receiver refuses other offsets)


@dataclass(frozen=True)
class Audio:
    """One Opus packet (normally 20 ms).

    Attributes:
        seq: uint16 audio sequence number (its own counter, wraps).
        ts_90k: uint32 media timestamp of the packet's first sample, 90 kHz (same clock as keypoints:
            sample n at 16 kHz is ts_90k = n * 90000 / 16000).
        payload: the Opus packet, 1..1275 bytes.
    """

    seq: int
    ts_90k: int
    payload: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if type(self.seq) is not int or not 0 <= self.seq <= 0xFFFF:
            raise ProtocolError(f"Audio.seq={self.seq!r} must be a uint16")
        if type(self.ts_90k) is not int or not 0 <= self.ts_90k <= 0xFFFFFFFF:
            raise ProtocolError(f"Audio.ts_90k={self.ts_90k!r} must be a uint32")
        if type(self.payload) is not bytes or not 1 <= len(self.payload) <= MAX_OPUS_PACKET_BYTES:
            size = len(self.payload) if isinstance(self.payload, bytes) else type(self.payload).__name__
            raise ProtocolError(f"Audio.payload is {size} bytes, expected 1..{MAX_OPUS_PACKET_BYTES}")


def encode_audio(msg: Audio) -> bytes:
    """Audio -> bytes: tag, seq (uint16 BE), ts_90k (uint32 BE), Opus payload."""
    header = bytes([make_tag(MessageType.AUDIO)]) + msg.seq.to_bytes(2, "big") + msg.ts_90k.to_bytes(4, "big")
    return header + msg.payload


def decode_audio(data: bytes) -> Audio:
    """bytes -> Audio. Raises ProtocolError on anything malformed."""
    expect_type(data, MessageType.AUDIO)
    if len(data) < AUDIO_HEADER_BYTES + 1:
        raise ProtocolError(f"AUDIO is {len(data)} bytes, minimum {AUDIO_HEADER_BYTES + 1}")
    data = bytes(data)
    return Audio(int.from_bytes(data[1:3], "big"), int.from_bytes(data[3:7], "big"), data[7:])
