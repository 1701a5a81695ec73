// The adaptive binary arithmetic DECODER of keypoint delta payloads (proto/SPEC.md, "Entropy coder").
// Port of avfr/proto/entropy.py::BinDecoder, bit-exact.
//
// 32-bit integer coder with bit-wise renormalisation. low, high and value stay in [0, 2**32 - 1] and the
// product (high - low + 1) * p stays below 2**48, so everything is plain Number arithmetic (exact below
// 2**53); no bitwise operator touches a 32-bit quantity (they would go signed).

import { ProtocolError } from './errors.mjs';

export const PROB_BITS = 16;
export const PROB_ONE = 1 << PROB_BITS; // probabilities are P(bin = 0) * 2**16
export const PROB_MIN = 32;
export const PROB_MAX = PROB_ONE - 32;
export const ADAPT_SHIFT = 4; // p += (target - p) >> 4 after each bin
export const MAX_EG_PREFIX = 20; // longer Exp-Golomb prefixes are malformed

const TOP = 0xffffffff;
const HALF = 0x80000000;
const QUARTER = 0x40000000;
const THREE_QUARTERS = 0xc0000000;

/**
 * Decodes bins from a payload made by the Python BinEncoder; call finish() after the last bin.
 * Contexts are entries of a caller-owned array of probabilities (P(bin = 0) * 2**16), updated in place.
 */
export class BinDecoder {
  /**
   * @param {Uint8Array} data the payload (bits past its end read as 0)
   * @param {string} [what] name for error messages
   */
  constructor(data, what = 'entropy-coded payload') {
    this.data = data;
    this.nbits = 8 * data.length;
    this.what = what;
    let value = 0;
    for (let i = 0; i < 4; i++) value = value * 256 + (i < data.length ? data[i] : 0);
    this.value = value;
    this.pos = 32;
    this.low = 0;
    this.high = TOP;
    this.pending = 0;
    this.shifts = 0;
  }

  /**
   * Decode one bin with adaptive context probs[ctx] and update it.
   * @param {Int32Array|number[]} probs context probabilities
   * @param {number} ctx context index
   * @returns {number} 0 or 1
   */
  get(probs, ctx) {
    let p0 = probs[ctx];
    let low = this.low;
    let high = this.high;
    const split = low + Math.floor(((high - low + 1) * p0) / PROB_ONE);
    let bit;
    if (this.value >= split) {
      bit = 1;
      low = split;
      p0 -= p0 >> ADAPT_SHIFT;
      probs[ctx] = p0 > PROB_MIN ? p0 : PROB_MIN;
    } else {
      bit = 0;
      high = split - 1;
      p0 += (PROB_ONE - p0) >> ADAPT_SHIFT;
      probs[ctx] = p0 < PROB_MAX ? p0 : PROB_MAX;
    }
    this.renorm(low, high);
    return bit;
  }

  /**
   * Decode one bin of probability 1/2 (no context).
   * @returns {number} 0 or 1
   */
  getBypass() {
    let low = this.low;
    let high = this.high;
    const split = low + Math.floor((high - low + 1) / 2);
    let bit;
    if (this.value >= split) {
      bit = 1;
      low = split;
    } else {
      bit = 0;
      high = split - 1;
    }
    this.renorm(low, high);
    return bit;
  }

  renorm(low, high) {
    let value = this.value;
    let pending = this.pending;
    let shifts = this.shifts;
    let pos = this.pos;
    const data = this.data;
    const nbits = this.nbits;
    for (;;) {
      if (high < HALF) {
        pending = 0;
      } else if (low >= HALF) {
        pending = 0;
        low -= HALF;
        high -= HALF;
        value -= HALF;
      } else if (low >= QUARTER && high < THREE_QUARTERS) {
        pending += 1;
        low -= QUARTER;
        high -= QUARTER;
        value -= QUARTER;
      } else {
        break;
      }
      low *= 2;
      high = high * 2 + 1;
      const bit = pos < nbits ? (data[Math.floor(pos / 8)] >> (7 - (pos % 8))) & 1 : 0;
      value = value * 2 + bit;
      pos += 1;
      shifts += 1;
    }
    this.low = low;
    this.high = high;
    this.value = value;
    this.pending = pending;
    this.shifts = shifts;
    this.pos = pos;
  }

  /**
   * Unsigned Exp-Golomb (order 0): adaptive prefix bins (context ctx0 + min(i, nctx - 1)), bypass suffix.
   * @returns {number} v >= 0
   * @throws {ProtocolError} a prefix longer than MAX_EG_PREFIX bins
   */
  getUeg(probs, ctx0, nctx) {
    const last = nctx - 1;
    let n = 0;
    while (this.get(probs, ctx0 + (n < last ? n : last))) {
      n += 1;
      if (n > MAX_EG_PREFIX) {
        throw new ProtocolError(`${this.what}: Exp-Golomb prefix longer than ${MAX_EG_PREFIX} bins`);
      }
    }
    let v1 = 1;
    for (let i = 0; i < n; i++) v1 = v1 * 2 + this.getBypass();
    return v1 - 1;
  }

  /**
   * Signed value: zero flag (context ctxZero; 1 = nonzero), sign (ctxSign; 1 = negative), UEG(ctxMag) of |v| - 1.
   * @returns {number}
   */
  getSigned(probs, ctxZero, ctxSign, ctxMag, nmag) {
    if (!this.get(probs, ctxZero)) return 0;
    const negative = this.get(probs, ctxSign);
    const magnitude = this.getUeg(probs, ctxMag, nmag) + 1;
    return negative ? -magnitude : magnitude;
  }

  /**
   * Check the payload ends exactly with the canonical termination (a 1 bit, then zero padding).
   * @throws {ProtocolError} truncated payload, trailing bytes, or other end bits
   */
  finish() {
    const t = this.shifts - this.pending; // bit position of the terminating 1
    const expected = Math.floor(t / 8) + 1;
    if (this.data.length !== expected) {
      throw new ProtocolError(`${this.what} is ${this.data.length} bytes, its bins end in byte ${expected}`);
    }
    const last = this.data[Math.floor(t / 8)];
    const shift = 7 - (t % 8);
    if (!((last >> shift) & 1) || (last & ((1 << shift) - 1))) {
      throw new ProtocolError(`${this.what} does not end with its termination bit and zero padding`);
    }
  }
}
