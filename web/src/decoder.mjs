/**
 * `Decoder`: the answering peer's state machine, wire messages in -> jobs and replies out (a port of
 * `avfr/receiver/decoder.py` without its rendering half; see tests/data/web/make_playout.py for the check
 * that it decides as Python does).
 *
 * The page calls:
 * - `receive(channel, bytes, nowS)` for every data-channel message (never throws on what a peer sends),
 *   `tick(nowS)` every few ms (realtime: decide frames whose playout deadline passed), `connected(nowS)` when
 *   a channel opens, `checkAlive(nowS)` now and then (throws `CallTimeoutError` once the sender stopped),
 *   `finish()` when the call ends (after `await opus.flush()`);
 * - `takeReplies()` -> Uint8Array messages for the control channel (ERROR, REFRESH, STATS);
 * - `takeJobs()` -> jobs in order, to run in that order:
 *   `{type: 'source', imageId, format, data: Uint8Array}` (decode the image, set the generator's source; if
 *   the browser cannot decode it, call `sourceFailed(imageId)`), and
 *   `{type: 'frame', index, ts90k, kp: Float32Array(K*2)|null, jac: Float32Array(K*4)|null,
 *   window: Float32Array(3200), pcm: Float32Array(640), concealed, heldFrames, decidedS}`: kp null = no
 *   keypoints yet (draw the source pose); window: the frame's 16 kHz audio window (`mel.mjs::logMelWindow`
 *   makes the generator's mel input); pcm: its own 40 ms of speech; heldFrames: for how many frames kp have
 *   been held in place of lost ones.
 *
 * Concealment: a lost keypoint frame holds the previous keypoints (`heldFrames` counts), a delta whose
 * reference is lost is concealed by `KeypointDecoder` (flagged inexact) and a REFRESH(want_key) goes back
 * (at most one per `refreshIntervalFrames`); lost audio is concealed by the PCM provider. Frames are decided
 * synchronously; a frame job is handed out once its speech came out of the (asynchronous) Opus decoder.
 * Source images are assembled asynchronously (their sha256 check is WebCrypto's): the SourceJob, and the
 * frames that waited for the first image, come a moment after the last chunk; `await settled()` waits for
 * that (the tests do, to decide exactly when Python does).
 */

import { DecoderStats, decoderConfig } from './config.mjs';
import { ErrorCode, ProtocolError, errorCodeName } from './errors.mjs';
import { MessageType, parseTag, toBytes } from './framing.mjs';
import { KeypointDecoder, decodeKeypoints } from './keypoints.mjs';
import { Liveness } from './liveness.mjs';
import { JitterBuffer } from './playout.mjs';
import { SourceAssembler, sourceImageSize } from './source.mjs';
import { SpeechTimeline } from './speech.mjs';
import {
  CONTROL_CHANNEL_LABEL, decodeAudio, decodeMessage, encodeError, encodeRefresh, encodeStats, errorFromException,
  makeCapabilities, sessionFromHello, validateHello,
} from './wire.mjs';

export { CallTimeoutError } from './liveness.mjs';

/** Media held before the Hello / start anchor. */
export const MAX_PENDING_MESSAGES = 512;

const now = () => (globalThis.performance ? globalThis.performance.now() / 1000 : Date.now() / 1000);

/**
 * The capabilities of a receiver holding one model, as Python's `Decoder` builds them (Opus at 16 kHz in
 * 20 ms packets; every other limit the protocol's own): what `validateHello` checks a Hello against.
 * @param {{modelId: string, weightsSha256: string, numKp: number}} model the manifest's identity.
 */
export function receiverCapabilities(model) {
  return makeCapabilities({
    models: [{ modelId: model.modelId, weightsSha256: model.weightsSha256, numKp: model.numKp }],
    audioSampleRatesHz: [16000], audioFrameMs: [20],
  });
}

