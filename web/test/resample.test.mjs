// web/src/resample.mjs: streaming, level/phase/alias figures, and closeness to the Python receiver's
// swresample path (fixture: tests/data/web/make_mel.py -> resample.json / resample.bin).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { logMelWindow } from '../src/mel.mjs';
import { lowpassTaps, Resampler48kTo16k, resample48kTo16k } from '../src/resample.mjs';
import { loadFixture } from './fixtures.mjs';



/** Deterministic pseudo-random floats in [-0.5, 0.5). */
function noise(n, seed = 1) {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
}

function tone(freqHz, n, rate, amp = 0.5) {
  return Float32Array.from({ length: n }, (_, i) => amp * Math.sin((2 * Math.PI * freqHz * i) / rate));
}

function rms(x, from = 0, to = x.length) {
  let s = 0;
  for (let i = from; i < to; i++) s += x[i] * x[i];
  return Math.sqrt(s / (to - from));
}

function concat(parts) {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

test('lowpassTaps: unit DC gain, symmetric about the centre tap', () => {
  const { coef, before, after } = lowpassTaps();
  assert.equal(coef.length, 100);
  assert.equal(before, 49);
  assert.equal(after, 50);
  assert.ok(Math.abs(coef.reduce((a, b) => a + b, 0) - 1) < 1e-12);
  for (let j = 1; j <= 49; j++) assert.ok(Math.abs(coef[before + j] - coef[before - j]) < 1e-15);
});

test('streaming in any chunks equals one call on the concatenation, round(N / 3) outputs', () => {
  for (const n of [0, 1, 2, 5, 100, 48000, 48001, 48002]) {
    const x = noise(n, n + 7);
    const once = resample48kTo16k(x);
    assert.equal(once.length, Math.floor((n + 1) / 3), `length for N = ${n}`);
    const r = new Resampler48kTo16k();
    const parts = [];
    const sizes = [0, 1, 7, 960, 2, 480, 3, 1000];
    for (let off = 0, i = 0; off < n; i++) {
      const size = Math.min(sizes[i % sizes.length], n - off);
      parts.push(r.process(x.subarray(off, off + size)));
      off += size;
    }
    parts.push(r.flush());
    assert.deepEqual(concat(parts), once, `N = ${n}`);
  }
  // after flush the resampler starts a new stream
  const r = new Resampler48kTo16k();
  const x = noise(4800, 3);
  const first = concat([r.process(x), r.flush()]);
  assert.deepEqual(concat([r.process(x), r.flush()]), first);
  // outputs come out once their 50-sample look-ahead is there
  assert.equal(new Resampler48kTo16k().process(new Float32Array(960)).length, Math.floor((959 - 50) / 3) + 1);
});

test('a constant stays constant to the edges (swresample mirrors the input at both ends)', () => {
  const y = resample48kTo16k(new Float32Array(4800).fill(0.25));
  for (const v of y) assert.ok(Math.abs(v - 0.25) < 1e-6, `${v}`);
});

test('1 kHz keeps its level within 0.1 dB and its phase within 1 sample; 12 kHz is down > 40 dB', (t) => {
  const n = 48000;
  const y = resample48kTo16k(tone(1000, n, 48000));
  const want = tone(1000, y.length, 16000);
  const [lo, hi] = [800, y.length - 800]; // away from the edges
  const levelDb = 20 * Math.log10(rms(y, lo, hi) / rms(want, lo, hi));
  // phase: project on sin / cos of the expected tone
  let s = 0;
  let c = 0;
  for (let k = lo; k < hi; k++) {
    const ph = (2 * Math.PI * 1000 * k) / 16000;
    s += y[k] * Math.sin(ph);
    c += y[k] * Math.cos(ph);
  }
  const lagSamples = (-Math.atan2(c, s) / (2 * Math.PI)) * 16; // 16 output samples per 1 kHz period
  const y12 = resample48kTo16k(tone(12000, n, 48000));
  const aliasDb = 20 * Math.log10(rms(y12, lo, hi) / 0.5 / Math.SQRT1_2);
  t.diagnostic(`1 kHz level ${levelDb.toFixed(5)} dB, phase lag ${lagSamples.toExponential(2)} samples; 12 kHz ${aliasDb.toFixed(1)} dB`);
  assert.ok(Math.abs(levelDb) < 0.1, `1 kHz level ${levelDb} dB`);
  assert.ok(Math.abs(lagSamples) < 1, `1 kHz phase lag ${lagSamples} samples`);
  assert.ok(aliasDb < -40, `12 kHz only ${aliasDb} dB down`);
});

/** SNR (dB) of `got` against `ref` over [lo, hi). */
function snrDb(ref, got, lo = 0, hi = ref.length) {
  let sig = 0;
  let err = 0;
  for (let i = lo; i < hi; i++) {
    sig += ref[i] * ref[i];
    err += (ref[i] - got[i]) ** 2;
  }
  return 10 * Math.log10(sig / Math.max(err, 1e-300));
}

/** Max abs difference of the log-mel of every 640-sample-spaced 3200-sample window of two 16 kHz signals. */
function melDiff(a, b) {
  let worst = 0;
  for (let start = 0; start + 3200 <= a.length; start += 640) {
    const ma = logMelWindow(a.subarray(start, start + 3200));
    const mb = logMelWindow(b.subarray(start, start + 3200));
    for (let i = 0; i < ma.length; i++) worst = Math.max(worst, Math.abs(ma[i] - mb[i]));
  }
  return worst;
}

test('close to the Python receiver (FFmpeg swresample) on Opus-decoded real speech at 48 kHz', (t) => {
  const { meta, get } = loadFixture('resample.json');
  const x = Float32Array.from(get(meta.input_48k), (c) => c * meta.scale);
  const ref = get(meta.swresample_16k);
  // as the receiver streams it: 20 ms frames (960 samples at 48 kHz), then flush
  const r = new Resampler48kTo16k();
  const parts = [];
  for (let off = 0; off < x.length; off += 960) parts.push(r.process(x.subarray(off, off + 960)));
  parts.push(r.flush());
  const y = concat(parts);
  assert.equal(y.length, ref.length);
  const snr = snrDb(ref, y);
  let maxAbs = 0;
  for (let i = 0; i < y.length; i++) maxAbs = Math.max(maxAbs, Math.abs(y[i] - ref[i]));
  // best integer lag (should be 0: both centre output k on input 3k)
  let bestLag = 0;
  let bestSnr = -Infinity;
  for (let lag = -3; lag <= 3; lag++) {
    const s = snrDb(ref.subarray(10, ref.length - 10), y.subarray(10 + lag, y.length - 10 + lag));
    if (s > bestSnr) [bestSnr, bestLag] = [s, lag];
  }
  const mel = melDiff(ref, y);
  t.diagnostic(`vs swresample: SNR ${snr.toFixed(1)} dB, max abs diff ${maxAbs.toExponential(2)}, best lag ${bestLag}, ` +
    `mel max abs diff ${mel.toExponential(2)} (${y.length} samples, rms ${(20 * Math.log10(rms(ref))).toFixed(1)} dBFS)`);
  assert.equal(bestLag, 0);
  assert.ok(snr > 60, `SNR ${snr} dB`);
  assert.ok(mel < 1e-3, `mel difference ${mel}`);
  // the same with a 7.6 kHz cut-off: how much the design choice matters
  const y76 = resample48kTo16k(x, { cutoffHz: 7600 });
  t.diagnostic(`cutoffHz 7600 instead: SNR ${snrDb(ref, y76).toFixed(1)} dB, mel max abs diff ${melDiff(ref, y76).toExponential(2)}`);
});
