// Keypoint packets: KEY / DELTA decoding, dequantisation and the stateful KeypointDecoder.
// Port of avfr/proto/keypoint_coding.py (decoding half), keypoint_packets.py, quant.py (dequantise) and
// keypoint_stream.py::KeypointDecoder (proto/SPEC.md, "KEYPOINTS_KEY", "KEYPOINTS_DELTA", "Quantisation",
// "The keypoint stream").
//
// A DELTA's header is one byte, COMPACT_DELTA_BIT | the seq's 7 low bits: the receiver extends them to the
// uint16 seq nearest the one it expects next (extendSeq).
//
// Shapes (K = session.numKp), all flat, row-major:
//   kpQ / kp    (K*2): x_0, y_0, x_1, y_1, ...
//   jacQ / jac  (K*4): j_0[0][0], j_0[0][1], j_0[1][0], j_0[1][1], j_1[0][0], ...
//   common      (6):   x, y, j00, j01, j10, j11 (shift shared by all keypoints)
// A session here is any object with numKp, fps, kpBits, jacBits, jacAbsMax (wire.mjs makeSession builds one).

import { BinDecoder, PROB_MAX, PROB_MIN } from './entropy.mjs';
import { ErrorCode, ProtocolError } from './errors.mjs';
import { MessageType, messageTypeName, parseTag, toBytes } from './framing.mjs';

export const SEQ_MODULUS = 65536; // seq is uint16 and wraps
export const TS_MODULUS = 4294967296; // ts_90k is uint32 and wraps
export const MAX_REF_DISTANCE = 64; // a delta may reference any of the 64 frames before it
export const MAX_TS_OFFSET_90K = 90000; // |ts - nominal ts| a delta can carry (1 s)
export const NUM_COMPONENTS = 6; // per keypoint: x, y, j00, j01, j10, j11
export const KP_ABS_MAX = 1.0; // keypoints live in [-1, 1]
export const KEY_HEADER_BYTES = 7; // tag, seq (uint16), ts_90k (uint32)
export const DELTA_HEADER_BYTES = 1; // COMPACT_DELTA_BIT | the seq's DELTA_SEQ_BITS low bits
export const DELTA_SEQ_BITS = 7; // a delta names its frame within -64..+63 of the seq the receiver expects
const CLOCK_RATE_HZ = 90000;

// Contexts of the delta payload: first index of each group (SPEC.md table).
const CTX_REF = 0;
const CTX_TS_ZERO = 2;
const CTX_TS_SIGN = 3;
const CTX_TS_MAG = 4;
const CTX_COMMON_ZERO = 6;
const CTX_COMMON_SIGN = 12;
const CTX_COMMON_MAG = 18;
const CTX_RES_ZERO = 22;
const CTX_RES_SIGN = 34;
const CTX_RES_MAG = 52;
const CTX_MOVED = 58;

/** Initial P(bin = 0) * 2**16 of the 59 contexts, reset at the start of every delta payload. */
export const INITIAL_PROBS = Object.freeze([
  63570, 32768, // 0-1 ref distance prefix
  63570, 32768, 32768, 32768, // 2-5 ts offset: zero flag, sign, 2 prefix
  26214, 26214, 60948, 60948, 60948, 60948, // 6-11 common zero flag
  29491, 29491, 26214, 26214, 26214, 26214, // 12-17 common sign
  39322, 52429, 63570, 32768, // 18-21 common magnitude prefix: kp 2, jac 2
  34079, 30802, 34079, 30802, // 22-25 residual zero flag, x and y
  57672, 51118, 57672, 51118, 57672, 51118, 57672, 51118, // 26-33 same for j00..j11
  37356, 39322, 37356, 37356, 39322, 37356, // 34-39 residual sign, x and y
  36045, 56361, 13763, 36045, 56361, 13763, // 40-45 j00, j01
  36045, 56361, 13763, 36045, 56361, 13763, // 46-51 j10, j11
  47841, 57672, 63570, // 52-54 residual magnitude prefix, kp
  63570, 58982, 58982, // 55-57 residual magnitude prefix, jac
  6554, // 58 moved
]);
if (INITIAL_PROBS.length !== 59 || INITIAL_PROBS.some((p) => p < PROB_MIN || p > PROB_MAX)) {
  throw new Error('INITIAL_PROBS table is broken');
}

