/**
 * The receiver's log-mel window in plain JavaScript: a port of `avfr/codec/data/audio.py` (`window_bounds`,
 * `pcm_window`, `mel_filterbank`, `_hz_to_mel`, `_mel_to_hz`, `_hann_periodic`, `_log_mel_of_signal`,
 * `log_mel_window`), equal to it within float32 rounding (tests: web/test/mel.test.mjs).
 *
 * Timing: video frame i is at 16 kHz sample 640 i; its centred window is [640 i - 1600, 640 i + 1600), the
 * causal one [640 i - 3200, 640 i); samples outside the clip are zeros. A 3200-sample window gives 19 STFT
 * columns (320-sample periodic Hann, hop 160, no centre padding, each frame zero-padded to a 512-point rFFT),
 * power spectrum, 80 Slaney mel bins (55..7600 Hz, area-normalised triangles), `log(max(mel, 1e-5))`.
 * Everything is computed in float64 (as numpy does) and rounded to float32 at the end.
 *
 * Speed: the twiddles, bit reversal, Hann window and each mel filter's nonzero span are precomputed once;
 * `logMelWindow` allocates nothing but its output (pass `out` to reuse one).
 */

/** Speech sample rate (Hz). */
export const SAMPLE_RATE = 16000;
/** Samples per 25 fps video frame (40 ms). */
export const SAMPLES_PER_FRAME = 640;
/** Samples of one mel window (200 ms). */
export const WINDOW_SAMPLES = 3200;
/** FFT size of each STFT column. */
export const N_FFT = 512;
/** STFT frame length (20 ms periodic Hann). */
export const WIN_LENGTH = 320;
/** STFT hop (10 ms). */
export const HOP_LENGTH = 160;
/** Mel bins (rows of a window). */
export const N_MELS = 80;
/** rFFT bins (N_FFT / 2 + 1). */
export const N_BINS = N_FFT / 2 + 1;
/** Lowest mel edge (Hz). */
export const MEL_FMIN_HZ = 55.0;
/** Highest mel edge (Hz). */
export const MEL_FMAX_HZ = 7600.0;
/** Floor of the mel power before the log. */
export const LOG_FLOOR = 1e-5;
/** STFT columns of one window: (3200 - 320) / 160 + 1. */
export const MEL_FRAMES = (WINDOW_SAMPLES - WIN_LENGTH) / HOP_LENGTH + 1; // 19

/**
 * Sample range `[start, stop)` of a video frame's audio window (`window_bounds`).
 * @param {number} frameIndex video frame index i (25 fps).
 * @param {boolean} [causal] past-only window `[640 i - 3200, 640 i)` instead of `[640 i - 1600, 640 i + 1600)`.
 * @returns {[number, number]} 16 kHz sample indices, `stop - start == 3200`; may extend past the clip.
 */
export function windowBounds(frameIndex, causal = false) {
  const centre = SAMPLES_PER_FRAME * frameIndex;
  const start = causal ? centre - WINDOW_SAMPLES : centre - WINDOW_SAMPLES / 2;
  return [start, start + WINDOW_SAMPLES];
}

/**
 * The 3200 samples of a frame's audio window, zeros outside the clip (`pcm_window`).
 * @param {Float32Array} pcm (N,) mono 16 kHz speech in [-1, 1], sample 0 = frame 0's time.
 * @param {number} frameIndex video frame index.
 * @param {boolean} [causal] see `windowBounds`.
 * @returns {Float32Array} (3200,).
 */
export function pcmWindow(pcm, frameIndex, causal = false) {
  const [start, stop] = windowBounds(frameIndex, causal);
  const out = new Float32Array(WINDOW_SAMPLES);
  const lo = Math.max(start, 0);
  const hi = Math.min(stop, pcm.length);
  if (hi > lo) out.set(pcm.subarray(lo, hi), lo - start);
  return out;
}

/**
 * Slaney mel scale (`_hz_to_mel`): linear below 1 kHz (200/3 Hz per mel), logarithmic above.
 * @param {number} freqHz frequency (Hz).
 * @returns {number} mel.
 */
export function hzToMel(freqHz) {
  if (freqHz >= 1000.0) return 15.0 + Math.log(Math.max(freqHz, 1e-10) / 1000.0) / (Math.log(6.4) / 27.0);
  return freqHz / (200.0 / 3.0);
}

