/**
 * `WebCodecsOpus`: the browser's PCM provider for `SpeechTimeline` (see speech.mjs for the contract), a port of
 * `avfr/codec/runtime/opus.py::OpusDecoder` on top of WebCodecs' asynchronous `AudioDecoder`.
 *
 * Design (WebCodecs output is asynchronous):
 * - Every call is one 20 ms "op", queued in order: `decode(payload)` hands the packet to the AudioDecoder
 *   (timestamp = op number x 20 ms), `conceal()` / `silence()` are queued behind it. `take()` resolves ops
 *   from the head of the queue for as long as their input is there: a decode op once its AudioData came out,
 *   a conceal op once everything before it resolved (it repeats the last decoded 20 ms, -6 dB per repeat,
 *   silence after ~4 losses in a row, as in Python), a silence op at once. So `take()` never returns samples
 *   out of order and never blocks; the `Decoder` holds each frame job until its speech came out.
 * - Outputs are matched to decode ops by timestamp (or, when the browser rewrites timestamps, in order).
 *   A decode op older than one that produced output, or still without output after `flush()`, failed: it is
 *   concealed and counted in `errors`, as Python conceals a packet libopus rejects. A decoder error (which
 *   closes a WebCodecs codec) conceals every pending packet and opens a new AudioDecoder.
 * - Samples as Python's OpusDecoder makes them: the 48 kHz output goes through `resample.mjs`'s
 *   `Resampler48kTo16k` (swresample's filter, zero phase; it holds back 16 samples of look-ahead), a lost
 *   packet appends the last 320 decoded samples (-6 dB per repeat, silence after ~4 losses in a row)
 *   directly, silence appends 320 zeros, and the first `OPUS_DELAY_SAMPLES` (libopus' 6.5 ms look-ahead,
 *   Python's `opus_delay_samples` at speech bitrates; 105 at 6 kbit/s) are cut, so sample k is the sender's
 *   input sample k. After k ops at least `320 k - lagSamples` samples came out (`lagSamples` = 104 + 16), the
 *   contract of `SpeechTimeline`. A packet that decodes to less than 20 ms is zero-padded to 20 ms (so the
 *   contract holds whatever a peer sends); the AudioDecoder gets an OpusHead with pre-skip 0, so the browser
 *   cuts nothing itself.
 *
 * The page: `new WebCodecsOpus({bitrateBps: hello.audio.bitrateBps, onOutput})` per call (the Decoder's
 * `pcmProvider` factory), and `await opus.flush()` when the call ends, before the last `takeJobs()`.
 */

import { OPUS_FRAME_SAMPLES, SAMPLE_RATE } from './config.mjs';
import { FACTOR, IN_RATE, Resampler48kTo16k } from './resample.mjs';

/** libopus' look-ahead at 16 kHz, cut from the start (`opus_delay_samples` at speech bitrates). */
export const OPUS_DELAY_SAMPLES = 104;

/**
 * Python's `opus_delay_samples(bitrate)`, measured there by a libopus round trip: 105 samples below
 * 9 kbit/s, 104 from 9 to 128 kbit/s (libopus 1.x, tabulated here: the browser cannot run the encoder).
 * @param {number} bitrateBps the stream's bitrate (Hello.audio.bitrateBps). @returns {number} samples, 16 kHz.
 */
export function opusDelaySamples(bitrateBps) {
  return bitrateBps < 9000 ? 105 : OPUS_DELAY_SAMPLES;
}
const PLC_GAIN = 0.5;
const OP_US = 20000;
const RAW_SAMPLES = OPUS_FRAME_SAMPLES * FACTOR; // one 20 ms packet at 48 kHz

/** An OpusHead (RFC 7845) for a mono stream with pre-skip 0: WebCodecs' `description`. */
export function opusHead(inputRateHz = SAMPLE_RATE) {
  const head = new Uint8Array(19);
  head.set([0x4f, 0x70, 0x75, 0x73, 0x48, 0x65, 0x61, 0x64, 1, 1]); // "OpusHead", version 1, 1 channel
  new DataView(head.buffer).setUint32(12, inputRateHz, true); // pre-skip (bytes 10-11) and gain stay 0
  return head;
}

/** WebCodecs Opus decoding behind the synchronous provider interface of `SpeechTimeline`. */
export class WebCodecsOpus {
  /**
   * @param {{bitrateBps?: number, onOutput?: function(): void, AudioDecoder?: Function,
   *   EncodedAudioChunk?: Function}} [options] bitrateBps: the stream's (for the delay cut); onOutput: called
   *   when decoded audio arrived (e.g. to release frame jobs); the two classes default to the browser's
   *   (injectable for tests).
   */
  constructor(options = {}) {
    this._onOutput = options.onOutput ?? (() => {});
    this._Decoder = options.AudioDecoder ?? globalThis.AudioDecoder;
    this._Chunk = options.EncodedAudioChunk ?? globalThis.EncodedAudioChunk;
    if (!this._Decoder || !this._Chunk) throw new Error('WebCodecs AudioDecoder is not available');
    this._resampler = new Resampler48kTo16k();
    /** Samples the output lags the ops by at most (speech.mjs's contract): the cut and the look-ahead. */
    const delay = opusDelaySamples(options.bitrateBps ?? 16000);
    this.lagSamples = delay + Math.ceil((this._resampler.lookahead + 1) / FACTOR) - 1; // 104 + 16
    this._skip = delay;
    this._ops = []; // {kind: 'decode'|'conceal'|'silence', ts, raw?: Float32Array, rate?, failed?}
    this._byTs = new Map();
    this._nextTs = 0;
    this._last = new Float32Array(OPUS_FRAME_SAMPLES);
    this._plcGain = 1.0;
    this._out = [];
    this.concealed = 0;
    this.errors = 0;
    this._open();
  }

