// web/src/keypoints.mjs + entropy.mjs against Python's KeypointDecoder on a real call (tests/data/web/
// make_stream.py: the sender on grid_lwbsza.mp4, lossless and lossy) and on the golden KEY + DELTA.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { BinDecoder } from '../src/entropy.mjs';
import {
  DELTA_HEADER_BYTES, INITIAL_PROBS, KeypointDecoder, MAX_REF_DISTANCE, decodeKeypoints, dequantise, keyPacketBytes,
  seqDiff,
} from '../src/keypoints.mjs';
import { MessageType, ProtocolError, WIRE_VERSION, makeSession, parseTag } from '../src/wire.mjs';

const DATA = new URL('../../tests/data/', import.meta.url);
const FIXTURE = JSON.parse(readFileSync(new URL(`web/proto_v${WIRE_VERSION}.json`, DATA), 'utf8'));
const STREAM = JSON.parse(readFileSync(new URL('web/stream_grid_lwbsza.json', DATA), 'utf8'));
const RUNS = JSON.parse(readFileSync(new URL('web/stream_grid_lwbsza_keypoints.json', DATA), 'utf8'));
const MESSAGES = STREAM.messages.map((m) => new Uint8Array(Buffer.from(m.data, 'base64')));
const golden = (name) => new Uint8Array(readFileSync(new URL(`proto/v${WIRE_VERSION}/${name}.bin`, DATA)));
const isKeypoints = (data) => [MessageType.KEYPOINTS_KEY, MessageType.KEYPOINTS_DELTA].includes(parseTag(data));

/** Bitwise equality of a Float32Array with Python's float32 values (as exact float64 JSON numbers). */
function assertFloat32Equal(actual, expected, what) {
  assert.ok(actual instanceof Float32Array, what);
  const want = Float32Array.from(expected);
  assert.deepEqual(Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength),
    Buffer.from(want.buffer), what);
  expected.forEach((v, i) => assert.ok(Object.is(actual[i], v), `${what}[${i}]: ${actual[i]} != ${v}`));
}

function assertFrame(frame, expected, what) {
  if (expected === null) {
    assert.equal(frame, null, what);
    return;
  }
  assert.notEqual(frame, null, what);
  for (const key of ['seq', 'ts90k', 'key', 'exact']) assert.equal(frame[key], expected[key], `${what} ${key}`);
  assertFloat32Equal(frame.kp, expected.kp, `${what} kp`);
  assertFloat32Equal(frame.jac, expected.jac, `${what} jac`);
}

const keyPacket = (seq, ts90k, k, level = 0) => ({
  type: MessageType.KEYPOINTS_KEY, seq, ts90k, kpQ: new Int32Array(2 * k).fill(level), jacQ: new Int32Array(4 * k),
});
const deltaPacket = (seq, refSeq, k, { common = [0, 0, 0, 0, 0, 0], kp = 0, tsOffset90k = 0 } = {}) => ({
  type: MessageType.KEYPOINTS_DELTA, seq, refSeq, refDistance: (seq - refSeq) & 0xffff, tsOffset90k,
  common: Int32Array.from(common), kpRes: new Int32Array(2 * k).fill(kp), jacRes: new Int32Array(4 * k),
});

test('the recorded call through KeypointDecoder: the same float32 keypoints and flags as Python', () => {
  const session = makeSession(RUNS.session);
  assert.equal(RUNS.runs.length, 3);
  for (const run of RUNS.runs) {
    const dec = new KeypointDecoder(session, { concealBroken: run.concealBroken });
    run.steps.forEach((step, i) => {
      const what = `${run.name} step ${i} (message ${step.message})`;
      assert.equal(STREAM.messages[step.message].channel, 'avfr-media');
      assertFrame(dec.decodeBytes(MESSAGES[step.message]), step.frame, what);
      assert.equal(dec.needsKey, step.needsKey, `${what} needsKey`);
      assert.equal(dec.broken, step.broken, `${what} broken`);
    });
  }
  // what the fixture exercises
  const lossless = RUNS.runs[0].steps;
  assert.ok(lossless.every((s) => s.frame.exact) && lossless.filter((s) => s.frame.key).length >= 3);
  assert.ok(lossless.some((s, i) => i > 0 && s.frame.seq < lossless[i - 1].frame.seq), 'seq wraps');
  assert.ok(lossless.some((s, i) => i > 0 && s.frame.ts90k < lossless[i - 1].frame.ts90k), 'ts90k wraps');
  const lossy = RUNS.runs[1].steps;
  assert.ok(lossy.some((s) => s.frame && !s.frame.exact) && lossy.some((s, i) => i > 0 && lossy[i - 1].needsKey && !s.needsKey));
  assert.ok(RUNS.runs[2].steps.some((s) => s.frame === null));
});

