/**
 * 48 kHz -> 16 kHz float resampler for the browser's Opus output (WebCodecs decodes Opus at 48 kHz).
 *
 * A Kaiser-windowed sinc low-pass evaluated at every third input sample, zero phase: output sample k is
 * centred on input sample 3k (no delay to compensate). The default design is the one FFmpeg's swresample
 * builds for 48k -> 16k with its default options (filter_size 32, cutoff 0.97 of the output Nyquist =
 * 7760 Hz, Kaiser beta 9: 100 taps on input samples 3k - 49 .. 3k + 50, normalised to unit DC gain), and the
 * edges are handled as swresample does (mirror about sample 0 at the start; on `flush`, mirror about the
 * half-sample past the end, and round(N / 3) outputs), so the page's 16 kHz speech is the Python receiver's
 * (`avfr/codec/runtime/opus.py`: `av.AudioResampler(format="flt", layout="mono", rate=16000)`) to float
 * precision. Options give other cut-offs / lengths.
 *
 * Streaming: `process` keeps what later outputs need, so any split of the input gives the same output as one
 * call on the concatenation (bit for bit). An output needs 50 input samples (~1 ms) of look-ahead.
 */

/** Input rate (Hz). */
export const IN_RATE = 48000;
/** Output rate (Hz). */
export const OUT_RATE = 16000;
/** Decimation factor. */
export const FACTOR = IN_RATE / OUT_RATE; // 3

/** Modified Bessel function of the first kind, order 0 (power series, double precision). */
function besselI0(x) {
  const q = (x * x) / 4;
  let term = 1;
  let sum = 1;
  for (let k = 1; k < 500 && term > 1e-17 * sum; k++) {
    term *= q / (k * k);
    sum += term;
  }
  return sum;
}

/**
 * The low-pass of `Resampler48kTo16k`: a Kaiser-windowed sinc on the 48 kHz grid.
 * @param {{cutoffHz?: number, taps?: number, beta?: number}} [options] cutoffHz: -6 dB point (Hz, default
 *   7760 = 0.97 x 8 kHz); taps: filter length (default 100); beta: Kaiser window parameter (default 9).
 * @returns {{coef: Float64Array, before: number, after: number}} coef (taps,): output k is
 *   `sum_t coef[t] * x[3k - before + t]`, i.e. inputs 3k - before .. 3k + after (before = (taps - 1) >> 1,
 *   after = taps - 1 - before); coefficients sum to 1 (unit DC gain).
 */
export function lowpassTaps({ cutoffHz = 0.97 * (OUT_RATE / 2), taps = 100, beta = 9 } = {}) {
  if (!(cutoffHz > 0 && cutoffHz <= IN_RATE / 2)) throw new RangeError(`cutoffHz must be in (0, 24000]: ${cutoffHz}`);
  if (!(Number.isInteger(taps) && taps >= 1)) throw new RangeError(`taps must be a positive integer: ${taps}`);
  const factor = cutoffHz / (IN_RATE / 2);
  const before = (taps - 1) >> 1;
  const coef = new Float64Array(taps);
  let sum = 0;
  for (let t = 0; t < taps; t++) {
    const j = t - before; // input offset from 3k
    const x = Math.PI * j * factor;
    const sinc = x === 0 ? 1 : Math.sin(x) / x;
    const w = (2 * j) / taps;
    coef[t] = sinc * besselI0(beta * Math.sqrt(Math.max(1 - w * w, 0)));
    sum += coef[t];
  }
  for (let t = 0; t < taps; t++) coef[t] /= sum;
  return { coef, before, after: taps - 1 - before };
}

/** Streaming 48 kHz -> 16 kHz resampler (float32 in, float32 out). */
export class Resampler48kTo16k {
  /**
   * @param {{cutoffHz?: number, taps?: number, beta?: number}} [options] the low-pass (`lowpassTaps`); the
   *   defaults match FFmpeg's swresample.
   */
  constructor(options = {}) {
    const { coef, before, after } = lowpassTaps(options);
    this._coef = coef;
    this._before = before;
    this._after = after;
    this._buf = new Float32Array(4096); // input samples [bufStart, bufStart + bufLen)
    this.reset();
  }

