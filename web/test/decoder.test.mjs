// The Decoder (decoder.mjs) on a real recorded call (tests/data/web/make_stream.py), checked against the
// Python receiver's decisions on the same arrival schedules (fixture: tests/data/web/make_playout.py, which
// holds a copy of the recorded messages).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { CallTimeoutError, Decoder, MAX_PENDING_MESSAGES, receiverCapabilities } from '../src/decoder.mjs';
import { ErrorCode } from '../src/errors.mjs';
import { MessageType, parseTag } from '../src/framing.mjs';
import {
  CONTROL_CHANNEL_LABEL as C, MEDIA_CHANNEL_LABEL as M, decodeError, decodeRefresh, decodeStats,
} from '../src/wire.mjs';

const FIXTURES = new URL('../../tests/data/web/', import.meta.url);
const read = (name) => JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8'));
const PLAYOUT = read('playout_grid_lwbsza.json');
const b64 = (s) => new Uint8Array(Buffer.from(s, 'base64'));
const MSGS = PLAYOUT.messages.map((m) => [m.channel, b64(m.data)]);
const FRAMES = PLAYOUT.about.frames; // 75
const CAPS = receiverCapabilities(PLAYOUT.capabilities);
const hex = (bytes) => Buffer.from(bytes).toString('hex');
const typeOf = ([, data]) => parseTag(data);
const isKp = (m) => m[0] === M && typeOf(m) !== MessageType.AUDIO;

/**
 * A synchronous PCM provider with Python's lag (104 + 16 samples): raw output sample m is the sender's
 * sample m - 120 (its value), so the timeline's sample k must hold k. `hold: true` keeps the output back
 * until `release()` (an asynchronous decoder).
 */
class FakeOpus {
  constructor({ hold = false } = {}) {
    this.lagSamples = 120;
    this.ops = '';
    this.hold = hold;
    this._raw = 0;
    this._out = [];
    this._released = 0;
  }

  decode() { this._op('D'); }

  conceal() { this._op('C'); }

  silence() { this._op('S'); }

  _op(kind) {
    this.ops += kind;
    for (let i = 0; i < 320; i++, this._raw++) if (this._raw >= this.lagSamples) this._out.push(this._raw - this.lagSamples);
  }

  release() { this._released = this._out.length; }

  take() {
    const n = this.hold ? this._released : this._out.length;
    const out = Float32Array.from(this._out.splice(0, n));
    this._released -= this.hold ? n : 0;
    return out;
  }
}

function decoder(config = {}, opusOptions = {}) {
  const providers = [];
  const dec = new Decoder(config, CAPS, { pcmProvider: () => { providers.push(new FakeOpus(opusOptions)); return providers.at(-1); } });
  return { dec, providers };
}

/** Feed [channel, bytes] at `nowS`, waiting for the source assembly after each like Python's sync decoder. */
async function feed(dec, msgs, nowS = 0) {
  for (const [channel, data] of msgs) {
    dec.receive(channel, data, nowS);
    await dec.settled();
  }
}

const frameJobs = (jobs) => jobs.filter((j) => j.type === 'frame');