test('the anchors on the control channel are the media KEY packets again', () => {
  const session = makeSession(STREAM.session);
  const control = STREAM.messages.map((m, i) => [m, i]).filter(([m, i]) => m.channel === 'avfr-control'
    && MESSAGES[i][0] === 0x26).map(([, i]) => decodeKeypoints(MESSAGES[i], session));
  assert.equal(control.length, 2);
  const media = STREAM.messages.map((m, i) => [m, i]).filter(([m, i]) => m.channel === 'avfr-media'
    && isKeypoints(MESSAGES[i])).map(([, i]) => MESSAGES[i]);
  const dec = new KeypointDecoder(session);
  const frames = media.map((data) => dec.decodeBytes(data));
  assert.deepEqual([control[0].seq, control[0].ts90k], [frames[0].seq, frames[0].ts90k]);
  const last = frames.at(-1);
  assert.deepEqual([control[1].seq, control[1].ts90k], [last.seq, last.ts90k]);
  const end = new KeypointDecoder(session).decode(control[1]);
  assert.deepEqual([...end.kp], [...last.kp]); // the end anchor carries the last frame's levels
});

test('golden KEY then DELTA: as Python, and the levels of make_golden.py', () => {
  const session = makeSession(FIXTURE.sessions.default);
  const dec = new KeypointDecoder(session);
  const key = dec.decodeBytes(golden('keypoints_key'));
  assertFrame(key, FIXTURE.keyThenDelta[0], 'key');
  assertFrame(dec.decodeBytes(golden('keypoints_delta')), FIXTURE.keyThenDelta[1], 'delta');
  assert.equal(keyPacketBytes(session), 52);
  assert.equal(key.kp[0], -1); // level -128 at 8 bits
  assert.equal(key.kp[1], 127 / 128);
});

test('decodeBytes extends a DELTA\'s 7 seq bits next to the newest frame held', () => {
  const session = makeSession(FIXTURE.sessions.default);
  const keyAt = (seq) => { // the golden KEY packet with another seq (bytes 1..2)
    const data = golden('keypoints_key');
    data[1] = seq >> 8;
    data[2] = seq & 0xff;
    return data;
  };
  const still = STREAM.decoded.findIndex((d) => d.type === 7 && d.refDistance === 1 && d.tsOffset90k === 0
    && [...d.common, ...d.kpRes, ...d.jacRes].every((v) => v === 0)); // the call's "not moved" delta
  const payload = MESSAGES[still].subarray(DELTA_HEADER_BYTES); // reference distance 1
  const deltaAt = (seq) => Uint8Array.from([0x80 | (seq & 0x7f), ...payload]);
  for (const seq0 of [40000, 65534, 65500, 100]) {
    const dec = new KeypointDecoder(session);
    const key = dec.decodeBytes(keyAt(seq0));
    for (let i = 1; i <= 300; i++) { // 2.3 wraps of the 7 bits
      const frame = dec.decodeBytes(deltaAt((seq0 + i) & 0xffff));
      assert.deepEqual([frame.seq, frame.exact, frame.ts90k], [(seq0 + i) & 0xffff, true, (key.ts90k + 3600 * i) % 2 ** 32]);
      assert.deepEqual(frame.kp, key.kp);
    }
    assert.equal(dec.broken, 0);
  }
  const empty = new KeypointDecoder(session); // nothing held: next to seq 0
  assert.equal(empty.decodeBytes(deltaAt(65535)), null);
  assert.equal(empty.broken, 1);
  assert.equal(decodeKeypoints(deltaAt(65535), session).seq, 65535);
  assert.equal(decodeKeypoints(deltaAt(64), session).seq, 65472);
  assert.equal(decodeKeypoints(deltaAt(64), session, 100).seq, 64);
});

test('an exactly predicted level outside its range is a ProtocolError; a concealed one is clipped', () => {
  const session = makeSession({ numKp: 2, kpBits: 4, jacBits: 4 });
  const dec = new KeypointDecoder(session);
  dec.decode(keyPacket(10, 0, 2, 7));
  assert.throws(() => dec.decode(deltaPacket(11, 10, 2, { kp: 1 })),
    (e) => e instanceof ProtocolError && e.message === 'delta packet seq=11: keypoint level outside [-8, 7]');
  assert.deepEqual([dec.needsKey, dec.broken], [true, 0]); // malformed, not a broken chain: a key is wanted at once
  const out = dec.decode(deltaPacket(12, 11, 2, { kp: 1 })); // 11 missing: concealed from 10, clipped
  assert.equal(out.exact, false);
  assert.deepEqual([...out.kp], [7 / 8, 7 / 8, 7 / 8, 7 / 8]);
  assert.equal(out.ts90k, 2 * 3600);
  assert.equal(dec.needsKey, true);
  assert.equal(dec.broken, 1);
  const next = dec.decode(deltaPacket(13, 12, 2, { tsOffset90k: -5 }));
  assert.equal(next.exact, false); // predicted from a concealed frame
  assert.equal(next.ts90k, 3 * 3600 - 5);
  dec.decode(keyPacket(14, 4294967295, 2));
  assert.equal(dec.needsKey, false);
  assert.equal(dec.decode(deltaPacket(15, 14, 2)).ts90k, 3599); // wraps
  assert.throws(() => dec.decode(keyPacket(16, 0, 3)), ProtocolError); // other K
  assert.throws(() => dec.decode(deltaPacket(17, 16, 2, { common: [16, 0, 0, 0, 0, 0] })), ProtocolError);
});