/**
 * Serial-number difference a - b of two uint16 seqs, in [-32768, 32767].
 * @param {number} a
 * @param {number} b
 * @returns {number}
 */
export function seqDiff(a, b) {
  return ((a - b + 32768) & 0xffff) - 32768;
}

/**
 * The uint16 seq whose DELTA_SEQ_BITS low bits are `lowBits`, nearest `nearSeq` (within -64..+63).
 * @param {number} lowBits the 7 bits a DELTA packet carries (0..127)
 * @param {number} nearSeq the uint16 seq the receiver expects next (the frame after the newest it decided)
 * @returns {number}
 */
export function extendSeq(lowBits, nearSeq) {
  const half = 1 << (DELTA_SEQ_BITS - 1);
  const step = ((lowBits - nearSeq + half) & ((1 << DELTA_SEQ_BITS) - 1)) - half;
  return (nearSeq + step) & 0xffff;
}

/**
 * Largest |common shift| or |residual| of a component (0, 1: kp; 2..5: jac): 2**bits - 1.
 * @param {number} component 0..5
 * @param {{kpBits: number, jacBits: number}} session
 * @returns {number}
 */
export function residualLimit(component, session) {
  return 2 ** (component < 2 ? session.kpBits : session.jacBits) - 1;
}

/**
 * Size in bytes of a KEY packet of this session: 7 + ceil(K (2 kpBits + 4 jacBits) / 8).
 * @param {{numKp: number, kpBits: number, jacBits: number}} session
 * @returns {number}
 */
export function keyPacketBytes(session) {
  return KEY_HEADER_BYTES + Math.ceil((session.numKp * (2 * session.kpBits + 4 * session.jacBits)) / 8);
}

/**
 * Signed levels -> float32 values q * step, step = absMax / 2**(bits - 1) (float64 product, then float32).
 * @param {Int32Array|number[]} q levels
 * @param {number} bits 4..16
 * @param {number} absMax A (1 for keypoints, jacAbsMax for jacobians)
 * @returns {Float32Array}
 */
export function dequantise(q, bits, absMax) {
  const step = absMax / 2 ** (bits - 1);
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) out[i] = q[i] * step; // Float32Array rounds to nearest, ties to even
  return out;
}

/**
 * Keypoint and jacobian levels -> float32 kp (K*2) in [-1, 1] and jac (K*4).
 * @returns {{kp: Float32Array, jac: Float32Array}}
 */
export function dequantiseKeypoints(kpQ, jacQ, session) {
  return { kp: dequantise(kpQ, session.kpBits, KP_ABS_MAX), jac: dequantise(jacQ, session.jacBits, session.jacAbsMax) };
}

/**
 * One KEYPOINTS_KEY or KEYPOINTS_DELTA message -> its packet (stateless; references are resolved by
 * KeypointDecoder).
 *   KEY:   {type: 6, seq, ts90k, levels: Int32Array(6K), kpQ: Int32Array(2K), jacQ: Int32Array(4K)}
 *          (kpQ and jacQ are views into levels, in wire order)
 *   DELTA: {type: 7, seq, refSeq, refDistance (1..64), tsOffset90k (|.| <= 90000), common: Int32Array(6),
 *          kpRes: Int32Array(2K), jacRes: Int32Array(4K)}
 * @param {Uint8Array|ArrayBuffer|ArrayBufferView} data one whole message
 * @param {object} session the call's session (numKp, kpBits, jacBits)
 * @param {number} [nearSeq] uint16 seq the receiver expects next; a DELTA's 7 seq bits become the seq nearest it
 *   (extendSeq). KEY packets carry their whole seq.
 * @returns {object}
 * @throws {ProtocolError} anything malformed (length, version, type, levels, entropy-coded payload)
 */
export function decodeKeypoints(data, session, nearSeq = 0) {
  const bytes = toBytes(data);
  const type = parseTag(bytes);
  if (type === MessageType.KEYPOINTS_KEY) return decodeKey(bytes, session);
  if (type === MessageType.KEYPOINTS_DELTA) return decodeDelta(bytes, session, nearSeq & 0xffff);
  throw new ProtocolError(`expected a keypoints packet, got ${messageTypeName(type)}`, ErrorCode.UNEXPECTED_MESSAGE);
}

