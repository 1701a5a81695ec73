// The jitter buffer (playout.mjs), the speech timeline (speech.mjs) and the WebCodecs Opus wrapper (opus.mjs)
// on synthetic packets: the cases of tests/test_receiver_decoder.py at the buffer's level.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { DecoderStats, decoderConfig, windowBounds } from '../src/config.mjs';
import { ProtocolError } from '../src/errors.mjs';
import { OPUS_DELAY_SAMPLES, WebCodecsOpus, opusDelaySamples } from '../src/opus.mjs';
import { AudioGap, CONFIRM_PACKETS, JitterBuffer, neededSamples, seqDiff, tsDiff } from '../src/playout.mjs';
import { SpeechTimeline } from '../src/speech.mjs';

const SESSION = Object.freeze({ fps: 25, tsStep90k: 3600, causalWindow: false });
const SEQ0 = 65530; // the seq wraps at frame 6
const TS0 = 2 ** 32 - 7200; // ts_90k wraps at frame 2

const kp = (n) => ({ seq: (SEQ0 + n) & 0xffff, ts90k: (TS0 + 3600 * n) % 2 ** 32, tag: `kp${n}` });
const audio = (a) => ({ seq: a & 0xffff, ts90k: (TS0 + 1800 * a) % 2 ** 32, payload: Uint8Array.of(a & 0xff) });

function buffer(overrides = {}, session = SESSION) {
  const stats = new DecoderStats();
  const buf = new JitterBuffer(decoderConfig(overrides), stats);
  buf.start(SEQ0, TS0, session);
  return { buf, stats };
}

/** Decide every due frame like Decoder._advance (audio taken in packet order); returns [index, haveKp, audio]. */
function drain(buf, nowS = 0) {
  const out = [];
  for (;;) {
    const due = buf.due(nowS);
    if (due === null) return out;
    const got = [];
    let committed = 0; // a provider with no delay: 320 samples per packet
    while (committed < due.needSamples) {
      const a = buf.nextAudio(due.ended, due.late);
      if (a === AudioGap.WAIT) return out;
      got.push(typeof a === 'string' ? a[0].toUpperCase() : 'D');
      committed = 320 * (buf._audioNext);
    }
    if (due.haveKp) assert.equal(buf.popKeypoints(due.index).tag, `kp${due.index}`);
    else buf.lost(due.index);
    buf.decided(due.index);
    out.push([due.index, due.haveKp, got.join('')]);
  }
}

function sendFrames(buf, from, to, nowS = 0, skip = new Set()) {
  for (let n = from; n < to; n++) {
    if (!skip.has(`k${n}`)) buf.putKeypoints(kp(n), nowS);
    for (const a of [2 * n, 2 * n + 1]) if (!skip.has(`a${a}`)) buf.putAudio(audio(a), nowS);
  }
}

test('expectedSeq: the frame after the newest media, or the next to decide, across the seq wrap', () => {
  const { buf } = buffer();
  assert.equal(buf.expectedSeq(), SEQ0); // nothing yet: frame 0
  buf.putKeypoints(kp(0), 0);
  assert.equal(buf.expectedSeq(), SEQ0 + 1);
  buf.putKeypoints(kp(4), 0);
  assert.equal(buf.expectedSeq(), SEQ0 + 5);
  buf.putKeypoints(kp(2), 0); // an older one changes nothing
  assert.equal(buf.expectedSeq(), SEQ0 + 5);
  buf.putAudio(audio(19), 0); // audio packet 19 starts in frame 9 (20 ms of 40)
  assert.equal(buf.expectedSeq(), (SEQ0 + 9) & 0xffff);
  buf.putAudio(audio(20), 0); // ... packet 20 at the start of frame 10
  assert.equal(buf.expectedSeq(), (SEQ0 + 10) & 0xffff);
  buf.putKeypoints(kp(10), 0);
  assert.equal(buf.expectedSeq(), (SEQ0 + 11) & 0xffff);
  sendFrames(buf, 0, 12);
  drain(buf);
  buf.nextFrame = 70; // fast-forward past the media (private): a call that resumes after a silence
  assert.equal(buf.expectedSeq(), (SEQ0 + 70) & 0xffff);
});

test('seq and ts differences wrap', () => {
  assert.equal(seqDiff(3, 65533), 6);
  assert.equal(seqDiff(65533, 3), -6);
  assert.equal(tsDiff(100, 2 ** 32 - 100), 200);
  assert.equal(tsDiff(2 ** 32 - 100, 100), -200);
  assert.deepEqual(windowBounds(5, false), [1600, 4800]);
  assert.deepEqual(windowBounds(5, true), [0, 3200]);
  assert.equal(neededSamples(0, false), 1600);
  assert.equal(neededSamples(5, true), 3840); // its own 40 ms
});