test('in order: the end anchor gives exactly the frames sent, with their speech and the source first', async () => {
  const { dec, providers } = decoder();
  await feed(dec, MSGS);
  assert.ok(dec.finished); // no finish(): the end anchor closed the stream
  const jobs = dec.takeJobs();
  assert.equal(jobs[0].type, 'source');
  assert.equal(jobs[0].imageId, 1);
  assert.equal(new TextDecoder().decode(jobs[0].data.subarray(8, 12)), 'WEBP');
  const frames = frameJobs(jobs);
  assert.deepEqual(frames.map((f) => f.index), [...Array(FRAMES).keys()]);
  assert.equal(jobs.filter((j) => j.type === 'source').length, 2); // the refresh at frame 60
  assert.equal(dec.stats.lost + dec.stats.concealed + dec.stats.droppedMalformed + dec.stats.audioConcealed, 0);
  assert.equal(frames[0].ts90k, 2 ** 32 - 180000);
  assert.equal(frames[50].ts90k, 0); // ts_90k wraps after 2 s, the seq after 36 frames
  for (const f of frames) {
    assert.equal(f.kp.length, 20);
    assert.equal(f.jac.length, 40);
    assert.equal(f.heldFrames, 0);
    assert.equal(f.pcm[0], 640 * f.index); // the timeline's sample k is the sender's sample k
    assert.equal(f.window.length, 3200);
    assert.equal(f.window[3199], 640 * f.index + 1599); // the centred window
  }
  const packets = MSGS.filter((m) => typeOf(m) === MessageType.AUDIO).length; // 151: the encoder's flush too
  const needed = Math.ceil((640 * (FRAMES - 1) + 1600 + 120) / 320); // the last centred window, Python's lag
  assert.equal(providers[0].ops, 'D'.repeat(packets) + 'S'.repeat(needed - packets));
  const stats = dec.takeReplies().map(decodeStats);
  assert.equal(stats.length, 3); // every 25 frames
  assert.ok(stats[0].received < stats[1].received && stats[1].received < stats[2].received);
  assert.equal(stats[2].received, dec.stats.received); // the last one after the end anchor
  assert.equal(stats[2].audioReceived, packets);
});

/** The call with every keypoint seq moved by `shift` (a KEY's uint16 seq, a DELTA's 7 low bits). */
function shiftSeqs(msgs, shift) {
  return msgs.map(([channel, data]) => {
    const type = parseTag(data);
    if (type !== MessageType.KEYPOINTS_KEY && type !== MessageType.KEYPOINTS_DELTA) return [channel, data];
    const out = data.slice();
    if (type === MessageType.KEYPOINTS_DELTA) {
      out[0] = 0x80 | ((data[0] + shift) & 0x7f);
    } else {
      const seq = (((data[1] << 8) | data[2]) + shift) & 0xffff;
      [out[1], out[2]] = [seq >> 8, seq & 0xff];
    }
    return [channel, out];
  });
}

test('any first seq: DELTA seqs are extended next to the expected one, the same frames come out', async () => {
  const reference = decoder();
  await feed(reference.dec, MSGS);
  const want = frameJobs(reference.dec.takeJobs());
  for (const shift of [40000, 100, 36, 32768]) { // the call's seqs are 65500..38: now 40000 later, ...
    const { dec } = decoder();
    await feed(dec, shiftSeqs(MSGS, shift));
    const got = frameJobs(dec.takeJobs());
    assert.equal(got.length, FRAMES, `shift ${shift}`);
    got.forEach((f, i) => {
      assert.deepEqual([f.index, f.ts90k, f.concealed, f.kp, f.jac], [want[i].index, want[i].ts90k, want[i].concealed,
        want[i].kp, want[i].jac], `shift ${shift}, frame ${i}`);
    });
    assert.equal(dec.stats.lost + dec.stats.concealed + dec.stats.droppedMalformed + dec.stats.droppedBroken, 0);
  }
});

test('reordering within the depth changes nothing; a lost keypoint packet is held, counted, and a key requested', async () => {
  const kpAt = MSGS.map((m, i) => (isKp(m) ? i : -1)).filter((i) => i >= 0);
  const swapped = MSGS.slice();
  for (let i = 10; i + 1 < swapped.length - 1; i += 2) [swapped[i], swapped[i + 1]] = [swapped[i + 1], swapped[i]];
  const a = decoder();
  await feed(a.dec, swapped);
  assert.equal(a.dec.stats.lost, 0);
  assert.equal(frameJobs(a.dec.takeJobs()).length, FRAMES);

  const b = decoder();
  await feed(b.dec, MSGS.filter((_, i) => i !== kpAt[7] && i !== kpAt[8]));
  const frames = frameJobs(b.dec.takeJobs());
  assert.deepEqual(frames.slice(6, 10).map((f) => f.heldFrames), [0, 1, 2, 0]);
  assert.deepEqual(frames[8].kp, frames[6].kp); // held
  assert.ok(frames[9].concealed); // a delta on a lost reference: concealed, this frame's own
  assert.equal(b.dec.stats.lost, 2);
  const refresh = b.dec.takeReplies().filter((r) => parseTag(r) === MessageType.REFRESH).map(decodeRefresh);
  assert.ok(refresh.length >= 1 && refresh.every((r) => r.wantKey && !r.wantSource));
  assert.equal(b.dec.stats.keyRequests, refresh.length);
});

