// web/src/mel.mjs against Python's avfr.codec.data.audio (fixture: tests/data/web/make_mel.py).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  hannPeriodic,
  logMelOfSignal,
  logMelWindow,
  melFilterbank,
  N_BINS,
  N_MELS,
  pcmWindow,
  rfft512,
  windowBounds,
} from '../src/mel.mjs';
import { loadFixture } from './fixtures.mjs';

const MEL_TOL = 1e-4;


const { meta, get } = loadFixture('mel.json');

function maxAbsDiff(a, b) {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function speechPcm() {
  const codes = get(meta.speech.array);
  return Float32Array.from(codes, (c) => c * meta.speech.scale); // c / 32768, exact in float32
}

test('windowBounds equals window_bounds for frames 0..200, centred and causal', () => {
  for (const [mode, causal] of [['centred', false], ['causal', true]]) {
    meta.bounds[mode].forEach((want, i) => assert.deepEqual(windowBounds(i, causal), want, `${mode} frame ${i}`));
  }
  assert.deepEqual(windowBounds(3), [320, 3520]);
  assert.deepEqual(windowBounds(3, true), [-1280, 1920]);
});

test('pcmWindow pads with zeros outside the clip', () => {
  const pcm = Float32Array.from({ length: 5000 }, (_, i) => i + 1);
  const w0 = pcmWindow(pcm, 0);
  assert.equal(w0.length, 3200);
  assert.equal(w0[1599], 0);
  assert.equal(w0[1600], 1);
  const w6 = pcmWindow(pcm, 6, true); // [640, 3840)
  assert.equal(w6[0], 641);
  const w8 = pcmWindow(pcm, 8); // [3520, 6720): 1480 samples, then zeros
  assert.equal(w8[1479], 5000);
  assert.equal(w8[1480], 0);
});

test('melFilterbank matches mel_filterbank within 1e-6 (and is zero outside the same spans)', (t) => {
  const fb = melFilterbank();
  assert.equal(fb.length, N_MELS * N_BINS);
  assert.deepEqual(meta.filterbank.shape, [N_MELS, N_BINS]);
  assert.equal(melFilterbank(), fb, 'cached');
  const spans = get(meta.filterbank.weights);
  let off = 0;
  let maxErr = 0;
  for (let m = 0; m < N_MELS; m++) {
    const lo = meta.filterbank.lo[m];
    const hi = meta.filterbank.hi[m];
    for (let b = 0; b < N_BINS; b++) {
      const want = b >= lo && b < hi ? spans[off + b - lo] : 0;
      if (want === 0) assert.equal(fb[m * N_BINS + b], 0, `filter ${m} bin ${b} should be 0`);
      maxErr = Math.max(maxErr, Math.abs(fb[m * N_BINS + b] - want));
    }
    off += hi - lo;
  }
  t.diagnostic(`filterbank max abs error ${maxErr.toExponential(2)}`);
  assert.ok(maxErr < 1e-6, `filterbank error ${maxErr}`);
});

test('rfft512 equals a direct DFT', () => {
  const x = Float64Array.from({ length: 320 }, (_, i) => Math.sin(i * 0.37) + ((i * 7919) % 13) / 13 - 0.5);
  const re = new Float64Array(257);
  const im = new Float64Array(257);
  rfft512(x, re, im);
  let maxErr = 0;
  for (let k = 0; k <= 256; k++) {
    let sr = 0;
    let si = 0;
    for (let n = 0; n < x.length; n++) {
      sr += x[n] * Math.cos((2 * Math.PI * k * n) / 512);
      si -= x[n] * Math.sin((2 * Math.PI * k * n) / 512);
    }
    maxErr = Math.max(maxErr, Math.abs(sr - re[k]), Math.abs(si - im[k]));
  }
  assert.ok(maxErr < 1e-10, `rfft error ${maxErr}`);
  const w = hannPeriodic();
  assert.equal(w[0], 0);
  assert.ok(Math.abs(w[160] - 1) < 1e-15);
});

test('logMelWindow equals log_mel_window within 1e-4 on real speech and synthetic windows', (t) => {
  const speech = speechPcm();
  const errors = [];
  for (const win of meta.windows) {
    let pcm;
    let label;
    if (win.kind === 'speech') {
      pcm = pcmWindow(speech, win.frame, win.causal);
      label = `speech frame ${win.frame}${win.causal ? ' causal' : ''}`;
    } else {
      pcm = win.pcm === null ? new Float32Array(3200) : get(win.pcm);
      label = win.kind;
    }
    const got = logMelWindow(pcm);
    const want = get(win.mel);
    assert.equal(got.length, 80 * 19);
    const err = maxAbsDiff(got, want);
    errors.push([label, err]);
    assert.ok(err < MEL_TOL, `${label}: max abs error ${err}`);
  }
  const worst = Math.max(...errors.map(([, e]) => e));
  t.diagnostic(`mel max abs error per window: ${errors.map(([l, e]) => `${l} ${e.toExponential(1)}`).join(', ')}`);
  t.diagnostic(`mel max abs error overall ${worst.toExponential(2)} over ${errors.length} windows`);
  const silence = logMelWindow(new Float32Array(3200));
  assert.ok(silence.every((v) => v === Math.fround(Math.log(1e-5))));
});

test('logMelWindow: row-major (80, 19), out reuse, length check', () => {
  const speech = speechPcm();
  const window = pcmWindow(speech, 12);
  const a = logMelWindow(window);
  const out = new Float32Array(80 * 19).fill(NaN);
  assert.equal(logMelWindow(window, out), out);
  assert.deepEqual(out, a);
  // column c of a window = column c + 4 of the window one video frame (640 samples) earlier
  const earlier = logMelWindow(pcmWindow(speech, 11));
  for (let m = 0; m < 80; m++) {
    for (let c = 0; c < 15; c++) assert.equal(a[m * 19 + c], earlier[m * 19 + c + 4], `mel ${m} col ${c}`);
  }
  // a longer signal: 23 columns whose first 19 are the window's
  const longer = new Float32Array(3200 + 4 * 160);
  longer.set(window);
  const cols = logMelOfSignal(longer);
  assert.equal(cols.length, 80 * 23);
  for (let m = 0; m < 80; m++) assert.deepEqual(cols.subarray(m * 23, m * 23 + 19), a.subarray(m * 19, m * 19 + 19));
  assert.throws(() => logMelWindow(new Float32Array(3199)), RangeError);
});

test('logMelWindow speed (25 windows/s needed)', (t) => {
  const speech = speechPcm();
  const windows = Array.from({ length: 16 }, (_, i) => pcmWindow(speech, i * 2));
  const out = new Float32Array(80 * 19);
  for (let i = 0; i < 300; i++) logMelWindow(windows[i % 16], out); // warm up the JIT
  const n = 2000;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) logMelWindow(windows[i % 16], out);
  const perWindowUs = Number(process.hrtime.bigint() - t0) / 1e3 / n;
  t.diagnostic(`logMelWindow: ${perWindowUs.toFixed(1)} us per window (${n} windows, node ${process.version})`);
  assert.ok(perWindowUs < 5000, `too slow: ${perWindowUs} us per window`);
});