function decodeKey(bytes, session) {
  const k = session.numKp;
  const kb = session.kpBits;
  const jb = session.jacBits;
  const nbits = k * (2 * kb + 4 * jb);
  const pad = (8 - (nbits % 8)) % 8;
  const expected = KEY_HEADER_BYTES + (nbits + pad) / 8;
  if (bytes.length !== expected) {
    throw new ProtocolError(`KEYPOINTS_KEY is ${bytes.length} bytes, expected ${expected} for K=${k}, ${kb}/${jb} bits`);
  }
  const seq = bytes[1] * 256 + bytes[2];
  const ts90k = ((bytes[3] * 256 + bytes[4]) * 256 + bytes[5]) * 256 + bytes[6];
  if (bytes[bytes.length - 1] & ((1 << pad) - 1)) throw new ProtocolError('KEYPOINTS_KEY padding bits are not zero');
  const levels = new Int32Array(6 * k);
  let pos = 8 * KEY_HEADER_BYTES;
  for (let i = 0; i < 6 * k; i++) {
    const b = i < 2 * k ? kb : jb;
    let u = 0;
    for (let j = 0; j < b; j++, pos++) u = u * 2 + ((bytes[pos >> 3] >> (7 - (pos & 7))) & 1);
    levels[i] = u - 2 ** (b - 1); // offset binary
  }
  return { type: MessageType.KEYPOINTS_KEY, seq, ts90k, levels, kpQ: levels.subarray(0, 2 * k), jacQ: levels.subarray(2 * k) };
}

function decodeDelta(bytes, session, nearSeq) {
  if (bytes.length < DELTA_HEADER_BYTES + 1) {
    throw new ProtocolError(`KEYPOINTS_DELTA is ${bytes.length} bytes, minimum ${DELTA_HEADER_BYTES + 1}`);
  }
  const k = session.numKp;
  const seq = extendSeq(bytes[0] & ((1 << DELTA_SEQ_BITS) - 1), nearSeq);
  const dec = new BinDecoder(bytes.subarray(DELTA_HEADER_BYTES), 'KEYPOINTS_DELTA payload');
  const probs = Int32Array.from(INITIAL_PROBS);
  const distance = dec.getUeg(probs, CTX_REF, 2) + 1;
  if (distance > MAX_REF_DISTANCE) {
    throw new ProtocolError(`KEYPOINTS_DELTA reference distance ${distance} exceeds ${MAX_REF_DISTANCE}`);
  }
  const tsOffset = dec.getSigned(probs, CTX_TS_ZERO, CTX_TS_SIGN, CTX_TS_MAG, 2);
  if (Math.abs(tsOffset) > MAX_TS_OFFSET_90K) {
    throw new ProtocolError(`KEYPOINTS_DELTA ts offset ${tsOffset} exceeds +-${MAX_TS_OFFSET_90K}`);
  }
  const common = new Int32Array(NUM_COMPONENTS);
  const kpRes = new Int32Array(2 * k);
  const jacRes = new Int32Array(4 * k);
  if (dec.get(probs, CTX_MOVED)) {
    let any = false;
    for (let c = 0; c < NUM_COMPONENTS; c++) {
      const limit = residualLimit(c, session);
      const v = dec.getSigned(probs, CTX_COMMON_ZERO + c, CTX_COMMON_SIGN + c, CTX_COMMON_MAG + 2 * (c >= 2), 2);
      if (Math.abs(v) > limit) {
        throw new ProtocolError(`KEYPOINTS_DELTA common shift ${v} of component ${c} exceeds +-${limit}`);
      }
      common[c] = v;
      any ||= v !== 0;
    }
    for (let c = 0; c < NUM_COMPONENTS; c++) {
      const zeroCtx = CTX_RES_ZERO + 2 * c;
      const signCtx = CTX_RES_SIGN + 3 * c;
      const magCtx = CTX_RES_MAG + 3 * (c >= 2);
      const limit = residualLimit(c, session);
      let state = 0; // previous residual of this component: 0 zero, 1 positive, 2 negative
      for (let i = 0; i < k; i++) {
        const v = dec.getSigned(probs, zeroCtx + (state !== 0), signCtx + state, magCtx, 3);
        if (Math.abs(v) > limit) {
          throw new ProtocolError(`KEYPOINTS_DELTA residual ${v} of component ${c} exceeds +-${limit}`);
        }
        if (c < 2) kpRes[2 * i + c] = v;
        else jacRes[4 * i + c - 2] = v;
        any ||= v !== 0;
        state = v === 0 ? 0 : v > 0 ? 1 : 2;
      }
    }
    if (!any) throw new ProtocolError('KEYPOINTS_DELTA flags a moved frame but carries no change');
  }
  dec.finish();
  return {
    type: MessageType.KEYPOINTS_DELTA, seq, refSeq: (seq - distance) & 0xffff, refDistance: distance,
    tsOffset90k: tsOffset, common, kpRes, jacRes,
  };
}

