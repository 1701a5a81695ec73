// The one exception the wire decoder throws, and the error codes of ERROR messages.
// Port of avfr/proto/errors.py (proto/SPEC.md, "ERROR").

/** Error codes of the ERROR message; the values are part of the wire format. */
export const ErrorCode = Object.freeze({
  MALFORMED: 1, // bytes that are not a valid message of this version
  UNSUPPORTED_VERSION: 2, // the peer speaks another wire version
  UNKNOWN_MODEL: 3, // model id not held by the receiver
  WEIGHTS_MISMATCH: 4, // same model id, other weights
  UNSUPPORTED_PARAMS: 5, // K, fps, bit depths, audio or window mode not supported
  UNEXPECTED_MESSAGE: 6, // a valid message at the wrong time (e.g. media before Hello)
  INTERNAL: 7, // the peer failed for a reason of its own
});

const CODE_NAMES = Object.freeze(Object.fromEntries(Object.entries(ErrorCode).map(([k, v]) => [v, k])));

/**
 * Name of an error code ("MALFORMED", ...), or "UNKNOWN(n)" for another number.
 * @param {number} code
 * @returns {string}
 */
export function errorCodeName(code) {
  return CODE_NAMES[code] ?? `UNKNOWN(${code})`;
}

/**
 * Any malformed, unsupported or inconsistent input to the wire decoder (Python: ProtocolError, a ValueError).
 * Every decoder turns every kind of bad input into this exception with a message naming the field; callers
 * catch it in one place (count it, log it, carry on).
 */
export class ProtocolError extends Error {
  /**
   * @param {string} message what is wrong, specific enough to find the offending field.
   * @param {number} [code=ErrorCode.MALFORMED] the ErrorCode to send back when the message is refused.
   */
  constructor(message, code = ErrorCode.MALFORMED) {
    super(message);
    this.name = 'ProtocolError';
    /** @type {number} one of ErrorCode */
    this.code = code;
  }
}