/** Wire messages in, jobs and replies out. */
export class Decoder {
  /**
   * @param {object} [config] `decoderConfig()` overrides, e.g. `{realtime: true}`.
   * @param {object} capabilities `receiverCapabilities(model)` (or wire.mjs `makeCapabilities`).
   * @param {{pcmProvider: function(object): object, checkSourceImage?: function(Uint8Array, string): void,
   *   waitForPicture?: boolean}} options
   *   pcmProvider(hello): a new PCM provider for the call (speech.mjs's contract; the page:
   *   `(hello) => new WebCodecsOpus({bitrateBps: hello.audio.bitrateBps, onOutput})`); checkSourceImage: the
   *   header check of a completed image (throws on a bad one; default `source.mjs::sourceImageSize`).
   */
  constructor(config, capabilities, options) {
    this.config = decoderConfig(config ?? {});
    this.capabilities = capabilities;
    this._pcmProvider = options.pcmProvider;
    this._checkSource = options.checkSourceImage ?? ((data, format) => sourceImageSize(data, format));
    this.hello = null;
    this.session = null;
    this.refused = ''; // "CODE: reason" once the call was refused
    this._kpDecoder = null;
    this._speech = null;
    this._assembler = new SourceAssembler();
    this.sourceId = 0;
    this._sourceReady = false;
    this._pending = []; // [channel, bytes, nowS] media before the Hello / anchor
    this._lastKp = null; // {kp, jac}
    this._held = 0; // frames since the last decoded keypoints
    /** The first decoded keypoints ({kp, jac}; relative motion), or null. */
    this.firstKp = null;
    this._lastKeyRequest = -(10 ** 9);
    this._closed = false;
    this._jobs = []; // in order; frame jobs wait here for their speech
    this._replies = [];
    this._settled = Promise.resolve();
    // options.waitForPicture: the first frame is decided only once the page has applied the first source
    // image (`sourceApplied`), so the seconds its priors take do not eat into the speech's head room.
    this._waitForPicture = Boolean(options.waitForPicture);
    this._awaitingPicture = null;
    this._nowS = -Infinity; // the latest clock value seen (for a source image completed asynchronously)
    this.stats = new DecoderStats();
    this._buffer = new JitterBuffer(this.config, this.stats);
    this._liveness = new Liveness(this.config);
    /** frame index -> performance.now() s at arrival (config.timing) */
    this.arrivalS = new Map();
  }

  /** True once every frame up to the end anchor was decided (or the call closed before it began). */
  get finished() { return this._buffer.anchor === null ? this._closed : this._buffer.ended; }

  /** Frames decided so far. */
  get framesDecided() { return this._buffer.nextFrame; }

  /** Current adaptive playout delay (s, realtime mode). */
  get delayS() { return this._buffer.delayS; }

  /** Frame jobs decided but waiting for their speech to come out of the Opus decoder. */
  get waitingJobs() { return this._jobs.filter((j) => j.type === 'frame' && j.pcm === null).length; }

  /** Jobs ready since the last call, in order (a frame job once its speech came out). */
  takeJobs() {
    if (this._speech) this._speech.pull();
    let n = 0;
    for (; n < this._jobs.length; n++) {
      const job = this._jobs[n];
      if (job.type !== 'frame' || job.pcm !== null) continue;
      if (!this._speech.ready(job.index)) break;
      Object.assign(job, this._speech.takeFrame(job.index));
    }
    return this._jobs.splice(0, n);
  }

  /** Messages for the sender's control channel (ERROR, REFRESH, STATS) queued since the last call. */
  takeReplies() { return this._replies.splice(0); }

  /**
   * Take one data-channel message (never throws on what a peer sends).
   * @param {string} channel the label it came on. @param {ArrayBuffer|Uint8Array} data the message.
   * @param {number} [nowS] arrival time (s; default performance.now()).
   */
  receive(channel, data, nowS = now()) {
    this._liveness.message(nowS);
    this._clock(nowS);
    if (this.refused) {
      this.stats.refusedMessages += 1; // the call was refused: ignore that peer (one ERROR was sent)
      return;
    }
    try {
      this._receive(channel, toBytes(data), nowS);
    } catch (exc) {
      this._malformed(channel, exc);
    }
    this._advance(nowS);
  }

  /**
   * Resolves once the source chunks received so far are assembled (their sha256 check is asynchronous; a
   * completed image makes its SourceJob and decides the frames waiting for it). Tests await it after each
   * message to decide exactly when Python does; the page need not.
   * @returns {Promise<void>}
   */
  settled() { return this._settled; }

