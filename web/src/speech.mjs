/**
 * `SpeechTimeline`: the call's decoded speech on the 16 kHz sample clock, and each frame's share of it
 * (a port of `avfr/receiver/speech.py`).
 *
 * Audio packets come from the `JitterBuffer` in packet order; one declared lost is concealed, one past the end
 * of the stream is silence. Sample k of the timeline is the sender's input sample k. Each frame takes its
 * 3200-sample audio window (`windowBounds`; the page turns it into the log-mel window with
 * `mel.mjs::logMelWindow`) and its own 640 samples; samples no later frame needs are dropped.
 *
 * The Opus decoding is injected as a PCM provider (`opus.mjs::WebCodecsOpus` in the browser, a fake in tests):
 *
 *     { decode(payload: Uint8Array): void, conceal(): void, silence(): void, take(): Float32Array,
 *       lagSamples?: number }
 *
 * Contract: each of decode / conceal / silence is one 20 ms packet ("op"); after k ops the provider produces
 * (at once, or later: it may be asynchronous) at least `max(0, 320 k - lagSamples)` samples in total, in op
 * order, sample k being the sender's input sample k; `take()` returns the samples produced since the last
 * call (possibly none yet). Python's OpusDecoder meets it with lagSamples = 120 (the 104-sample codec delay
 * it cuts, and 16 samples its resampler holds back).
 *
 * Decisions versus samples: `fill` counts *committed* samples (from the ops issued, per the contract), so
 * which packets are consumed, concealed or waited for is decided synchronously, exactly as in Python with a
 * synchronous decoder. The samples themselves may come out later: `ready(n)` says whether frame n's window
 * has come out, and only then may `takeFrame(n)` be called (the `Decoder` holds its frame jobs until then).
 */

import { OPUS_FRAME_SAMPLES, SAMPLES_PER_FRAME, windowBounds } from './config.mjs';
import { AudioGap, neededSamples } from './playout.mjs';

const KEEP_SAMPLES = 3200; // kept before a decided frame's start: what later windows need

/** Decoded speech of one call, from the audio packets of a `JitterBuffer`. */
export class SpeechTimeline {
  /**
   * @param {{decode: function(Uint8Array): void, conceal: function(): void, silence: function(): void,
   *   take: function(): Float32Array, lagSamples?: number}} provider the stream's PCM provider.
   * @param {boolean} causalWindow the session's audio window mode (past-only windows).
   */
  constructor(provider, causalWindow) {
    this._opus = provider;
    this._causal = causalWindow;
    this._pcm = new Float32Array(0); // samples [base, base + length) of the timeline
    this._pcmBase = 0;
    this._ops = 0; // packets handed to the provider
    this.concealed = 0; // audio packets declared lost and concealed
  }

  /** Samples (from the stream start) the provider owes for the ops issued so far (see the contract). */
  get committed() {
    return Math.max(0, this._ops * OPUS_FRAME_SAMPLES - (this._opus.lagSamples ?? 0));
  }

  /** Samples (from the stream start) that have come out of the provider. */
  get available() {
    return this._pcmBase + this._pcm.length;
  }

  /**
   * Hand audio to the provider in packet order until `needSamples` are committed; false: wait for packets.
   * @param {import('./playout.mjs').JitterBuffer} buffer where the packets are.
   * @param {number} needSamples the sample (16 kHz, from the stream start) the timeline must reach.
   * @param {boolean} ended missing packets are declared lost at once (`due().ended`).
   * @param {boolean} [late] missing packets that newer media overtook are lost (`due().late`).
   * @returns {boolean}
   */
  fill(buffer, needSamples, ended, late = false) {
    while (this.committed < needSamples) {
      const packet = buffer.nextAudio(ended, late);
      if (packet === AudioGap.WAIT) return false;
      if (packet === AudioGap.LOST) {
        this._opus.conceal();
        this.concealed += 1;
      } else if (packet === AudioGap.PAST_END) { // past the end of the stream: silence
        this._opus.silence();
      } else {
        this._opus.decode(packet);
      }
      this._ops += 1;
      this.pull();
    }
    return true;
  }

  /** Move what the provider produced into the timeline (call before `ready`; `fill` does it too). */
  pull() {
    const add = this._opus.take();
    if (!add || !add.length) return;
    const out = new Float32Array(this._pcm.length + add.length);
    out.set(this._pcm);
    out.set(add, this._pcm.length);
    this._pcm = out;
  }

  /** True once frame n's speech has come out of the provider (`takeFrame(n)` may be called). */
  ready(n) {
    return this.available >= neededSamples(n, this._causal);
  }

  /**
   * Frame n's speech (once `ready(n)`); later frames must come after it.
   * @param {number} n frame index.
   * @returns {{window: Float32Array, pcm: Float32Array}} window: the 3200-sample audio window (16 kHz,
   *   zeros before the stream start); pcm: the frame's own 640 samples (40 ms).
   */
  takeFrame(n) {
    const start = SAMPLES_PER_FRAME * n;
    const [wStart, wStop] = windowBounds(n, this._causal);
    const window = slice(this._pcm, this._pcmBase, wStart, wStop);
    const pcm = slice(this._pcm, this._pcmBase, start, start + SAMPLES_PER_FRAME);
    const cut = Math.min(Math.max(0, start - this._pcmBase - KEEP_SAMPLES), this._pcm.length);
    this._pcm = this._pcm.slice(cut); // keep what later windows need
    this._pcmBase += cut;
    return { window, pcm };
  }
}

/** Samples [start, stop) of a timeline that starts at `base`; zeros outside it. */
function slice(pcm, base, start, stop) {
  const out = new Float32Array(stop - start);
  const lo = Math.max(start, base);
  const hi = Math.min(stop, base + pcm.length);
  if (hi > lo) out.set(pcm.subarray(lo - base, hi - base), lo - start);
  return out;
}
