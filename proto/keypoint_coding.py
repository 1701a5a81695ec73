"""Byte encoding and decoding of keypoint packets (SPEC.md byte tables and "Entropy coder").

A KEY packet is a fixed header and every level at fixed length. A DELTA packet is one header byte (bit 7 set,
then the seq's 7 low bits: the receiver extends them to the 16-bit seq nearest the one it expects, `extend_seq`)
and a payload (distance, timestamp offset, moved flag, common shifts, residuals) coded with the adaptive binary
arithmetic coder of `avfr.proto.entropy`, with the contexts below, reset to `INITIAL_PROBS` at the start of each
payload.
"""

from __future__ import annotations

import numpy as np

from avfr.proto.entropy import PROB_MAX, PROB_MIN, BinDecoder, BinEncoder
from avfr.proto.errors import ErrorCode, ProtocolError
from avfr.proto.framing import COMPACT_DELTA_BIT, MessageType, make_tag, parse_tag
from avfr.proto.hello import Session
from avfr.proto.keypoint_packets import (
    MAX_REF_DISTANCE,
    MAX_TS_OFFSET_90K,
    NUM_COMPONENTS,
    KeypointsDelta,
    KeypointsKey,
    KeypointsPacket,
    as_components,
    check_against_session,
    residual_limit,
)

__all__ = [
    "KEY_HEADER_BYTES",
    "DELTA_HEADER_BYTES",
    "NUM_CONTEXTS",
    "INITIAL_PROBS",
    "DELTA_SEQ_BITS",
    "extend_seq",
    "encode_keypoints",
    "decode_keypoints",
]

KEY_HEADER_BYTES = 7  # tag, seq (uint16), ts_90k (uint32)
DELTA_HEADER_BYTES = 1  # COMPACT_DELTA_BIT | the seq's DELTA_SEQ_BITS low bits
DELTA_SEQ_BITS = 7  # a delta names its frame within +-64 of the seq the receiver expects (2.56 s at 25 fps)
_DELTA_SEQ_MASK = (1 << DELTA_SEQ_BITS) - 1

# Contexts of the delta payload (SPEC.md, "Entropy coder"): first index of each group.
CTX_REF = 0  # 2 contexts: Exp-Golomb prefix of ref_distance - 1
CTX_TS_ZERO, CTX_TS_SIGN, CTX_TS_MAG = 2, 3, 4  # ts offset: zero flag, sign, 2 prefix contexts
CTX_COMMON_ZERO = 6  # 6 contexts, one per component
CTX_COMMON_SIGN = 12  # 6
CTX_COMMON_MAG = 18  # 2 per class (kp, jac): 4
CTX_RES_ZERO = 22  # 2 per component (previous residual of the component zero / nonzero): 12
CTX_RES_SIGN = 34  # 3 per component (previous residual zero / positive / negative): 18
CTX_RES_MAG = 52  # 3 per class (kp, jac): 6
CTX_MOVED = 58  # 1: the frame differs from its prediction (common or residuals nonzero)
NUM_CONTEXTS = 59
PROB_LIMITS = (PROB_MIN, PROB_MAX)


# Initial P(bin = 0) * 2**16 of every context, reset at the start of each delta payload (SPEC.md table).
INITIAL_PROBS: tuple[int, ...] = (
    63570, 32768,  # 0-1 ref distance prefix: distance 1 is the rule
    63570, 32768, 32768, 32768,  # 2-5 ts offset: zero flag, sign, 2 prefix
    26214, 26214, 60948, 60948, 60948, 60948,  # 6-11 common zero flag: x, y, j00, j01, j10, j11
    29491, 29491, 26214, 26214, 26214, 26214,  # 12-17 common sign
    39322, 52429, 63570, 32768,  # 18-21 common magnitude prefix: kp 2, jac 2
    34079, 30802, 34079, 30802,  # 22-25 residual zero flag, x and y: previous zero / nonzero
    57672, 51118, 57672, 51118, 57672, 51118, 57672, 51118,  # 26-33 same for j00, j01, j10, j11
    37356, 39322, 37356, 37356, 39322, 37356,  # 34-39 residual sign, x and y: previous 0 / + / -
    36045, 56361, 13763, 36045, 56361, 13763,  # 40-45 same for j00, j01
    36045, 56361, 13763, 36045, 56361, 13763,  # 46-51 same for j10, j11
    47841, 57672, 63570,  # 52-54 residual magnitude prefix, kp
    63570, 58982, 58982,  # 55-57 residual magnitude prefix, jac
    6554,  # 58 moved: a still frame is the exception
)