test('windowBounds agrees with mel.mjs', async () => {
  const mel = await import('../src/mel.mjs');
  for (const n of [0, 1, 7, 1000]) {
    for (const causal of [false, true]) assert.deepEqual(windowBounds(n, causal), mel.windowBounds(n, causal));
  }
});

test('in order: every frame decided once its audio window is there, across the seq / ts wraps', () => {
  const { buf, stats } = buffer();
  sendFrames(buf, 0, 10);
  const out = drain(buf);
  assert.deepEqual(out.map((f) => f[0]), [0, 1, 2, 3, 4, 5, 6, 7]); // frame 8 needs audio of frames 9 and 10
  assert.ok(out.every((f) => f[1] && !f[2].includes('L')));
  assert.equal(out[0][2], 'DDDDD'); // the centred window of frame 0 reaches sample 1600
  assert.equal(buf.ts90k(2), 0);
  assert.equal(stats.lost + stats.duplicates + stats.droppedLate, 0);
});

test('reordering within the depth changes nothing', () => {
  const a = buffer();
  sendFrames(a.buf, 0, 12);
  const { buf, stats } = buffer();
  const msgs = [];
  for (let n = 0; n < 12; n++) msgs.push(['k', kp(n)], ['a', audio(2 * n)], ['a', audio(2 * n + 1)]);
  for (let i = 0; i + 1 < msgs.length; i += 2) [msgs[i], msgs[i + 1]] = [msgs[i + 1], msgs[i]];
  for (const [kind, p] of msgs) (kind === 'k' ? buf.putKeypoints(p, 0) : buf.putAudio(p, 0));
  assert.deepEqual(drain(buf), drain(a.buf));
  assert.equal(stats.lost, 0);
});

test('a lost keypoint packet is declared lost once reorderFrames newer frames arrived', () => {
  const { buf, stats } = buffer();
  sendFrames(buf, 0, 6, 0, new Set(['k3']));
  assert.deepEqual(drain(buf).map((f) => f[0]), [0, 1, 2]); // frame 3 waits: only 2 newer frames came
  sendFrames(buf, 7, 9);
  const out = drain(buf);
  assert.deepEqual(out[0].slice(0, 2), [3, false]);
  assert.equal(stats.lost, 1);
});

test('lost audio is declared lost after reorderAudioPackets newer packets', () => {
  const { buf } = buffer();
  sendFrames(buf, 0, 12, 0, new Set(['a6']));
  const out = drain(buf);
  assert.equal(out.map((f) => f[2]).join('').indexOf('L'), 6);
});

test('a late packet is dropped and moves a lost frame to late_frames; a duplicate is counted', () => {
  const { buf, stats } = buffer();
  sendFrames(buf, 0, 10, 0, new Set(['k2']));
  drain(buf);
  assert.equal(stats.lost, 1);
  assert.equal(buf.putKeypoints(kp(2), 0), null);
  assert.equal(stats.droppedLate, 1);
  assert.equal(stats.lost, 0);
  assert.equal(stats.lateFrames, 1);
  assert.equal(buf.putAudio(audio(0), 0), false);
  assert.equal(stats.droppedLate, 2);
  assert.equal(buf.putKeypoints(kp(9), 0), null); // still buffered: a duplicate
  assert.equal(buf.putAudio(audio(30), 0), true);
  assert.equal(buf.putAudio(audio(30), 0), false);
  assert.equal(stats.duplicates, 2);
  assert.equal(stats.droppedLate, 2);
});

test('packets too far ahead or off the audio grid are refused', () => {
  const { buf } = buffer();
  assert.throws(() => buf.putKeypoints(kp(251), 0), ProtocolError);
  assert.equal(buf.putKeypoints(kp(250), 0), 250);
  assert.throws(() => buf.putAudio({ ...audio(3), ts90k: audio(3).ts90k + 900 }, 0), /off the 20 ms grid/);
  assert.throws(() => buf.putAudio(audio(5 * 250 + 1), 0), /too far ahead/);
  assert.throws(() => buf.endAt(SEQ0 - 1), ProtocolError);
});

