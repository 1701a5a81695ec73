/**
 * Receiver settings and counters, mirrored from `avfr/receiver/config.py` (`DecoderConfig`, `DecoderStats`).
 *
 * Names are the Python ones in camelCase; the defaults are the same values. `threads` is kept for the page
 * (onnxruntime-web's thread count); the decoder itself does not use it.
 */

// The speech clock and a frame's audio window live with the mel transform (`avfr.codec.data`'s audio constants).
export { SAMPLE_RATE, SAMPLES_PER_FRAME, WINDOW_SAMPLES, windowBounds } from './mel.mjs';

/** Samples of one 20 ms Opus packet at 16 kHz (`OPUS_FRAME_SAMPLES`). */
export const OPUS_FRAME_SAMPLES = 320;
/** ts_90k step of one 20 ms audio packet (`avfr.proto.TS_STEP_AUDIO_90K`). */
export const TS_STEP_AUDIO_90K = 1800;
/** The media clock (`avfr.proto.CLOCK_RATE_HZ`). */
export const CLOCK_RATE_HZ = 90000;

/**
 * `DecoderConfig` defaults (see receiver/config.py for each field).
 * @type {Readonly<{threads: number, reorderFrames: number, reorderAudioPackets: number, realtime: boolean,
 *   minDelayMs: number, maxDelayMs: number, refreshIntervalFrames: number, statsIntervalFrames: number,
 *   relativeMotion: boolean, maxBufferFrames: number, timing: boolean, sourceTimeoutS: number,
 *   silenceTimeoutS: number}>}
 */
export const DEFAULT_CONFIG = Object.freeze({
  threads: 1,
  reorderFrames: 3,
  reorderAudioPackets: 6,
  realtime: false,
  minDelayMs: 40.0,
  maxDelayMs: 400.0,
  refreshIntervalFrames: 5,
  statsIntervalFrames: 25,
  relativeMotion: false,
  maxBufferFrames: 250,
  timing: false,
  sourceTimeoutS: 10.0,
  silenceTimeoutS: 10.0,
});

/**
 * A frozen config: the defaults overridden by `overrides` (unknown keys are refused: a typo must not pass).
 * @param {object} [overrides] e.g. `{realtime: true}`.
 * @returns {Readonly<typeof DEFAULT_CONFIG>}
 */
export function decoderConfig(overrides = {}) {
  for (const key of Object.keys(overrides)) {
    if (!(key in DEFAULT_CONFIG)) throw new TypeError(`unknown decoder config key ${JSON.stringify(key)}`);
  }
  return Object.freeze({ ...DEFAULT_CONFIG, ...overrides });
}

const U32_MAX = 2 ** 32 - 1;

/** Counters of one incoming call (`DecoderStats`); the first nine are what STATS reports to the sender. */
export class DecoderStats {
  constructor() {
    this.received = 0;
    this.droppedMalformed = 0;
    this.droppedLate = 0;
    this.droppedBroken = 0;
    this.concealed = 0;
    this.audioReceived = 0;
    this.audioConcealed = 0;
    this.jitterMs = 0.0;
    this.delayMs = 0.0;
    this.lost = 0; // keypoint frames concealed whose packet never arrived (network loss, so far)
    this.lateFrames = 0; // ... whose packet arrived after they were decided
    this.duplicates = 0;
    this.duplicateHellos = 0;
    this.refusedMessages = 0; // valid messages at the wrong time
    this.keypointBytes = 0;
    this.audioBytes = 0;
    this.sourceBytes = 0;
    this.sources = 0;
    this.keyRequests = 0;
    this.framesDecided = 0;
  }

  /**
   * The STATS message fields of these counters (saturated to uint32, ms capped at 1e6), for `encodeStats`.
   * @returns {{received: number, droppedMalformed: number, droppedLate: number, droppedBroken: number,
   *   concealed: number, audioReceived: number, audioConcealed: number, jitterMs: number, delayMs: number}}
   */
  toMessage() {
    const u32 = (v) => Math.min(Math.trunc(v), U32_MAX);
    return {
      received: u32(this.received),
      droppedMalformed: u32(this.droppedMalformed),
      droppedLate: u32(this.droppedLate),
      droppedBroken: u32(this.droppedBroken),
      concealed: u32(this.concealed),
      audioReceived: u32(this.audioReceived),
      audioConcealed: u32(this.audioConcealed),
      jitterMs: Math.min(this.jitterMs, 1e6),
      delayMs: Math.min(this.delayMs, 1e6),
    };
  }
}