/**
 * Inverse of `hzToMel` (`_mel_to_hz`).
 * @param {number} mel mel.
 * @returns {number} frequency (Hz).
 */
export function melToHz(mel) {
  if (mel >= 15.0) return 1000.0 * Math.exp((Math.log(6.4) / 27.0) * (mel - 15.0));
  return mel * (200.0 / 3.0);
}

/** numpy.linspace(start, stop, num) element i (endpoint included, last element exactly `stop`). */
function linspaceAt(start, stop, num, i) {
  if (i === num - 1) return stop;
  return i * ((stop - start) / (num - 1)) + start;
}

let filterbankCache = null;

/**
 * Slaney-style mel filterbank with area-normalised triangles (`mel_filterbank`), cached: do not modify.
 * @returns {Float64Array} (80 * 257) row-major: row m holds filter m's weights on the power spectrum of a
 *   512-point rFFT at 16 kHz (bin b = b * 31.25 Hz).
 */
export function melFilterbank() {
  if (filterbankCache) return filterbankCache;
  const weights = new Float64Array(N_MELS * N_BINS);
  const melLo = hzToMel(MEL_FMIN_HZ);
  const melHi = hzToMel(MEL_FMAX_HZ);
  const edges = new Float64Array(N_MELS + 2);
  for (let j = 0; j < N_MELS + 2; j++) edges[j] = melToHz(linspaceAt(melLo, melHi, N_MELS + 2, j));
  for (let m = 0; m < N_MELS; m++) {
    const lower = edges[m];
    const centre = edges[m + 1];
    const upper = edges[m + 2];
    const scale = 2.0 / (upper - lower); // equal area per filter
    for (let b = 0; b < N_BINS; b++) {
      const hz = linspaceAt(0.0, SAMPLE_RATE / 2, N_BINS, b);
      const rising = (hz - lower) / (centre - lower);
      const falling = (upper - hz) / (upper - centre);
      weights[m * N_BINS + b] = Math.max(0.0, Math.min(rising, falling)) * scale;
    }
  }
  filterbankCache = weights;
  return weights;
}

let hannCache = null;

/**
 * Periodic Hann window of 320 samples (`_hann_periodic`), cached: do not modify.
 * @returns {Float64Array} (320,): 0.5 - 0.5 cos(2 pi n / 320).
 */
export function hannPeriodic() {
  if (hannCache) return hannCache;
  const w = new Float64Array(WIN_LENGTH);
  for (let n = 0; n < WIN_LENGTH; n++) w[n] = 0.5 - 0.5 * Math.cos((2.0 * Math.PI * n) / WIN_LENGTH);
  hannCache = w;
  return w;
}

// ---- 512-point real FFT: a 256-point complex radix-2 FFT of the even/odd samples, then one split pass ----

const HALF = N_FFT / 2; // 256 complex points
const LOG2_HALF = 8;
const BITREV = new Uint16Array(HALF);
for (let i = 0; i < HALF; i++) {
  let r = 0;
  for (let b = 0; b < LOG2_HALF; b++) r |= ((i >> b) & 1) << (LOG2_HALF - 1 - b);
  BITREV[i] = r;
}
// exp(-2 pi i k / 256) for the butterflies (k < 128) and exp(-2 pi i k / 512) for the split (k <= 256)
const TW_RE = new Float64Array(HALF / 2);
const TW_IM = new Float64Array(HALF / 2);
for (let k = 0; k < HALF / 2; k++) {
  TW_RE[k] = Math.cos((2 * Math.PI * k) / HALF);
  TW_IM[k] = -Math.sin((2 * Math.PI * k) / HALF);
}
const SPLIT_RE = new Float64Array(HALF + 1);
const SPLIT_IM = new Float64Array(HALF + 1);
for (let k = 0; k <= HALF; k++) {
  SPLIT_RE[k] = Math.cos((2 * Math.PI * k) / N_FFT);
  SPLIT_IM[k] = -Math.sin((2 * Math.PI * k) / N_FFT);
}
const zRe = new Float64Array(HALF);
const zIm = new Float64Array(HALF);