test('media before the Hello is held, keypoints on the control channel before it are refused', async () => {
  const early = MSGS.filter((m) => m[0] === M).slice(0, 6);
  const { dec } = decoder();
  await feed(dec, [...early, ...MSGS.filter((m) => !early.includes(m))]);
  assert.equal(frameJobs(dec.takeJobs()).length, FRAMES);
  assert.equal(dec.stats.lost, 0);

  const anchor = MSGS.find((m) => m[0] === C && typeOf(m) === MessageType.KEYPOINTS_KEY);
  const refused = decoder().dec;
  refused.receive(C, anchor[1], 0);
  const [error] = refused.takeReplies().map(decodeError);
  assert.equal(error.code, ErrorCode.UNEXPECTED_MESSAGE);

  const full = decoder().dec;
  for (let i = 0; i <= MAX_PENDING_MESSAGES; i++) full.receive(M, early[0][1], 0);
  assert.equal(full.stats.droppedMalformed, 1); // the pending buffer is bounded
});

test('frames wait for the source image; nothing is decided without one', async () => {
  const noSource = MSGS.filter((m) => typeOf(m) !== MessageType.SOURCE_CHUNK);
  const { dec } = decoder({ sourceTimeoutS: 3, silenceTimeoutS: 0 });
  await feed(dec, noSource.slice(0, -1));
  assert.equal(dec.framesDecided, 0);
  dec.checkAlive(2.9);
  assert.throws(() => dec.checkAlive(3.1), CallTimeoutError);
  await feed(dec, MSGS.filter((m) => typeOf(m) === MessageType.SOURCE_CHUNK), 1.0);
  await feed(dec, noSource.slice(-1), 1.0);
  assert.equal(frameJobs(dec.takeJobs()).length, FRAMES); // source before the media, or after: same frames
  dec.checkAlive(1e6); // a call that ended is not silent
});

test('a sender that falls silent times out; a finish() without a source image too', async () => {
  const { dec } = decoder({ silenceTimeoutS: 2 });
  dec.connected(0);
  dec.checkAlive(1.9);
  assert.throws(() => dec.checkAlive(2.0), /silent/);
  const noSource = decoder({ sourceTimeoutS: 0 }).dec;
  await feed(noSource, MSGS.filter((m) => typeOf(m) !== MessageType.SOURCE_CHUNK));
  noSource.finish();
  assert.throws(() => noSource.checkAlive(1e6), /ended before the sender sent a source image/);
});

test('STATS every N frames and the counters they carry', async () => {
  const { dec } = decoder({ statsIntervalFrames: 10 });
  await feed(dec, MSGS);
  const stats = dec.takeReplies().map(decodeStats);
  assert.equal(stats.length, Math.floor(FRAMES / 10));
  const last = stats.at(-1);
  assert.ok(last.jitterMs > 0 && Math.abs(last.delayMs - (40 + 3 * last.jitterMs)) < 1e-9); // min + 3 jitter
  assert.deepEqual(stats.map((x) => x.concealed), stats.map(() => 0));
});

test('an asynchronous Opus decoder: frames are decided at once, handed out once their speech came out', async () => {
  const { dec, providers } = decoder({}, { hold: true });
  await feed(dec, MSGS);
  assert.equal(dec.framesDecided, FRAMES);
  assert.deepEqual(dec.takeJobs().map((j) => j.type), ['source']); // frame 0 waits for its speech
  assert.equal(dec.waitingJobs, FRAMES);
  providers[0].release();
  const frames = frameJobs(dec.takeJobs());
  assert.equal(frames.length, FRAMES);
  assert.equal(frames[40].pcm[5], 640 * 40 + 5);
});

