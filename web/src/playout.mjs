/**
 * `JitterBuffer`: the packets of an incoming stream on the media clock, and when each frame is due.
 * A port of `avfr/receiver/playout.py` (read its module doc for the full rules); the decisions are the same
 * for the same messages in the same order at the same `nowS` values (tests/data/web/make_playout.py checks it).
 *
 * Media is indexed on the media clock: keypoint frame n has seq `seq0 + n` and ts `ts0 + 3600 n`; audio
 * packet a has ts `ts0 + 1800 a` (mod 2**16 and 2**32: both wrap); (seq0, ts0) come from the start anchor (the
 * first KEY packet, also sent on the reliable channel). A packet's index is the one nearest the packet the
 * buffer expects next (extended seq / ts): frame `nextFrame + seqDiff(seq, seq of nextFrame)`, audio packet
 * `a + tsDiff(ts, ts of a) / 1800` with a the next audio packet, so indexes grow without limit (a call may
 * outlast both wraps). Frame n is due when its keypoint packet is there or declared lost; its audio (up to
 * `neededSamples(n)`) is then taken in packet order, each packet there or declared lost. A packet is lost once
 * packets `reorderFrames` frames (`reorderAudioPackets` packets) newer arrived, once the end anchor arrived,
 * or (realtime) once its playout deadline passed and newer media (either stream) arrived. The deadline is
 * `base + media time + delay`: base is the earliest arrival relative to media time, the delay
 * `clip(minDelay + 3 jitter + late, minDelay, maxDelay)` (RFC 3550 jitter; each late packet adds 20 ms to
 * `late`, each decided frame takes 0.5 ms off). Without newer media, playout waits: a sender that runs late
 * is not concealed.
 *
 * Forged-seq protection (realtime): a packet whose transit is more than `maxDelayMs` below the base is
 * buffered but held as a suspect: it moves neither the base nor the "newer media arrived" marks until
 * `CONFIRM_PACKETS` held packets of distinct media positions agree on that transit (within half the threshold).
 *
 * Times are seconds (any monotonic clock; `Infinity` = the call ended). Packets are the wire decoder's
 * objects: keypoints `{seq, ts90k, ...}`, audio `{seq, ts90k, payload: Uint8Array}`.
 */

import { ErrorCode, ProtocolError } from './errors.mjs';
import {
  OPUS_FRAME_SAMPLES, SAMPLE_RATE, SAMPLES_PER_FRAME, TS_STEP_AUDIO_90K, windowBounds,
} from './config.mjs';

/** Realtime playout delay added per late packet (s). */
export const LATE_STEP_S = 0.02;
/** ... and taken off per frame decided (s). */
export const LATE_DECAY_S = 0.0005;
/** Held packets (distinct media positions) with a similar transit that move the timeline. */
export const CONFIRM_PACKETS = 3;
/** Suspect packets remembered (the oldest are forgotten; they stay buffered). */
export const MAX_HELD = 32;

const U32 = 2 ** 32;

/** What `nextAudio` gives in place of a payload. */
export const AudioGap = Object.freeze({ WAIT: 'wait', LOST: 'lost', PAST_END: 'past_end' });

/** a - b of two uint16 seqs, in [-32768, 32767] (`avfr.proto.seq_diff`). */
export function seqDiff(a, b) {
  return ((a - b + 32768) & 0xffff) - 32768;
}

/** a - b of two uint32 timestamps, in [-2**31, 2**31). */
export function tsDiff(a, b) {
  const d = (a - b + 2 ** 31) % U32;
  return (d < 0 ? d + U32 : d) - 2 ** 31;
}

/**
 * Samples (16 kHz, from the stream start) that frame n needs: its mel window and its own 40 ms.
 * @param {number} n frame index. @param {boolean} causal the session's window mode. @returns {number}
 */
export function neededSamples(n, causal) {
  return Math.max(windowBounds(n, causal)[1], SAMPLES_PER_FRAME * (n + 1));
}

const key = (isAudio, index) => `${isAudio ? 'a' : 'k'}${index}`;

/**
 * Keypoint and audio packets of one stream, by index on the media clock, until their frame is decided.
 * Counts refused packets (`droppedLate`, `duplicates`) and frames decided without keypoints (`lost`, moved to
 * `lateFrames` when their packet comes after all) into `stats`, and keeps `stats.jitterMs` / `delayMs`.
 */