/** In-place 256-point complex FFT (decimation in time) of zRe/zIm, input already bit-reversed. */
function fft256() {
  // stages 1 and 2 as one radix-4 pass (twiddles 1 and -i: no multiplications)
  for (let s = 0; s < HALF; s += 4) {
    const r0 = zRe[s], i0 = zIm[s], r1 = zRe[s + 1], i1 = zIm[s + 1];
    const r2 = zRe[s + 2], i2 = zIm[s + 2], r3 = zRe[s + 3], i3 = zIm[s + 3];
    const ar = r0 + r1, ai = i0 + i1, br = r0 - r1, bi = i0 - i1;
    const cr = r2 + r3, ci = i2 + i3, dr = r2 - r3, di = i2 - i3;
    zRe[s] = ar + cr;
    zIm[s] = ai + ci;
    zRe[s + 2] = ar - cr;
    zIm[s + 2] = ai - ci;
    zRe[s + 1] = br + di; // b + (-i) d
    zIm[s + 1] = bi - dr;
    zRe[s + 3] = br - di;
    zIm[s + 3] = bi + dr;
  }
  // the other radix-2 stages, one twiddle per inner loop
  for (let half = 4, step = HALF / 8; half < HALF; half <<= 1, step >>= 1) {
    const size = half << 1;
    for (let j = 0, t = 0; j < half; j++, t += step) {
      const wr = TW_RE[t];
      const wi = TW_IM[t];
      for (let a = j; a < HALF; a += size) {
        const b = a + half;
        const xr = zRe[b];
        const xi = zIm[b];
        const br = xr * wr - xi * wi;
        const bi = xr * wi + xi * wr;
        const ar = zRe[a];
        const ai = zIm[a];
        zRe[b] = ar - br;
        zIm[b] = ai - bi;
        zRe[a] = ar + br;
        zIm[a] = ai + bi;
      }
    }
  }
}

/**
 * 512-point real FFT (numpy.fft.rfft(x, n=512)); inputs shorter than 512 are zero-padded.
 * @param {ArrayLike<number>} x (n,) real samples, n <= 512.
 * @param {Float64Array} re (>= 257,) receives the real parts of bins 0..256.
 * @param {Float64Array} im (>= 257,) receives the imaginary parts of bins 0..256.
 */
export function rfft512(x, re, im) {
  const n = Math.min(x.length, N_FFT);
  for (let i = 0; i < HALF; i++) {
    const r = BITREV[i];
    zRe[r] = 2 * i < n ? x[2 * i] : 0;
    zIm[r] = 2 * i + 1 < n ? x[2 * i + 1] : 0;
  }
  fft256();
  split((k, xr, xi) => {
    re[k] = xr;
    im[k] = xi;
  });
}

/** X[k] = E[k] + W^k O[k] from the packed FFT Z (E, O: spectra of the even / odd samples), k = 0..256. */
function split(emit) {
  emit(0, zRe[0] + zIm[0], 0);
  emit(HALF, zRe[0] - zIm[0], 0);
  for (let k = 1; k < HALF; k++) {
    const ar = zRe[k];
    const ai = zIm[k];
    const br = zRe[HALF - k];
    const bi = -zIm[HALF - k];
    const er = 0.5 * (ar + br);
    const ei = 0.5 * (ai + bi);
    const or = 0.5 * (ai - bi); // (a - b) / 2i
    const oi = -0.5 * (ar - br);
    emit(k, er + SPLIT_RE[k] * or - SPLIT_IM[k] * oi, ei + SPLIT_RE[k] * oi + SPLIT_IM[k] * or);
  }
}

/** Power spectrum |rfft512(x)|^2 of the packed FFT in zRe/zIm, inline (the hot path of the mel). */
function powerFromPacked(power) {
  const z0r = zRe[0];
  const z0i = zIm[0];
  power[0] = (z0r + z0i) * (z0r + z0i);
  power[HALF] = (z0r - z0i) * (z0r - z0i);
  for (let k = 1; k < HALF; k++) {
    const ar = zRe[k];
    const ai = zIm[k];
    const br = zRe[HALF - k];
    const bi = -zIm[HALF - k];
    const er = 0.5 * (ar + br);
    const ei = 0.5 * (ai + bi);
    const or = 0.5 * (ai - bi);
    const oi = -0.5 * (ar - br);
    const xr = er + SPLIT_RE[k] * or - SPLIT_IM[k] * oi;
    const xi = ei + SPLIT_RE[k] * oi + SPLIT_IM[k] * or;
    power[k] = xr * xr + xi * xi;
  }
}