/**
 * Throw ProtocolError unless the packet has the session's K and its levels or differences fit the bit depths
 * (check_against_session).
 * @param {object} packet a KEY or DELTA packet as decodeKeypoints returns it
 * @param {object} session
 */
export function checkAgainstSession(packet, session) {
  const k = session.numKp;
  if (packet.type === MessageType.KEYPOINTS_KEY) {
    if (packet.kpQ.length !== 2 * k || packet.jacQ.length !== 4 * k) {
      throw new ProtocolError(`key packet has K=${packet.kpQ.length / 2}, session K=${k}`);
    }
    for (const [name, arr, bits] of [['kp_q', packet.kpQ, session.kpBits], ['jac_q', packet.jacQ, session.jacBits]]) {
      const half = 2 ** (bits - 1);
      for (const v of arr) {
        if (v < -half || v > half - 1) throw new ProtocolError(`${name} outside the ${bits}-bit level range [${-half}, ${half - 1}]`);
      }
    }
  } else if (packet.type === MessageType.KEYPOINTS_DELTA) {
    if (packet.kpRes.length !== 2 * k || packet.jacRes.length !== 4 * k || packet.common.length !== NUM_COMPONENTS) {
      throw new ProtocolError(`delta packet has K=${packet.kpRes.length / 2}, session K=${k}`);
    }
    const distance = (packet.seq - packet.refSeq) & 0xffff;
    if (distance < 1 || distance > MAX_REF_DISTANCE || !(Math.abs(packet.tsOffset90k) <= MAX_TS_OFFSET_90K)) {
      throw new ProtocolError(`delta packet seq=${packet.seq}: reference ${packet.refSeq} or ts offset out of range`);
    }
    for (let c = 0; c < NUM_COMPONENTS; c++) {
      const limit = residualLimit(c, session);
      let worst = Math.abs(packet.common[c]);
      for (let i = 0; i < k; i++) {
        worst = Math.max(worst, Math.abs(c < 2 ? packet.kpRes[2 * i + c] : packet.jacRes[4 * i + c - 2]));
      }
      if (worst > limit) throw new ProtocolError(`delta component ${c} exceeds +-${limit}`);
    }
  } else {
    throw new ProtocolError('not a keypoints packet', ErrorCode.UNEXPECTED_MESSAGE);
  }
}

/**
 * Receiver side of the keypoint stream: packets in (in seq order; the jitter buffer orders them), frames out.
 *
 * Keeps the last MAX_REF_DISTANCE (64) decoded frames by seq. A DELTA whose reference is not held is a broken
 * prediction chain: counted in `broken`, and `needsKey` is set until a KEY is decoded (send REFRESH want_key
 * meanwhile). With concealBroken (default) the delta is applied to the newest held frame before its reference
 * instead: the result and every frame predicted from it are flagged exact=false; without, it is dropped (null).
 */
export class KeypointDecoder {
  /**
   * @param {object} session the call's session (numKp, fps, kpBits, jacBits, jacAbsMax)
   * @param {{concealBroken?: boolean}} [options]
   */
  constructor(session, { concealBroken = true } = {}) {
    this.session = session;
    this.concealBroken = concealBroken;
    this.tsStep90k = CLOCK_RATE_HZ / session.fps;
    /** @type {Map<number, {ts90k: number, kpQ: Int32Array, jacQ: Int32Array, exact: boolean}>} oldest first */
    this.history = new Map();
    /** True from a broken chain until the next KEY packet. */
    this.needsKey = false;
    /** Delta packets whose reference was missing. */
    this.broken = 0;
  }

  /**
   * True for KEY packets and for deltas whose reference frame is held (exact or not).
   * @param {object} packet
   * @returns {boolean}
   */
  hasReference(packet) {
    return packet.type === MessageType.KEYPOINTS_KEY || this.history.has(packet.refSeq);
  }