export class JitterBuffer {
  /**
   * @param {Readonly<object>} config a `decoderConfig()`.
   * @param {import('./config.mjs').DecoderStats} stats the decoder's counters.
   */
  constructor(config, stats) {
    this._config = config;
    this._stats = stats;
    /** @type {[number, number] | null} seq0, ts0 of the start anchor */
    this.anchor = null;
    this._session = null;
    /** @type {number | null} the stream's last frame, once known */
    this.endIndex = null;
    this.nextFrame = 0; // the frame to decide next
    this._kpBuf = new Map();
    this._kpHigh = -1;
    this._audioBuf = new Map();
    this._audioHigh = -1;
    this._audioNext = 0;
    this._mediaHigh = -1; // start (16 kHz samples) of the latest trusted packet, either stream
    this._baseS = null;
    this._prevTransit = null;
    this._jitterS = 0.0;
    this._lateDelayS = 0.0;
    this._lostKp = new Set();
    /** @type {Map<string, {isAudio: boolean, index: number, transit: number}>} suspects, oldest first */
    this._held = new Map();
  }

  // --- stream start and end ---

  /**
   * The start anchor arrived: frame 0 has seq `seq0` and ts `ts0` (90 kHz).
   * @param {number} seq0 @param {number} ts0 @param {{fps: number, tsStep90k: number, causalWindow: boolean}} session
   */
  start(seq0, ts0, session) {
    this.anchor = [seq0, ts0];
    this._session = session;
  }

  /**
   * The end anchor (the last frame's KEY packet, seq `seq`) arrived; true: that frame is still open.
   * @throws {ProtocolError} before the start or too far ahead.
   */
  endAt(seq) {
    const index = this._frameIndex(seq);
    if (index < 0 || index > this.nextFrame + this._config.maxBufferFrames) {
      throw new ProtocolError(`end anchor at frame ${index} is out of range`, ErrorCode.UNEXPECTED_MESSAGE);
    }
    this.endIndex = Math.max(index, this.nextFrame - 1); // realtime playout may already be past it
    return index >= this.nextFrame;
  }

  /** The call ended: no frame after those buffered or decided is coming. */
  close() {
    if (this.endIndex === null) this.endIndex = Math.max(this._kpHigh, this.nextFrame - 1);
  }

  /** True once every frame up to the end anchor was decided. */
  get ended() {
    return this.endIndex !== null && this.nextFrame > this.endIndex;
  }

  /** Media timestamp (uint32, 90 kHz) of frame n. */
  ts90k(n) {
    return (this.anchor[1] + n * this._session.tsStep90k) % U32;
  }

  /** Frame index of a keypoint seq: the one nearest `nextFrame` (the extended seq; unbounded). */
  _frameIndex(seq) {
    const n = this.nextFrame;
    return n + seqDiff(seq, (this.anchor[0] + n) & 0xffff);
  }

  /**
   * uint16 seq a DELTA's 7 seq bits are extended next to (`extendSeq`, keypoints.mjs): the frame after the
   * newest media that arrived (keypoints, or audio on the same clock, which carries its whole ts), or the next
   * frame to decide if that is later (a call that resumes after a silence).
   * @returns {number}
   */
  expectedSeq() {
    const n = Math.max(this.nextFrame, this._kpHigh + 1, Math.floor(this._mediaHigh / SAMPLES_PER_FRAME));
    return (this.anchor[0] + n) & 0xffff;
  }

  /**
   * Audio packet index of a ts: the one nearest the next audio packet (the extended ts; unbounded).
   * @throws {ProtocolError} the ts is off the 20 ms grid.
   */
  _audioIndex(ts90k) {
    const a = this._audioNext;
    const offset = tsDiff(ts90k, (this.anchor[1] + a * TS_STEP_AUDIO_90K) % U32);
    if (offset % TS_STEP_AUDIO_90K) throw new ProtocolError(`audio ts ${ts90k} is off the 20 ms grid`);
    return a + offset / TS_STEP_AUDIO_90K;
  }

  // --- packets in ---

