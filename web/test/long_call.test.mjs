// Long calls through the Decoder (decoder.mjs) and the JitterBuffer (playout.mjs): frame and audio indexes past
// the 16-bit seq's half and full range (32768 and 65536 frames after the start anchor: 21 min 50 s and
// 43 min 41 s at 25 fps) and the 32-bit ts's half range, offline and in realtime mode; the cases of
// tests/test_receiver_long_call.py. The recorded call's Hello and source image (tests/data/web/
// make_playout.py) start it; the media are made here to be recognisable: frame n's keypoints spell n (a KEY
// packet on even frames; on odd frames a DELTA that adds one level to every y), and the fake PCM provider turns
// audio packet a (payload: uint32 a) into 320 samples of value a (-1: concealed), so every frame can be checked
// to carry its own keypoints and speech.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { DecoderStats, decoderConfig } from '../src/config.mjs';
import { Decoder, receiverCapabilities } from '../src/decoder.mjs';
import { MessageType, parseTag } from '../src/framing.mjs';
import { decodeKeypoints, dequantise } from '../src/keypoints.mjs';
import { AudioGap, JitterBuffer, neededSamples } from '../src/playout.mjs';
import { CONTROL_CHANNEL_LABEL as C, MEDIA_CHANNEL_LABEL as M, decodeMessage, sessionFromHello } from '../src/wire.mjs';

const FIXTURE = new URL('../../tests/data/web/playout_grid_lwbsza.json', import.meta.url);
const PLAYOUT = JSON.parse(readFileSync(FIXTURE, 'utf8'));
const b64 = (s) => new Uint8Array(Buffer.from(s, 'base64'));
const MSGS = PLAYOUT.messages.map((m) => [m.channel, b64(m.data)]);
const HEAD = MSGS.filter(([, d]) => [MessageType.HELLO, MessageType.SOURCE_CHUNK].includes(parseTag(d)));
const SESSION = sessionFromHello(decodeMessage(MSGS[0][1]));
const K = SESSION.numKp;
const U32 = 2 ** 32;
const SEQ0 = 65000; // the seq also wraps near frame 536, 66072, ...
const TS0 = U32 - 3600 * 1000; // the ts wraps at frame 1000
const DIGITS = 3; // keypoints 0..2 carry frame n's digits in x
// Python's encode_keypoints(KeypointsDelta(seq, seq - 1, 0, common=[0, 1, 0, 0, 0, 0], zero residuals)) after
// the 1-byte header, 0x80 | (seq & 0x7f) (checked below by decoding it)
const DELTA_PAYLOAD = Uint8Array.of(0x3a, 0xc5, 0xd0);

/** Frame n's keypoint levels (K * 2, x y interleaved). */
function levels(n) {
  const q = new Int32Array(2 * K);
  const bits = SESSION.kpBits;
  const base = n - (n % 2);
  for (let d = 0; d < DIGITS; d++) q[2 * d] = (Math.floor(base / 2 ** (bits * d)) % 2 ** bits) - 2 ** (bits - 1);
  for (let i = 0; i < K; i++) q[2 * i + 1] = n % 2;
  return q;
}

function keypoints(n) {
  const seq = (SEQ0 + n) & 0xffff;
  if (n % 2) return Uint8Array.of(0x80 | (seq & 0x7f), ...DELTA_PAYLOAD);
  const bits = [];
  const put = (u, b) => { for (let j = b - 1; j >= 0; j--) bits.push((u >> j) & 1); };
  for (const q of levels(n)) put(q + 2 ** (SESSION.kpBits - 1), SESSION.kpBits);
  for (let i = 0; i < 4 * K; i++) put(2 ** (SESSION.jacBits - 1), SESSION.jacBits); // zero jacobians
  const out = new Uint8Array(7 + Math.ceil(bits.length / 8));
  const view = new DataView(out.buffer);
  view.setUint8(0, 0x26);
  view.setUint16(1, seq);
  view.setUint32(3, (TS0 + 3600 * n) % U32);
  bits.forEach((bit, i) => { out[7 + (i >> 3)] |= bit << (7 - (i & 7)); });
  return out;
}