test('history: 64 frames by seq, stand-in across the seq wrap, nothing to stand in', () => {
  const session = makeSession({ numKp: 1 });
  const dec = new KeypointDecoder(session);
  for (let i = 0; i < 70; i++) dec.decode(keyPacket((65530 + i) & 0xffff, i * 3600, 1, i - 64));
  assert.equal(dec.history.size, MAX_REF_DISTANCE);
  const oldest = (65530 + 6) & 0xffff;
  assert.equal(dec.history.keys().next().value, oldest);
  assert.equal(dec.hasReference(deltaPacket((oldest + 64) & 0xffff, oldest, 1)), true);
  assert.equal(dec.hasReference(deltaPacket((oldest + 63) & 0xffff, (oldest - 1) & 0xffff, 1)), false);
  // held: seqs 0..63 (frames 6..69); reference 70 was never decoded: seq 63 (frame 69) stands in, 7 before it
  const out = dec.decode(deltaPacket(71, 70, 1, { common: [1, 0, 0, 0, 0, 0] }));
  assert.equal(out.exact, false);
  assert.equal(out.kp[0], dequantise([69 - 64 + 1], 8, 1)[0]);
  assert.equal(out.ts90k, (69 + 7 + 1) * 3600);
  const empty = new KeypointDecoder(session);
  assert.equal(empty.decode(deltaPacket(5, 4, 1)), null);
  assert.equal(empty.needsKey, true);
  const strict = new KeypointDecoder(session, { concealBroken: false });
  strict.decode(keyPacket(1, 0, 1));
  assert.equal(strict.decode(deltaPacket(3, 2, 1)), null);
  assert.equal(seqDiff(2, 65535), 3);
  assert.equal(seqDiff(65535, 2), -3);
});

test('entropy decoder: termination is exact, values past the end read as zeros', () => {
  const delta = golden('keypoints_delta');
  const session = makeSession();
  const packet = decodeKeypoints(delta, session);
  assert.equal(packet.refSeq, 65535);
  assert.equal(packet.tsOffset90k, -40);
  assert.throws(() => decodeKeypoints(Uint8Array.from([...delta, 0]), session), /its bins end in byte/);
  const probs = Int32Array.from(INITIAL_PROBS);
  assert.equal(DELTA_HEADER_BYTES, 1);
  const dec = new BinDecoder(delta.subarray(DELTA_HEADER_BYTES));
  assert.equal(dec.getUeg(probs, 0, 2), 1); // ref distance 2: seq 1, reference 65535
  assert.equal(dec.getSigned(probs, 2, 3, 4, 2), -40);
  assert.notDeepEqual([...probs], INITIAL_PROBS); // the contexts adapted
  // every 1-byte payload decodes to a packet or is refused; exactly one is the canonical still frame
  const stills = [];
  for (let b = 0; b < 256; b++) {
    try {
      const p = decodeKeypoints(Uint8Array.from([0x85, b]), session);
      assert.deepEqual([p.seq, p.refSeq], [5, (5 - p.refDistance) & 0xffff]);
      if (p.refDistance === 1 && p.tsOffset90k === 0 && p.common.every((v) => v === 0)
        && p.kpRes.every((v) => v === 0) && p.jacRes.every((v) => v === 0)) stills.push(b);
    } catch (exc) {
      assert.ok(exc instanceof ProtocolError);
    }
  }
  assert.equal(stills.length, 1);
  const stillDeltas = STREAM.decoded.filter((d) => d.type === 7 && d.common.every((v) => v === 0)
    && d.kpRes.every((v) => v === 0) && d.jacRes.every((v) => v === 0) && d.tsOffset90k === 0 && d.refDistance === 1);
  assert.ok(stillDeltas.length > 0, 'the call has still frames');
  for (const d of stillDeltas) {
    const i = STREAM.decoded.indexOf(d);
    assert.deepEqual([...MESSAGES[i]], [0x80 | (d.seq & 0x7f), stills[0]]); // the 2-byte still packet of the call
  }
});

test('every truncation of every keypoint packet of the call: a packet or a ProtocolError', () => {
  const session = makeSession(STREAM.session);
  let refused = 0;
  const packets = MESSAGES.filter(isKeypoints);
  assert.equal(packets.length, RUNS.about.frames + 2); // the media packets and the two anchors
  for (const data of packets) {
    for (let n = 0; n < data.length; n++) {
      try {
        decodeKeypoints(data.subarray(0, n), session);
      } catch (exc) {
        assert.ok(exc instanceof ProtocolError, String(exc));
        refused += 1;
      }
    }
  }
  assert.ok(refused > 100);
});