  /** Realtime mode: decide frames whose playout deadline passed (call every few ms). */
  tick(nowS = now()) {
    this._clock(nowS);
    this._advance(nowS);
  }

  _clock(nowS) {
    if (Number.isFinite(nowS) && !(nowS <= this._nowS)) this._nowS = nowS;
  }

  /** A message that raised: counted (ProtocolError, or a decoder bug on bytes a peer made up). */
  _malformed(channel, exc) {
    this.stats.droppedMalformed += 1;
    if (this.session === null && channel === CONTROL_CHANNEL_LABEL && !this.refused) {
      this._replies.push(encodeError(errorFromException(exc)));
    }
  }

  /** The call is up (a data channel opened): from now on, silence counts (`checkAlive`). */
  connected(nowS = now()) { this._liveness.up(nowS); }

  /** Throws `CallTimeoutError` once the sender stopped; never once the stream ended or was refused. */
  checkAlive(nowS = now()) {
    const over = Boolean(this.refused) || (this._buffer.ended && this._sourceReady);
    this._liveness.check(nowS, { hasSource: this._sourceReady, closed: this._closed, over });
  }

  /** The call ended: decide every frame still open (missing data is concealed). */
  finish() {
    this._closed = true;
    if (this._buffer.anchor === null) return;
    this._buffer.close();
    this._advance(Infinity);
  }

  /** The page could not decode the source image of a source job (its `imageId`): count it, ask for another. */
  /** The page applied the first source image (with `waitForPicture`): frames may be decided from now on. */
  sourceApplied(nowS = now()) {
    if (this._awaitingPicture === null) return;
    this._awaitingPicture = null;
    this._sourceReady = true;
    this._advance(nowS);
  }

  sourceFailed() {
    if (this._awaitingPicture !== null) this.sourceApplied(); // no picture yet: the speech must not wait
    this.stats.droppedMalformed += 1;
    this._replies.push(encodeRefresh({ wantKey: false, wantSource: true }));
  }

  _receive(channel, data, nowS) {
    const type = parseTag(data);
    const isKp = type === MessageType.KEYPOINTS_KEY || type === MessageType.KEYPOINTS_DELTA;
    if (type === MessageType.AUDIO || (isKp && channel !== CONTROL_CHANNEL_LABEL)) {
      if (this.session === null || this._buffer.anchor === null) {
        if (this._pending.length >= MAX_PENDING_MESSAGES) {
          throw new ProtocolError('media before the Hello / stream start: buffer full', ErrorCode.UNEXPECTED_MESSAGE);
        }
        this._pending.push([channel, data, nowS]);
        return;
      }
      this._media(data, type, nowS);
      return;
    }
    if (isKp) { // start / end anchor on the reliable channel
      if (this.session === null) throw new ProtocolError('keypoints before the Hello', ErrorCode.UNEXPECTED_MESSAGE);
      this._anchorMessage(data, nowS);
      return;
    }
    const msg = decodeMessage(data, this.session);
    if (msg.type === MessageType.HELLO) this._hello(msg, nowS);
    else if (msg.type === MessageType.SOURCE_CHUNK) this._sourceChunk(msg, nowS);
    // ERROR, REFRESH, STATS: nothing to do for a receive-only peer
  }

  _hello(hello, nowS) {
    if (this.session !== null) {
      if (sameHello(hello, this.hello)) this.stats.duplicateHellos += 1;
      else this.stats.refusedMessages += 1; // a second, different Hello mid-call is ignored
      return;
    }
    const error = validateHello(hello, this.capabilities);
    if (error !== null) {
      this.refused = `${errorCodeName(error.code)}: ${error.text}`;
      this._replies.push(encodeError(error));
      return;
    }
    const session = sessionFromHello(hello);
    this._speech = new SpeechTimeline(this._pcmProvider(hello), session.causalWindow); // may throw: not accepted
    this._kpDecoder = new KeypointDecoder(session);
    this.hello = hello;
    this.session = session;
    this._liveness.hello(nowS);
  }