  standIn(refSeq) {
    let best = null;
    for (const [seq, entry] of this.history) {
      const gap = seqDiff(refSeq, seq);
      if (gap > 0 && (best === null || gap < best.gap)) best = { gap, entry };
    }
    return best;
  }

  /**
   * Reconstruct one frame.
   * @param {object} packet a KEY or DELTA packet (decodeKeypoints)
   * @returns {{seq: number, ts90k: number, kp: Float32Array, jac: Float32Array, key: boolean, exact: boolean}|null}
   *   kp (K*2) in [-1, 1], jac (K*4); null for a broken-chain delta that is dropped (concealBroken false, or
   *   nothing decoded yet to stand in for its reference)
   * @throws {ProtocolError} the packet does not fit the session, or an exactly predicted level leaves its range
   *   (which sets `needsKey`: the frame is not decoded; not counted in `broken`)
   */
  decode(packet) {
    const s = this.session;
    checkAgainstSession(packet, s);
    const isKey = packet.type === MessageType.KEYPOINTS_KEY;
    let ts90k;
    let kpQ;
    let jacQ;
    let exact;
    if (isKey) {
      ({ ts90k } = packet);
      kpQ = Int32Array.from(packet.kpQ);
      jacQ = Int32Array.from(packet.jacQ);
      exact = true;
    } else {
      const ref = this.history.get(packet.refSeq);
      let refTs;
      let refKp;
      let refJac;
      if (ref !== undefined) {
        ({ ts90k: refTs, kpQ: refKp, jacQ: refJac, exact } = ref);
      } else {
        this.broken += 1;
        this.needsKey = true;
        const found = this.concealBroken ? this.standIn(packet.refSeq) : null;
        if (found === null) return null;
        ({ kpQ: refKp, jacQ: refJac } = found.entry);
        refTs = (found.entry.ts90k + found.gap * this.tsStep90k) % TS_MODULUS; // the missing frame's clock
        exact = false;
      }
      const k = s.numKp;
      kpQ = new Int32Array(2 * k);
      jacQ = new Int32Array(4 * k);
      for (let i = 0; i < 2 * k; i++) kpQ[i] = refKp[i] + packet.common[i & 1] + packet.kpRes[i];
      for (let i = 0; i < 4 * k; i++) jacQ[i] = refJac[i] + packet.common[2 + (i & 3)] + packet.jacRes[i];
      for (const [name, arr, bits] of [['keypoint', kpQ, s.kpBits], ['jacobian', jacQ, s.jacBits]]) {
        const half = 2 ** (bits - 1);
        for (let i = 0; i < arr.length; i++) {
          if (arr[i] >= -half && arr[i] <= half - 1) continue;
          if (exact) {
            this.needsKey = true; // the frame is lost to the chain: the deltas after it will break
            throw new ProtocolError(`delta packet seq=${packet.seq}: ${name} level outside [${-half}, ${half - 1}]`);
          }
          arr[i] = arr[i] < -half ? -half : half - 1; // only an approximate frame can need it
        }
      }
      const distance = (packet.seq - packet.refSeq) & 0xffff;
      const ts = refTs + this.tsStep90k * distance + packet.tsOffset90k;
      ts90k = ((ts % TS_MODULUS) + TS_MODULUS) % TS_MODULUS;
    }
    if (isKey) this.needsKey = false;
    this.history.delete(packet.seq); // re-inserted at the newest end
    this.history.set(packet.seq, { ts90k, kpQ, jacQ, exact });
    while (this.history.size > MAX_REF_DISTANCE) this.history.delete(this.history.keys().next().value);
    const { kp, jac } = dequantiseKeypoints(kpQ, jacQ, s);
    return { seq: packet.seq, ts90k, kp, jac, key: isKey, exact };
  }

  /**
   * decodeKeypoints then decode; a DELTA's seq is extended next to the newest frame held.
   * @param {Uint8Array|ArrayBuffer|ArrayBufferView} data
   */
  decodeBytes(data) {
    let near = 0;
    for (const seq of this.history.keys()) near = (seq + 1) & 0xffff; // the newest is inserted last
    return this.decode(decodeKeypoints(data, this.session, near));
  }
}