  /**
   * Buffer a keypoint packet that arrived at `nowS`; returns its frame index, or null for a late packet,
   * a duplicate, or the end anchor's copy of a frame already decided.
   * @throws {ProtocolError} more than `maxBufferFrames` ahead.
   */
  putKeypoints(packet, nowS) {
    const index = this._frameIndex(packet.seq);
    if (index < this.nextFrame) {
      if (index >= 0 && this.endIndex !== null && index === this.endIndex) return null;
      this._late();
      if (this._lostKp.has(index)) { // it was not lost but late: count it so
        this._lostKp.delete(index);
        this._stats.lost -= 1;
        this._stats.lateFrames += 1;
      }
      return null;
    }
    if (index > this.nextFrame + this._config.maxBufferFrames) {
      throw new ProtocolError(`keypoint packet ${index} frames ahead is refused`);
    }
    const mediaS = index / this._session.fps;
    if (this._kpBuf.has(index) && !this._replacesHeld(false, index, nowS, mediaS)) {
      this._stats.duplicates += 1;
      return null;
    }
    this._kpBuf.set(index, packet);
    if (this._admit(false, index, nowS, mediaS)) this._mark(false, index);
    return index;
  }

  /**
   * Buffer an audio packet that arrived at `nowS`; false: late or a duplicate.
   * @throws {ProtocolError} its ts is off the 20 ms grid or too far ahead.
   */
  putAudio(audio, nowS) {
    const index = this._audioIndex(audio.ts90k);
    if (index < this._audioNext) {
      this._late();
      return false;
    }
    if (index > this._audioNext + 5 * this._config.maxBufferFrames) {
      throw new ProtocolError(`audio packet ${index} is too far ahead`);
    }
    const mediaS = (index * OPUS_FRAME_SAMPLES) / SAMPLE_RATE;
    if (this._audioBuf.has(index) && !this._replacesHeld(true, index, nowS, mediaS)) {
      this._stats.duplicates += 1;
      return false;
    }
    this._audioBuf.set(index, audio.payload);
    if (this._admit(true, index, nowS, mediaS)) this._mark(true, index);
    return true;
  }

  /** Raise the "newer media arrived" marks to a trusted packet. */
  _mark(isAudio, index) {
    if (isAudio) {
      this._audioHigh = Math.max(this._audioHigh, index);
      this._mediaHigh = Math.max(this._mediaHigh, index * OPUS_FRAME_SAMPLES);
    } else {
      this._kpHigh = Math.max(this._kpHigh, index);
      this._mediaHigh = Math.max(this._mediaHigh, index * SAMPLES_PER_FRAME);
    }
  }

  /** Realtime: a packet that came more than maxDelay earlier (for its media time) than any before. */
  _suspect(nowS, mediaS) {
    if (!this._config.realtime || this._baseS === null || !Number.isFinite(nowS)) return false;
    return nowS - mediaS < this._baseS - this._config.maxDelayMs / 1000;
  }

  /** A packet for the slot of a held (suspect) one that is not suspect itself takes its place. */
  _replacesHeld(isAudio, index, nowS, mediaS) {
    const k = key(isAudio, index);
    if (!this._held.has(k) || this._suspect(nowS, mediaS)) return false;
    this._held.delete(k);
    this._stats.duplicates += 1;
    return true;
  }

  /** Take a buffered packet's arrival into the timeline; false: held as a suspect. */
  _admit(isAudio, index, nowS, mediaS) {
    if (!this._suspect(nowS, mediaS)) {
      this._arrival(nowS, mediaS);
      return true;
    }
    const transit = nowS - mediaS;
    const k = key(isAudio, index);
    const old = this._held.get(k);
    if (old) old.transit = transit; // a Python dict keeps the key's place on assignment: so does this
    else this._held.set(k, { isAudio, index, transit });
    if (this._held.size > MAX_HELD) this._held.delete(this._held.keys().next().value);
    const tolerance = this._config.maxDelayMs / 2000;
    const agree = [...this._held.values()].filter((h) => Math.abs(h.transit - transit) <= tolerance);
    if (agree.length < CONFIRM_PACKETS) return false;
    this._baseS = Math.min(...agree.map((h) => h.transit)); // confirmed: the timeline moved
    const threshold = this._baseS - this._config.maxDelayMs / 1000;
    for (const [hk, h] of [...this._held]) {
      if (h.transit >= threshold) {
        this._held.delete(hk);
        if (hk !== k) this._mark(h.isAudio, h.index);
      }
    }
    this._arrival(nowS, mediaS);
    return true;
  }

  /** A packet missed its playout: count it and, in realtime mode, play out later from now on. */
  _late() {
    this._stats.droppedLate += 1;
    if (this._config.realtime) {
      this._lateDelayS = Math.min(this._lateDelayS + LATE_STEP_S, this._config.maxDelayMs / 1000);
      this._stats.delayMs = 1000 * this.delayS;
    }
  }