test('refusals: the same ERROR bytes as Python, then the peer is ignored', async () => {
  for (const r of PLAYOUT.refusals) {
    const { dec } = decoder();
    await feed(dec, r.messages.map((m) => [m.channel, b64(m.data)]));
    dec.receive(M, MSGS[5][1], 0);
    const replies = dec.takeReplies();
    assert.equal(replies.length, r.replies.length);
    if (r.exactText) assert.deepEqual(replies.map(hex), r.replies);
    else assert.equal(decodeError(replies[0]).code, decodeError(Buffer.from(r.replies[0], 'hex')).code);
    assert.equal(Boolean(dec.refused), Boolean(r.refused));
    if (r.refused) assert.equal(dec.refused, r.refused.replace(/^refused the call: /, ''));
    assert.equal(dec.stats.droppedMalformed, r.droppedMalformed);
    assert.equal(dec.stats.refusedMessages, r.refusedMessages);
    assert.equal(dec.takeJobs().length, 0);
  }
});

for (const schedule of PLAYOUT.schedules) {
  test(`the Python receiver's decisions on the "${schedule.name}" schedule`, async () => {
    const { dec, providers } = decoder(schedule.config);
    const frames = [];
    const sources = [];
    const replies = [];
    for (const [n, event] of schedule.events.entries()) {
      if (event[0] === 'recv') {
        const ref = event[1];
        const [channel, data] = typeof ref === 'number' ? MSGS[ref] : [ref.channel, b64(ref.data)];
        dec.receive(channel, data, event[2]);
      } else if (event[0] === 'tick') {
        dec.tick(event[1]);
      } else {
        dec.finish();
      }
      await dec.settled();
      for (const job of dec.takeJobs()) {
        if (job.type === 'source') sources.push({ event: n, imageId: job.imageId });
        else frames.push({ event: n, job });
      }
      for (const r of dec.takeReplies()) replies.push({ event: n, hex: hex(r) });
    }
    assert.equal(frames.length, schedule.frames.length);
    for (const [i, want] of schedule.frames.entries()) {
      const { event, job } = frames[i];
      const got = { event, index: job.index, ts90k: job.ts90k, concealed: job.concealed, heldFrames: job.heldFrames,
        hasKp: job.kp !== null };
      const { kpAbsSum, ...rest } = want;
      assert.deepEqual(got, rest, `frame ${i}`);
      if (kpAbsSum !== null) assert.ok(Math.abs(job.kp.reduce((s, v) => s + Math.abs(v), 0) - kpAbsSum) < 2e-4);
      assert.equal(job.pcm[0], 640 * job.index);
    }
    assert.deepEqual(sources, schedule.sources);
    assert.deepEqual(replies, schedule.replies);
    assert.equal(providers[0].ops, schedule.audio);
    for (const [name, value] of Object.entries(schedule.stats)) {
      if (name.endsWith('Ms')) assert.ok(Math.abs(dec.stats[name] - value) < 1e-6, name);
      else assert.equal(dec.stats[name], value, name);
    }
    assert.equal(dec.finished, schedule.finished);
  });
}

test('waitForPicture: no frame is decided before the page applied the first source image', async () => {
  for (const release of ['applied', 'failed']) {
    const dec = new Decoder({}, CAPS, { pcmProvider: () => new FakeOpus(), waitForPicture: true });
    await feed(dec, MSGS);
    const before = dec.takeJobs();
    assert.ok(before.length >= 1 && before.every((j) => j.type === 'source')); // the pictures first: frames wait
    if (release === 'applied') dec.sourceApplied(); else dec.sourceFailed(); // a failed image must not hold the speech
    dec.finish();
    const frames = frameJobs(dec.takeJobs());
    assert.equal(frames.length, FRAMES);
    assert.ok(frames.every((j, i) => j.index === i && j.pcm.length === 640));
  }
});
