/**
 * `Liveness`: when a receiver gives up on a sender that stopped, and `CallTimeoutError` (a port of
 * `avfr/receiver/liveness.py`). The jitter buffer waits for a late sender on purpose, so without these clocks
 * a dead sender would leave the call open forever:
 * - silence: no message at all on either channel for `silenceTimeoutS` while the call is up;
 * - no source image: none complete `sourceTimeoutS` after the Hello, or none at all when the call closed.
 * Both use the clock of `Decoder.receive`'s `nowS` (s). A value <= 0 turns one off.
 */

/** The sender stopped: no source image in time, or no message at all for too long (the call is over). */
export class CallTimeoutError extends Error {
  constructor(message) {
    super(message);
    this.name = 'CallTimeoutError';
  }
}

/** The two clocks of one incoming call. */
export class Liveness {
  /** @param {{silenceTimeoutS: number, sourceTimeoutS: number}} config */
  constructor(config) {
    this._config = config;
    this._lastS = null; // the latest message (or the call coming up)
    this._helloS = null;
  }

  /** The call is up (a data channel opened): the silence clock starts, if no message started it. */
  up(nowS) {
    if (this._lastS === null && Number.isFinite(nowS)) this._lastS = nowS;
  }

  /** Any message arrived on either channel (valid or not). */
  message(nowS) {
    if (Number.isFinite(nowS)) this._lastS = this._lastS === null ? nowS : Math.max(this._lastS, nowS);
  }

  /** The Hello was accepted: the source image clock starts. */
  hello(nowS) {
    if (Number.isFinite(nowS)) this._helloS = nowS;
  }

  /**
   * Throw `CallTimeoutError` when the sender stopped.
   * @param {number} nowS the time now (s).
   * @param {{hasSource: boolean, closed: boolean, over: boolean}} state a source image arrived; the call
   *   closed (`Decoder.finish`); nothing more is awaited (the stream ended, or the call was refused).
   */
  check(nowS, { hasSource, closed, over }) {
    const c = this._config;
    if (over) return;
    if (this._helloS !== null && !hasSource) {
      if (closed) throw new CallTimeoutError('the call ended before the sender sent a source image');
      if (c.sourceTimeoutS > 0 && nowS - this._helloS >= c.sourceTimeoutS) {
        throw new CallTimeoutError(`no source image within ${c.sourceTimeoutS} s of the Hello: the sender `
          + 'never sent one (source timeout)');
      }
    }
    if (closed || this._lastS === null || c.silenceTimeoutS <= 0) return;
    if (nowS - this._lastS >= c.silenceTimeoutS) {
      throw new CallTimeoutError(`the sender fell silent: no message for ${(nowS - this._lastS).toFixed(1)} s `
        + `(silence timeout ${c.silenceTimeoutS} s)`);
    }
  }
}