test('the end anchor: the frames up to it come out, missing audio is concealed, past it silence', () => {
  const { buf } = buffer();
  sendFrames(buf, 0, 6, 0, new Set(['a9']));
  assert.deepEqual(drain(buf).map((f) => f[0]), [0, 1, 2]);
  assert.equal(buf.endAt(kp(5).seq), true); // frame 5 is still open (the decoder buffers the anchor's copy)
  assert.equal(buf.putKeypoints(kp(5), 0), null); // ... a duplicate here
  const out = drain(buf);
  assert.deepEqual(out.map((f) => f[0]), [3, 4, 5]);
  assert.ok(buf.ended);
  // frame 2 took packets 0..8; 9 is lost (the end came), 10 and 11 were sent, 12.. are past the end
  assert.deepEqual(out.map((f) => f[2]), ['LD', 'DP', 'PP']); // L lost, P past the end (silence)
  assert.equal(buf.putKeypoints(kp(5), 0), null); // the anchor's copy of a decided frame is no late packet
  assert.equal(buf.due(0), null);
});

test('close(): no frame after those buffered is coming', () => {
  const { buf } = buffer();
  sendFrames(buf, 0, 4);
  buf.close();
  assert.deepEqual(drain(buf, Infinity).map((f) => f[0]), [0, 1, 2, 3]);
  assert.ok(buf.ended);
});

test('realtime: a deadline passes only when newer media overtook the missing packet', () => {
  const { buf, stats } = buffer({ realtime: true });
  const causal = buffer({ realtime: true }, { ...SESSION, causalWindow: true });
  for (const b of [buf, causal.buf]) sendFrames(b, 0, 4, 0, new Set(['k2']));
  assert.deepEqual(drain(causal.buf, 0).map((f) => f[0]), [0, 1]);
  assert.deepEqual(drain(causal.buf, 10).map((f) => f[0].toString() + f[1]), ['2false', '3true']);
  assert.equal(causal.stats.lost, 1);
  assert.ok(causal.stats.delayMs >= 40);
  assert.equal(drain(buf, 10).length, 2); // centred: frame 2 also needs audio not sent yet: it waits
  assert.equal(stats.lost, 0);
});

test('realtime: one forged packet far ahead moves nothing until CONFIRM_PACKETS agree', () => {
  const session = { ...SESSION, causalWindow: true };
  const { buf, stats } = buffer({ realtime: true }, session);
  for (let n = 0; n < 10; n++) { // a sender in real time, 40 ms a frame
    buf.putKeypoints(kp(n), 0.04 * n);
    buf.putAudio(audio(2 * n), 0.04 * n);
    buf.putAudio(audio(2 * n + 1), 0.04 * n + 0.02);
  }
  drain(buf, 0.4);
  const decided = buf.nextFrame;
  assert.equal(buf.putKeypoints(kp(150), 0.41), 150); // buffered, but held
  assert.equal(buf._kpHigh, 9);
  assert.deepEqual(drain(buf, 0.41 + 1), []); // frame 10 is not "overtaken": nothing lost, nothing decided
  assert.equal(buf.nextFrame, decided);
  assert.equal(stats.lost, 0);
  buf.putKeypoints(kp(151), 0.45);
  assert.equal(buf._kpHigh, 9);
  buf.putKeypoints(kp(152), 0.49); // the third agreeing one: the timeline moved (a sender that jumped ahead)
  assert.equal(CONFIRM_PACKETS, 3);
  assert.equal(buf._kpHigh, 152);
  assert.ok(drain(buf, 0.49).length > 100); // the frames in between are lost now: they were overtaken
  assert.ok(stats.lost > 100);
});

test('realtime: a genuine packet replaces a held suspect of its slot', () => {
  const { buf, stats } = buffer({ realtime: true, maxDelayMs: 100 });
  buf.putKeypoints(kp(0), 1.0); // transit 1.0 s
  assert.equal(buf.putKeypoints(kp(20), 1.0), 20); // transit 0.2 s: 0.8 s early: a suspect
  assert.equal(buf._held.size, 1);
  assert.equal(buf.putKeypoints(kp(20), 1.8), 20); // on time: replaces it, counted as a duplicate
  assert.equal(buf._held.size, 0);
  assert.equal(stats.duplicates, 1);
  assert.equal(buf._kpHigh, 20);
});