  _sourceChunk(chunk, nowS) {
    this.stats.sourceBytes += chunk.payload.length;
    const work = this._assembler.push(chunk, nowS).then( // async: the sha256 check is WebCrypto's
      (image) => {
        if (image === null || this.refused) return;
        try {
          this._checkSource(image.data, image.format); // the header: format, size limit
        } catch (exc) {
          this._replies.push(encodeRefresh({ wantKey: false, wantSource: true }));
          throw new ProtocolError(`source image ${image.imageId}: ${exc.message}`);
        }
        this.sourceId = image.imageId;
        if (this._waitForPicture && !this._sourceReady) this._awaitingPicture = image.imageId;
        else this._sourceReady = true;
        this.stats.sources += 1;
        this._jobs.push({ type: 'source', imageId: image.imageId, format: image.format, data: image.data });
        this._advance(this._closed ? Infinity : this._nowS);
      },
    ).catch((exc) => this._malformed(CONTROL_CHANNEL_LABEL, exc));
    this._settled = work;
  }

  _anchorMessage(data, nowS) {
    const packet = decodeKeypoints(data, this.session);
    if (packet.type !== MessageType.KEYPOINTS_KEY) {
      throw new ProtocolError('only KEY packets anchor the stream', ErrorCode.UNEXPECTED_MESSAGE);
    }
    if (this._buffer.anchor === null) {
      this._buffer.start(packet.seq, packet.ts90k, this.session);
      const pending = this._pending.splice(0);
      this._media(data, MessageType.KEYPOINTS_KEY, nowS);
      for (const [, raw, t] of pending) {
        try {
          this._media(raw, parseTag(raw), t);
        } catch {
          this.stats.droppedMalformed += 1;
        }
      }
      return;
    }
    if (this._buffer.endAt(packet.seq)) this._media(data, MessageType.KEYPOINTS_KEY, nowS); // the end anchor
  }

  _media(data, type, nowS) {
    if (type === MessageType.AUDIO) {
      this.stats.audioReceived += 1;
      if (this._buffer.putAudio(decodeAudio(data), nowS)) this.stats.audioBytes += data.length;
      return;
    }
    this.stats.received += 1;
    const packet = decodeKeypoints(data, this.session, this._buffer.expectedSeq());
    const index = this._buffer.putKeypoints(packet, nowS);
    if (index !== null) {
      this.stats.keypointBytes += data.length;
      if (this.config.timing) this.arrivalS.set(index, now());
    }
  }

  _advance(nowS) {
    if (this.session === null || this._buffer.anchor === null) return;
    while (this._sourceReady) {
      const due = this._buffer.due(nowS);
      if (due === null) break;
      const filled = this._speech.fill(this._buffer, due.needSamples, due.ended, due.late);
      this.stats.audioConcealed = this._speech.concealed;
      if (!filled) break;
      this._decide(due.index, due.haveKp);
    }
  }

  _decide(n, haveKp) {
    let decoded = null;
    if (haveKp) {
      try {
        decoded = this._kpDecoder.decode(this._buffer.popKeypoints(n));
      } catch {
        this.stats.droppedMalformed += 1;
      }
    } else {
      this._buffer.lost(n);
    }
    const concealed = decoded === null || !decoded.exact;
    this._held = decoded !== null ? 0 : this._held + 1;
    if (decoded !== null) {
      this._lastKp = { kp: decoded.kp, jac: decoded.jac };
      if (this.firstKp === null) this.firstKp = this._lastKp;
    }
    if (concealed) this.stats.concealed += 1;
    this.stats.droppedBroken = this._kpDecoder.broken;
    if (this._kpDecoder.needsKey || !haveKp) {
      if (n - this._lastKeyRequest >= this.config.refreshIntervalFrames) {
        this._lastKeyRequest = n;
        this.stats.keyRequests += 1;
        this._replies.push(encodeRefresh({ wantKey: true, wantSource: false }));
      }
    }
    const last = this._lastKp;
    this._jobs.push({
      type: 'frame', index: n, ts90k: this._buffer.ts90k(n), kp: last ? last.kp : null, jac: last ? last.jac : null,
      window: null, pcm: null, concealed, heldFrames: last ? this._held : 0, decidedS: now(),
    });
    this._buffer.decided(n);
    this.stats.framesDecided += 1;
    const interval = this.config.statsIntervalFrames;
    if (interval && this._buffer.nextFrame % interval === 0) this._replies.push(encodeStats(this.stats.toMessage()));
  }
}

/** Two decoded Hellos are the same (a resent Hello). */
function sameHello(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}