// ---- the mel of a signal ----

let spans = null; // {lo: Int32Array(80), hi: Int32Array(80), w: Float64Array} nonzero spans of the filterbank

function filterSpans() {
  if (spans) return spans;
  const fb = melFilterbank();
  const lo = new Int32Array(N_MELS);
  const hi = new Int32Array(N_MELS);
  const chunks = [];
  let total = 0;
  for (let m = 0; m < N_MELS; m++) {
    const row = fb.subarray(m * N_BINS, (m + 1) * N_BINS);
    let a = 0;
    while (a < N_BINS && row[a] === 0) a++;
    let b = N_BINS;
    while (b > a && row[b - 1] === 0) b--;
    lo[m] = a;
    hi[m] = b;
    chunks.push(row.subarray(a, b));
    total += b - a;
  }
  const w = new Float64Array(total);
  let off = 0;
  for (const c of chunks) {
    w.set(c, off);
    off += c.length;
  }
  spans = { lo, hi, w };
  return spans;
}

const powerScratch = new Float64Array(N_BINS);

/**
 * Log-mel columns of a signal framed at hop 160 with no padding (`_log_mel_of_signal`).
 * @param {ArrayLike<number>} signal (N,) 16 kHz samples, N >= 320.
 * @param {Float32Array} [out] (80 * C,) to fill instead of allocating.
 * @returns {Float32Array} (80 * C,) row-major (80 mel rows, C = floor((N - 320) / 160) + 1 columns):
 *   element [m * C + c] = log(max(mel power of bin m in column c, 1e-5)).
 */
export function logMelOfSignal(signal, out) {
  if (!(signal.length >= WIN_LENGTH)) throw new RangeError(`signal needs >= ${WIN_LENGTH} samples, got ${signal.length}`);
  const nCols = Math.floor((signal.length - WIN_LENGTH) / HOP_LENGTH) + 1;
  const result = out ?? new Float32Array(N_MELS * nCols);
  if (result.length !== N_MELS * nCols) throw new RangeError(`out must have ${N_MELS * nCols} elements`);
  const hann = hannPeriodic();
  const { lo, hi, w } = filterSpans();
  const power = powerScratch;
  for (let c = 0; c < nCols; c++) {
    const base = c * HOP_LENGTH;
    // pack the windowed frame (320 samples, zero-padded to 512) as z[i] = x[2i] + i x[2i+1], bit-reversed
    for (let i = 0; i < WIN_LENGTH / 2; i++) {
      const r = BITREV[i];
      zRe[r] = signal[base + 2 * i] * hann[2 * i];
      zIm[r] = signal[base + 2 * i + 1] * hann[2 * i + 1];
    }
    for (let i = WIN_LENGTH / 2; i < HALF; i++) {
      const r = BITREV[i];
      zRe[r] = 0;
      zIm[r] = 0;
    }
    fft256();
    powerFromPacked(power);
    for (let m = 0, off = 0; m < N_MELS; m++) {
      let acc = 0;
      for (let b = lo[m]; b < hi[m]; b++, off++) acc += w[off] * power[b];
      result[m * nCols + c] = Math.log(acc < LOG_FLOOR ? LOG_FLOOR : acc); // NaN stays NaN, as np.maximum
    }
  }
  return result;
}

/**
 * Log-mel spectrogram of one 200 ms window (`log_mel_window`), the generator's `mel` input for one frame.
 * @param {Float32Array} windowPcm (3200,) mono 16 kHz (see `pcmWindow`).
 * @param {Float32Array} [out] (1520,) to fill instead of allocating.
 * @returns {Float32Array} (80 * 19,) row-major like numpy's (80, 19) float32 array: element [m * 19 + c] is
 *   mel bin m (55..7600 Hz) of STFT column c (samples [160 c, 160 c + 320) of the window), natural log.
 * @throws {RangeError} wrong length.
 */
export function logMelWindow(windowPcm, out) {
  if (windowPcm.length !== WINDOW_SAMPLES) {
    throw new RangeError(`audio window must have ${WINDOW_SAMPLES} samples, got ${windowPcm.length}`);
  }
  return logMelOfSignal(windowPcm, out);
}