test('SpeechTimeline: sample k of the timeline is the sender\'s sample k; windows and frames line up', () => {
  const { buf } = buffer();
  const ops = [];
  const lag = 120;
  let raw = 0;
  let out = [];
  const provider = { // raw output sample m is the sender's sample m - lag: the contract's lag
    lagSamples: lag,
    decode() { ops.push('D'); this._op(); },
    conceal() { ops.push('C'); this._op(); },
    silence() { ops.push('S'); this._op(); },
    _op() { for (let i = 0; i < 320; i++, raw++) if (raw >= lag) out.push(raw - lag); },
    take() { const a = Float32Array.from(out); out = []; return a; },
  };
  const speech = new SpeechTimeline(provider, false);
  sendFrames(buf, 0, 8, 0, new Set(['a4']));
  for (let n = 0; n < 5; n++) {
    const due = buf.due(0);
    assert.ok(speech.fill(buf, due.needSamples, due.ended, due.late));
    assert.ok(speech.ready(n));
    const { window, pcm } = speech.takeFrame(n);
    assert.equal(window.length, 3200);
    assert.equal(pcm.length, 640);
    assert.equal(pcm[0], 640 * n);
    assert.equal(pcm[639], 640 * n + 639);
    const [start] = windowBounds(n, false);
    assert.equal(window[3199], start + 3199);
    assert.equal(window[0], Math.max(start, 0));
    buf.decided(n);
  }
  assert.equal(ops.join(''), 'DDDDCDDDDDDDDD'); // frame n needs packets up to 2 n + 6 (lag 120 > 0)
  assert.equal(speech.concealed, 1);
  assert.ok(speech._pcm.length <= 3200 + 640 * 4);
});

test('opus delay: tabulated as Python measures it', () => {
  assert.equal(opusDelaySamples(12000), OPUS_DELAY_SAMPLES);
  assert.equal(opusDelaySamples(16000), 104);
  assert.equal(opusDelaySamples(6000), 105);
});

/** A stand-in for WebCodecs: records chunks; the test emits outputs. */
function fakeWebCodecs() {
  const made = [];
  class AudioDecoder {
    constructor(init) { this.init = init; this.chunks = []; made.push(this); }
    configure(config) { this.config = config; }
    decode(chunk) { this.chunks.push(chunk); }
    async flush() {}
    close() {}
    emit(timestamp, value, frames = 960) {
      this.init.output({
        timestamp, numberOfFrames: frames, sampleRate: 48000, closed: false,
        copyTo(dest) { dest.fill(value); }, close() { this.closed = true; },
      });
    }
  }
  class EncodedAudioChunk { constructor(init) { Object.assign(this, init); } }
  return { AudioDecoder, EncodedAudioChunk, made };
}

test('WebCodecsOpus: async outputs come out in op order, with the delay cut and the contract kept', async () => {
  const wc = fakeWebCodecs();
  let outputs = 0;
  const opus = new WebCodecsOpus({ bitrateBps: 12000, onOutput: () => { outputs += 1; }, ...wc });
  const dec = wc.made[0];
  assert.equal(dec.config.codec, 'opus');
  assert.equal(new TextDecoder().decode(dec.config.description.subarray(0, 8)), 'OpusHead');
  assert.equal(opus.lagSamples, 104 + 16);
  opus.decode(Uint8Array.of(1));
  opus.decode(Uint8Array.of(2));
  opus.conceal();
  opus.silence();
  assert.equal(opus.take().length, 0); // nothing out yet
  assert.equal(opus.pending, 2);
  dec.emit(dec.chunks[0].timestamp, 0.5);
  let got = opus.take();
  assert.equal(got.length, 960 / 3 - 16 - 104); // look-ahead held back, delay cut
  assert.ok(Math.abs(got[0] - 0.5) < 1e-6);
  dec.emit(dec.chunks[1].timestamp, 0.5);
  got = opus.take();
  assert.equal(got.length, 3 * 320); // packet 1, the concealed one, the silence
  assert.ok(Math.abs(got[319] - 0.5) < 1e-6);
  assert.ok(Math.abs(got[320 + 319] - 0.25) < 1e-6); // the last 20 ms at -6 dB
  assert.equal(got.at(-1), 0);
  assert.equal(outputs, 2);
  assert.ok(200 + 3 * 320 >= 4 * 320 - opus.lagSamples); // the contract: 4 ops, at least 4 * 320 - lag
  assert.equal(opus.concealed, 1);
});

test('WebCodecsOpus: a packet with no output is concealed once a later one came out, or after flush', async () => {
  const wc = fakeWebCodecs();
  const opus = new WebCodecsOpus({ ...wc });
  const dec = wc.made[0];
  for (let i = 0; i < 3; i++) opus.decode(Uint8Array.of(i));
  dec.emit(dec.chunks[0].timestamp, 0.1);
  dec.emit(dec.chunks[2].timestamp, 0.1); // packet 1 produced nothing: it failed
  assert.equal(opus.take().length, 3 * 320 - 120);
  assert.equal(opus.errors, 1);
  opus.decode(Uint8Array.of(3));
  assert.equal(opus.take().length, 0);
  await opus.flush();
  assert.equal(opus.take().length, 320);
  assert.equal(opus.errors, 2);
  dec.init.error(new Error('decoder closed')); // a codec error: a new AudioDecoder takes over
  assert.equal(wc.made.length, 2);
});