  _open() {
    this._codec = new this._Decoder({
      output: (data) => this._output(data),
      error: () => this._failPending(),
    });
    this._codec.configure({ codec: 'opus', sampleRate: IN_RATE, numberOfChannels: 1, description: opusHead() });
  }

  _output(data) {
    try {
      let op = this._byTs.get(data.timestamp);
      if (!op) op = this._ops.find((o) => o.kind === 'decode' && !o.raw && !o.failed); // timestamps rewritten
      if (op) {
        const raw = new Float32Array(data.numberOfFrames);
        data.copyTo(raw, { planeIndex: 0, format: 'f32-planar' });
        op.raw = raw;
        op.rate = data.sampleRate;
        for (const o of this._ops) { // decoders output in order: earlier ones without output failed
          if (o === op) break;
          if (o.kind === 'decode' && !o.raw) o.failed = true;
        }
      }
    } finally {
      data.close();
    }
    this._onOutput();
  }

  _failPending() {
    for (const o of this._ops) if (o.kind === 'decode' && !o.raw) o.failed = true;
    this._onOutput();
    try { this._open(); } catch { /* closed for good: every later packet is concealed */ }
  }

  /** One packet (Uint8Array), decoded asynchronously. */
  decode(payload) {
    const op = { kind: 'decode', ts: this._nextTs };
    this._nextTs += OP_US;
    this._ops.push(op);
    this._byTs.set(op.ts, op);
    try {
      this._codec.decode(new this._Chunk({ type: 'key', timestamp: op.ts, data: payload }));
    } catch {
      op.failed = true;
      this._failPending();
    }
  }

  /** A lost packet: repeat the last 20 ms, attenuated. */
  conceal() { this._ops.push({ kind: 'conceal' }); }

  /** 20 ms of silence past the end of the stream. */
  silence() { this._ops.push({ kind: 'silence' }); }

  /** Decode ops still waiting for the browser. */
  get pending() { return this._ops.filter((o) => o.kind === 'decode' && !o.raw && !o.failed).length; }

  /** Wait until the browser produced everything handed to it (a packet that produced nothing failed). */
  async flush() {
    try { await this._codec.flush(); } catch { /* an error already failed the pending ops */ }
    for (const o of this._ops) if (o.kind === 'decode' && !o.raw) o.failed = true;
  }

  /** The samples (float32, 16 kHz, delay removed) of the ops resolved since the last call. */
  take() {
    while (this._ops.length) {
      const op = this._ops[0];
      if (op.kind === 'decode' && !op.raw && !op.failed) break;
      this._ops.shift();
      if (op.kind === 'decode') this._byTs.delete(op.ts);
      if (op.kind === 'silence') this._append(new Float32Array(OPUS_FRAME_SAMPLES));
      else if (op.kind === 'conceal' || op.failed || op.rate !== IN_RATE) {
        if (op.kind === 'decode') this.errors += 1; // failed, or a rate this build does not resample
        this._conceal();
      } else {
        const raw = op.raw.length >= RAW_SAMPLES ? op.raw : new Float32Array(RAW_SAMPLES);
        if (raw !== op.raw) raw.set(op.raw); // under 20 ms: zero-padded
        const out = this._resampler.process(raw);
        if (out.length >= OPUS_FRAME_SAMPLES) this._last = out.slice(out.length - OPUS_FRAME_SAMPLES);
        this._plcGain = 1.0;
        this._append(out);
      }
    }
    const total = this._out.reduce((s, a) => s + a.length, 0);
    const out = new Float32Array(total);
    let at = 0;
    for (const a of this._out) { out.set(a, at); at += a.length; }
    this._out = [];
    return out;
  }

  _conceal() {
    this._plcGain *= PLC_GAIN;
    const gain = this._plcGain > 0.07 ? this._plcGain : 0.0;
    this._append(this._last.map((v) => v * gain));
    this.concealed += 1;
  }

  _append(pcm) {
    const cut = Math.min(this._skip, pcm.length);
    this._skip -= cut;
    if (pcm.length > cut) this._out.push(pcm.subarray(cut));
  }

  /** Release the AudioDecoder. */
  close() {
    try { this._codec.close(); } catch { /* already closed */ }
  }
}