  /** Update the playout base and the interarrival jitter (RFC 3550). */
  _arrival(nowS, mediaS) {
    if (!Number.isFinite(nowS)) return;
    const transit = nowS - mediaS;
    if (this._baseS === null || transit < this._baseS) this._baseS = transit;
    if (this._prevTransit !== null) this._jitterS += (Math.abs(transit - this._prevTransit) - this._jitterS) / 16.0;
    this._prevTransit = transit;
    this._stats.jitterMs = 1000 * this._jitterS;
    this._stats.delayMs = 1000 * this.delayS;
  }

  // --- playout ---

  /** Current adaptive playout delay (s, realtime mode). */
  get delayS() {
    const c = this._config;
    const lo = c.minDelayMs / 1000;
    const hi = c.maxDelayMs / 1000;
    return Math.min(Math.max(lo + 3.0 * this._jitterS + this._lateDelayS, lo), hi);
  }

  _deadlinePassed(needSamples, nowS) {
    if (nowS === Infinity) return true;
    if (!this._config.realtime || this._baseS === null) return false;
    return nowS >= this._baseS + needSamples / SAMPLE_RATE + 0.02 + this.delayS;
  }

  /**
   * The next frame if it can be decided at `nowS` (s; Infinity: the call ended), else null.
   * @returns {{index: number, haveKp: boolean, needSamples: number, ended: boolean, late: boolean} | null}
   *   needSamples: the speech timeline must reach this sample; ended / late: how to treat missing audio.
   */
  due(nowS) {
    const n = this.nextFrame;
    if (this.endIndex !== null && n > this.endIndex) return null;
    const need = neededSamples(n, this._session.causalWindow);
    const late = this._deadlinePassed(need, nowS);
    const ended = this.endIndex !== null;
    const haveKp = this._kpBuf.has(n);
    const lost = !haveKp && (this._kpHigh >= n + this._config.reorderFrames || ended
      || (late && this._overtaken(n * SAMPLES_PER_FRAME)));
    if (!(haveKp || lost)) return null;
    return { index: n, haveKp, needSamples: need, ended, late };
  }

  /** A trusted packet that starts later on the media clock (16 kHz samples) than `startSample` arrived. */
  _overtaken(startSample) {
    return this._mediaHigh > startSample;
  }

  /**
   * The next audio packet's payload in packet order, or why there is none (`AudioGap.WAIT`: ask again later).
   * @param {boolean} ended the stream ended (`due().ended`). @param {boolean} [late] deadline passed.
   * @returns {Uint8Array | string} a payload or an `AudioGap` value.
   */
  nextAudio(ended, late = false) {
    const a = this._audioNext;
    let out;
    if (this._audioBuf.has(a)) {
      out = this._audioBuf.get(a);
      this._audioBuf.delete(a);
    } else if (ended) {
      out = a <= this._audioHigh ? AudioGap.LOST : AudioGap.PAST_END;
    } else if (this._audioHigh >= a + this._config.reorderAudioPackets
      || (late && this._overtaken(a * OPUS_FRAME_SAMPLES))) {
      out = AudioGap.LOST;
    } else {
      return AudioGap.WAIT;
    }
    this._audioNext += 1;
    return out;
  }

  /** Frame n is decided without its keypoint packet: count it lost until (unless) that packet comes late. */
  lost(n) {
    this._stats.lost += 1;
    this._lostKp.add(n);
  }

  /** Frame n's keypoint packet (`due().haveKp`), out of the buffer. */
  popKeypoints(n) {
    const packet = this._kpBuf.get(n);
    this._kpBuf.delete(n);
    return packet;
  }

  /** Frame n was decided: drop what is left of it and before, and let the late delay decay. */
  decided(n) {
    for (const i of [...this._kpBuf.keys()]) if (i <= n) this._kpBuf.delete(i);
    const maxBuf = this._config.maxBufferFrames;
    if (this._lostKp.size > maxBuf) { // bounded: a packet this old is lost for good
      for (const i of [...this._lostKp]) if (i <= n - maxBuf) this._lostKp.delete(i);
    }
    this.nextFrame = n + 1;
    for (const [hk, h] of [...this._held]) {
      if (h.index < (h.isAudio ? this._audioNext : n + 1)) this._held.delete(hk);
    }
    this._lateDelayS = Math.max(0.0, this._lateDelayS - LATE_DECAY_S);
  }
}