def extend_seq(low_bits: int, near_seq: int) -> int:
    """The uint16 seq whose DELTA_SEQ_BITS low bits are `low_bits`, nearest `near_seq` (within -64..+63).

    Args:
        low_bits: the 7 bits a DELTA packet carries (0..127).
        near_seq: the uint16 seq the receiver expects next (the frame after the newest it decided).
    """
    half = 1 << (DELTA_SEQ_BITS - 1)
    step = ((low_bits - near_seq + half) & _DELTA_SEQ_MASK) - half
    return (near_seq + step) & 0xFFFF


def encode_keypoints(packet: KeypointsPacket, session: Session) -> bytes:
    """KeypointsKey / KeypointsDelta -> bytes (SPEC.md byte tables).

    Raises:
        ProtocolError: the packet does not fit the session (K, level ranges).
    """
    check_against_session(packet, session)
    if isinstance(packet, KeypointsKey):
        return _encode_key(packet, session)
    return _encode_delta(packet, session)


def _encode_key(packet: KeypointsKey, session: Session) -> bytes:
    kb, jb = session.quant.kp_bits, session.quant.jac_bits
    acc = 0
    for v in (packet.kp_q.astype(np.int64) + (1 << (kb - 1))).ravel().tolist():
        acc = (acc << kb) | v
    for v in (packet.jac_q.astype(np.int64) + (1 << (jb - 1))).ravel().tolist():
        acc = (acc << jb) | v
    nbits = session.num_kp * (2 * kb + 4 * jb)
    pad = -nbits % 8
    header = bytes([make_tag(MessageType.KEYPOINTS_KEY)]) + packet.seq.to_bytes(2, "big")
    return header + packet.ts_90k.to_bytes(4, "big") + (acc << pad).to_bytes((nbits + pad) // 8, "big")


def _encode_delta(packet: KeypointsDelta, session: Session) -> bytes:
    enc = BinEncoder()
    probs = list(INITIAL_PROBS)
    enc.put_ueg(packet.ref_distance - 1, probs, CTX_REF, 2)
    enc.put_signed(packet.ts_offset_90k, probs, CTX_TS_ZERO, CTX_TS_SIGN, CTX_TS_MAG, 2)
    moved = bool(packet.common.any() or packet.kp_res.any() or packet.jac_res.any())
    enc.put(int(moved), probs, CTX_MOVED)
    header = bytes([COMPACT_DELTA_BIT | (packet.seq & _DELTA_SEQ_MASK)])
    if not moved:
        return header + enc.finish()
    for c, v in enumerate(packet.common.tolist()):
        enc.put_signed(v, probs, CTX_COMMON_ZERO + c, CTX_COMMON_SIGN + c, CTX_COMMON_MAG + 2 * (c >= 2), 2)
    columns = as_components(packet.kp_res, packet.jac_res).T.tolist()  # (6, K), coded component-major
    for c, column in enumerate(columns):
        zero_ctx, sign_ctx, mag_ctx = CTX_RES_ZERO + 2 * c, CTX_RES_SIGN + 3 * c, CTX_RES_MAG + 3 * (c >= 2)
        state = 0  # previous residual of this component: 0 zero, 1 positive, 2 negative
        for v in column:
            enc.put_signed(v, probs, zero_ctx + (state != 0), sign_ctx + state, mag_ctx, 3)
            state = 0 if v == 0 else (1 if v > 0 else 2)
    return header + enc.finish()


def decode_keypoints(data: bytes, session: Session, near_seq: int = 0) -> KeypointsPacket:
    """bytes -> KeypointsKey / KeypointsDelta (stateless: references are resolved by KeypointDecoder).

    Args:
        data: one message from the unordered channel.
        session: the call's session (K, bit depths).
        near_seq: uint16 seq the receiver expects next; a DELTA's 7 seq bits become the seq nearest it
            (`extend_seq`). KEY packets carry their whole seq.

    Raises:
        ProtocolError: anything malformed (length, version, type, levels, entropy-coded payload).
    """
    msg_type = parse_tag(data)
    if msg_type == MessageType.KEYPOINTS_KEY:
        return _decode_key(bytes(data), session)
    if msg_type == MessageType.KEYPOINTS_DELTA:
        return _decode_delta(bytes(data), session, near_seq & 0xFFFF)
    raise ProtocolError(f"expected a keypoints packet, got {msg_type.name}", ErrorCode.UNEXPECTED_MESSAGE)


def _decode_key(data: bytes, session: Session) -> KeypointsKey:
    k, kb, jb = session.num_kp, session.quant.kp_bits, session.quant.jac_bits
    nbits = k * (2 * kb + 4 * jb)
    pad = -nbits % 8
    expected = KEY_HEADER_BYTES + (nbits + pad) // 8
    if len(data) != expected:
        raise ProtocolError(
            f"KEYPOINTS_KEY is {len(data)} bytes, expected {expected} for K={k}, {kb}/{jb} bits"
        )
    seq = int.from_bytes(data[1:3], "big")
    ts_90k = int.from_bytes(data[3:7], "big")
    acc = int.from_bytes(data[7:], "big")
    if acc & ((1 << pad) - 1):
        raise ProtocolError("KEYPOINTS_KEY padding bits are not zero")
    acc >>= pad
    jac = np.empty(4 * k, dtype=np.int64)
    for i in range(4 * k - 1, -1, -1):
        jac[i] = acc & ((1 << jb) - 1)
        acc >>= jb
    kp = np.empty(2 * k, dtype=np.int64)
    for i in range(2 * k - 1, -1, -1):
        kp[i] = acc & ((1 << kb) - 1)
        acc >>= kb
    kp_q = (kp - (1 << (kb - 1))).reshape(k, 2)
    jac_q = (jac - (1 << (jb - 1))).reshape(k, 2, 2)
    return KeypointsKey(seq, ts_90k, kp_q, jac_q)


def _decode_delta(data: bytes, session: Session, near_seq: int) -> KeypointsDelta:
    if len(data) < DELTA_HEADER_BYTES + 1:
        raise ProtocolError(f"KEYPOINTS_DELTA is {len(data)} bytes, minimum {DELTA_HEADER_BYTES + 1}")
    k = session.num_kp
    seq = extend_seq(data[0] & _DELTA_SEQ_MASK, near_seq)
    dec = BinDecoder(data[DELTA_HEADER_BYTES:], "KEYPOINTS_DELTA payload")
    probs = list(INITIAL_PROBS)
    distance = dec.get_ueg(probs, CTX_REF, 2) + 1
    if distance > MAX_REF_DISTANCE:
        raise ProtocolError(f"KEYPOINTS_DELTA reference distance {distance} exceeds {MAX_REF_DISTANCE}")
    ts_offset = dec.get_signed(probs, CTX_TS_ZERO, CTX_TS_SIGN, CTX_TS_MAG, 2)
    if abs(ts_offset) > MAX_TS_OFFSET_90K:
        raise ProtocolError(f"KEYPOINTS_DELTA ts offset {ts_offset} exceeds +-{MAX_TS_OFFSET_90K}")
    limits = [residual_limit(c, session) for c in range(NUM_COMPONENTS)]
    values = np.zeros((NUM_COMPONENTS, k), dtype=np.int64)
    common = [0] * NUM_COMPONENTS
    if dec.get(probs, CTX_MOVED):
        _decode_moved(dec, probs, limits, common, values)
        if not any(common) and not values.any():
            raise ProtocolError("KEYPOINTS_DELTA flags a moved frame but carries no change")
    dec.finish()
    values = values.T  # (K, 6)
    ref_seq = (seq - distance) & 0xFFFF
    jac_res = values[:, 2:].reshape(k, 2, 2)
    return KeypointsDelta(seq, ref_seq, ts_offset, np.array(common), values[:, :2], jac_res)


def _decode_moved(dec: BinDecoder, probs: list[int], limits: list[int], common: list[int],
                  values: np.ndarray) -> None:
    """Common shifts and residuals of a moved frame, into `common` (6,) and `values` (6, K)."""
    k = values.shape[1]
    for c in range(NUM_COMPONENTS):
        v = dec.get_signed(probs, CTX_COMMON_ZERO + c, CTX_COMMON_SIGN + c, CTX_COMMON_MAG + 2 * (c >= 2), 2)
        if abs(v) > limits[c]:
            raise ProtocolError(f"KEYPOINTS_DELTA common shift {v} of component {c} exceeds +-{limits[c]}")
        common[c] = v
    for c in range(NUM_COMPONENTS):
        zero_ctx, sign_ctx, mag_ctx = CTX_RES_ZERO + 2 * c, CTX_RES_SIGN + 3 * c, CTX_RES_MAG + 3 * (c >= 2)
        state = 0
        limit = limits[c]
        for i in range(k):
            v = dec.get_signed(probs, zero_ctx + (state != 0), sign_ctx + state, mag_ctx, 3)
            if abs(v) > limit:
                raise ProtocolError(f"KEYPOINTS_DELTA residual {v} of component {c} exceeds +-{limit}")
            values[c, i] = v
            state = 0 if v == 0 else (1 if v > 0 else 2)