function audio(a) {
  const out = new Uint8Array(11);
  const view = new DataView(out.buffer);
  view.setUint8(0, 0x28);
  view.setUint16(1, a & 0xffff);
  view.setUint32(3, (TS0 + 1800 * a) % U32);
  view.setUint32(7, a);
  return out;
}

/** Frame n's media in send order (the start anchor after frame 0's keypoints). */
function frame(n) {
  const kp = keypoints(n);
  return [[M, kp], ...(n === 0 ? [[C, kp]] : []), [M, audio(2 * n)], [M, audio(2 * n + 1)]];
}

/** A synchronous PCM provider without delay: packet a -> 320 samples of value a; lost -1, silence -2. */
class TaggedOpus {
  constructor() { this._out = []; }

  decode(payload) { this._push(new DataView(payload.buffer, payload.byteOffset).getUint32(0)); }

  conceal() { this._push(-1); }

  silence() { this._push(-2); }

  _push(value) { this._out.push(new Float32Array(320).fill(value)); }

  take() {
    const out = new Float32Array(320 * this._out.length);
    this._out.forEach((chunk, i) => out.set(chunk, 320 * i));
    this._out = [];
    return out;
  }
}

async function decoder(config = {}) {
  const dec = new Decoder(config, receiverCapabilities(PLAYOUT.capabilities), { pcmProvider: () => new TaggedOpus() });
  for (const [channel, data] of HEAD) {
    dec.receive(channel, data, 0);
    await dec.settled();
  }
  return dec;
}

/** Check the frame jobs ready so far (own keypoints and speech, or the held / concealed ones); returns REFRESHes. */
function take(dec, decided, { lostKp = new Set(), lostAudio = new Set() } = {}) {
  for (const job of dec.takeJobs()) {
    if (job.type !== 'frame') continue;
    const n = job.index;
    assert.equal(job.ts90k, (TS0 + 3600 * n) % U32);
    const lost = lostKp.has(n);
    assert.deepEqual(job.kp, dequantise(levels(lost ? n - 1 : n), SESSION.kpBits, 1.0), `frame ${n}`);
    assert.deepEqual([job.concealed, job.heldFrames], lost ? [true, 1] : [false, 0], `frame ${n}`);
    for (const [half, a] of [2 * n, 2 * n + 1].entries()) {
      const want = lostAudio.has(a) ? -1 : a;
      assert.ok(job.pcm.subarray(320 * half, 320 * (half + 1)).every((v) => v === want), `frame ${n}, audio ${a}`);
    }
    decided.push(n);
  }
  return dec.takeReplies().filter((r) => parseTag(r) === MessageType.REFRESH).length;
}

const range = (a, b) => Array.from({ length: b - a }, (_, i) => a + i);

test('the made-up packets mean what they should', () => {
  const delta = decodeKeypoints(keypoints(1), SESSION, SEQ0 + 1);
  assert.deepEqual([delta.seq, delta.refSeq, delta.tsOffset90k], [SEQ0 + 1, SEQ0, 0]);
  assert.equal(keypoints(1).length, 4);
  assert.equal(decodeKeypoints(keypoints(1), SESSION).seq, 65513); // next to seq 0: another frame (65001 - 65513 = -512)
  assert.deepEqual([...delta.common], [0, 1, 0, 0, 0, 0]);
  assert.ok(delta.kpRes.every((v) => v === 0) && delta.jacRes.every((v) => v === 0));
  const key = decodeKeypoints(keypoints(2 * 70001), SESSION);
  assert.deepEqual([...key.kpQ], [...levels(2 * 70001)]);
  assert.equal(key.ts90k, (TS0 + 3600 * 2 * 70001) % U32);
});

test('offline, 70,001 frames past both seq marks: every frame decided with its own keypoints and speech', async () => {
  const frames = 70001; // the last (even) frame is a KEY packet: the end anchor
  const dec = await decoder();
  const decided = [];
  let refreshes = 0;
  for (let n = 0; n < frames; n++) {
    for (const [channel, data] of frame(n)) dec.receive(channel, data, 0);
    if (n % 10 === 0) refreshes += take(dec, decided); // often, as the page does (the speech held grows until then)
  }
  dec.receive(C, keypoints(frames - 1), 0); // end anchor
  dec.finish();
  refreshes += take(dec, decided);
  assert.deepEqual(decided, range(0, frames));
  assert.ok(dec.finished);
  const s = dec.stats;
  assert.deepEqual([s.lost, s.concealed, s.droppedLate, s.droppedMalformed, s.droppedBroken, s.audioConcealed],
    [0, 0, 0, 0, 0, 0]);
  assert.equal(s.audioReceived, 2 * frames);
  assert.equal(refreshes, 0);
});