  /** Forget the stream: the next sample is a new stream's sample 0. */
  reset() {
    this._bufStart = 0;
    this._bufLen = 0;
    this._nextK = 0; // next output index
  }

  /** Input samples (48 kHz) an output waits for past its centre: outputs lag the input by this much. */
  get lookahead() {
    return this._after;
  }

  /** Input samples received since the stream started. */
  get inputSamples() {
    return this._bufStart + this._bufLen;
  }

  /**
   * Add 48 kHz samples; returns the 16 kHz outputs that are now complete (those whose 50-sample look-ahead
   * has arrived). Output k of the stream is centred on its input sample 3k.
   * @param {Float32Array} input (n,) mono 48 kHz samples, any n (also 0).
   * @returns {Float32Array} (m,) mono 16 kHz samples, the stream's outputs [k0, k0 + m).
   */
  process(input) {
    this._append(input);
    const total = this.inputSamples;
    const kEnd = Math.max(this._nextK, Math.floor((total - 1 - this._after) / FACTOR) + 1);
    const out = this._compute(kEnd, -1);
    this._compact();
    return out;
  }

  /**
   * End of the stream: the remaining outputs (the input mirrored past its end, as swresample flushes), so the
   * stream gives round(N / 3) outputs for N inputs in all; then `reset`.
   * @returns {Float32Array} (m,) the last 16 kHz samples.
   */
  flush() {
    const total = this.inputSamples;
    const kEnd = total > 0 ? Math.floor((total + 1) / FACTOR) : 0;
    const out = this._compute(Math.max(kEnd, this._nextK), total);
    this.reset();
    return out;
  }

  _append(input) {
    const need = this._bufLen + input.length;
    if (need > this._buf.length) {
      const grown = new Float32Array(Math.max(need, 2 * this._buf.length));
      grown.set(this._buf.subarray(0, this._bufLen));
      this._buf = grown;
    }
    this._buf.set(input, this._bufLen);
    this._bufLen = need;
  }

  /** Drop the samples no later output needs (keep input 0 .. 49 while the start mirror may use them). */
  _compact() {
    const keepFrom = Math.max(0, FACTOR * this._nextK - this._before);
    const drop = Math.min(keepFrom - this._bufStart, this._bufLen);
    if (drop > 0) {
      this._buf.copyWithin(0, drop, this._bufLen);
      this._bufStart += drop;
      this._bufLen -= drop;
    }
  }

  /** Outputs [nextK, kEnd); `end` >= 0: the stream has `end` samples, mirror past it; -1: not needed. */
  _compute(kEnd, end) {
    const n = Math.max(0, kEnd - this._nextK);
    const out = new Float32Array(n);
    const coef = this._coef;
    const taps = coef.length;
    const buf = this._buf;
    const base = this._bufStart;
    const total = this.inputSamples;
    for (let o = 0; o < n; o++) {
      const first = FACTOR * (this._nextK + o) - this._before; // input index of coef[0]
      let acc = 0;
      if (first >= 0 && first + taps <= total) {
        const off = first - base;
        for (let t = 0; t < taps; t++) acc += coef[t] * buf[off + t];
      } else {
        for (let t = 0; t < taps; t++) acc += coef[t] * buf[mirror(first + t, end) - base];
      }
      out[o] = acc;
    }
    this._nextK += n;
    return out;
  }
}

/** swresample's edges: x[-i] = x[i] at the start, x[N - 1 + i] = x[N - i] past the end (`end` = N). */
function mirror(i, end) {
  for (;;) {
    if (i < 0) i = -i;
    else if (end >= 0 && i >= end) i = 2 * end - 1 - i;
    else return i;
    if (end === 1) return 0;
  }
}

/**
 * One-shot 48 kHz -> 16 kHz: `process` + `flush` of a fresh `Resampler48kTo16k`.
 * @param {Float32Array} input (N,) mono 48 kHz.
 * @param {{cutoffHz?: number, taps?: number, beta?: number}} [options] the low-pass (`lowpassTaps`).
 * @returns {Float32Array} (round(N / 3),) mono 16 kHz; sample k is centred on input sample 3k.
 */
export function resample48kTo16k(input, options) {
  const r = new Resampler48kTo16k(options);
  const a = r.process(input);
  const b = r.flush();
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