/** A seeded generator in [0, 1) (mulberry32). */
function random(seed) {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('realtime across the seq half range with 30 ms jitter and loss: losses concealed, the rest its own', async () => {
  const frames = 32851;
  const [w0, w1] = [32700, 32850]; // jitter and loss in frames [w0, w1)
  const rng = random(7);
  const lostKp = new Set(range(w0, w1).filter((n) => n % 2 && (rng() < 0.15 || n === 32767 || n === 32769)));
  const lostAudio = new Set([...range(2 * w0, 2 * w1).filter(() => rng() < 0.05), 65536]);
  const dec = await decoder({ realtime: true });
  const decided = [];
  for (let n = 0; n < w0; n++) {
    for (const [channel, data] of frame(n)) dec.receive(channel, data, 0.04 * n);
    if (n % 10 === 0) take(dec, decided);
  }
  const events = []; // [arrival s, order, message or null: a tick]
  for (let n = w0; n < frames; n++) {
    const msgs = [...(lostKp.has(n) ? [] : [[M, keypoints(n)]]),
      ...[2 * n, 2 * n + 1].filter((a) => !lostAudio.has(a)).map((a) => [M, audio(a)])];
    for (const msg of msgs) events.push([0.04 * n + (n < w1 ? 0.03 * rng() : 0), events.length, msg]);
  }
  const t1 = 0.04 * frames;
  for (let i = 0; 0.04 * w0 + 0.01 * i < t1; i++) events.push([0.04 * w0 + 0.01 * i, events.length, null]);
  events.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  for (const [t, , msg] of events) {
    if (msg === null) dec.tick(t);
    else dec.receive(msg[0], msg[1], t);
  }
  dec.receive(C, keypoints(frames - 1), t1 + 0.5); // end anchor
  dec.finish();
  take(dec, decided, { lostKp, lostAudio });
  assert.deepEqual(decided, range(0, frames));
  assert.ok(dec.finished);
  const s = dec.stats;
  assert.deepEqual([s.lost, s.audioConcealed], [lostKp.size, lostAudio.size]);
  assert.deepEqual([s.droppedLate, s.lateFrames, s.droppedMalformed, s.droppedBroken], [0, 0, 0, 0]);
});

test('JitterBuffer past the ts half range (2**31 ticks, 6 h 37 min): keypoints and audio land on their indexes', () => {
  const start = 600000; // 600000 * 3600 > 2**31 ticks; the seq wrapped 9 times
  const buf = new JitterBuffer(decoderConfig({}), new DecoderStats());
  buf.start(SEQ0, TS0, { fps: 25, tsStep90k: 3600, causalWindow: false });
  buf.nextFrame = start; // fast-forward (private: no public way to get there)
  buf._audioNext = 2 * start;
  for (let n = start; n < start + 10; n++) {
    assert.equal(buf.putKeypoints({ seq: (SEQ0 + n) & 0xffff, ts90k: (TS0 + 3600 * n) % U32, n }, 0), n);
    for (const a of [2 * n, 2 * n + 1]) {
      assert.equal(buf.putAudio({ seq: a & 0xffff, ts90k: (TS0 + 1800 * a) % U32, payload: a }, 0), true);
    }
  }
  buf.endAt((SEQ0 + start + 9) & 0xffff);
  for (let n = start; n < start + 10; n++) {
    const due = buf.due(0);
    assert.deepEqual([due.index, due.haveKp], [n, true]);
    assert.equal(buf.popKeypoints(n).n, n);
    while (320 * buf._audioNext < neededSamples(n, false)) {
      const payload = buf.nextAudio(due.ended);
      assert.ok(payload === AudioGap.PAST_END || payload === buf._audioNext - 1);
    }
    buf.decided(n);
    assert.equal(buf.ts90k(n), (TS0 + 3600 * n) % U32);
  }
  assert.ok(buf.ended);
});
