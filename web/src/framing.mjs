// Framing shared by every message: the tag byte, size limits and the field checks of msgpack bodies.
// Port of avfr/proto/framing.py (proto/SPEC.md, "Framing"). wire.mjs re-exports the public names.
// Every message starts with one tag byte, (version << 4) | type, except the KEYPOINTS_DELTA: its first byte is
// 0x80 | (seq & 0x7f) (bit 7 set, which no version uses), so its whole header is one byte.
//
// Field checks take values as msgpack.mjs decodes them: ints are BigInt (so an int is never confused with a
// float, and uint64/int64 stay exact), floats are Number, str is string, bin is Uint8Array, arrays are Array.

import { ErrorCode, ProtocolError } from './errors.mjs';

export const WIRE_VERSION = 2; // 1..7: the high nibble of every tag byte
export const COMPACT_DELTA_BIT = 0x80; // first byte of a KEYPOINTS_DELTA: this bit, then the seq's 7 low bits
export const DATA_CHANNEL_PROTOCOL = `avfr/${WIRE_VERSION}`; // RTCDataChannel `protocol` of both channels

/** Low nibble of the tag byte. */
export const MessageType = Object.freeze({
  HELLO: 1, ERROR: 2, REFRESH: 3, STATS: 4, SOURCE_CHUNK: 5, KEYPOINTS_KEY: 6, KEYPOINTS_DELTA: 7, AUDIO: 8,
});
const TYPE_NAMES = Object.freeze(Object.fromEntries(Object.entries(MessageType).map(([k, v]) => [v, k])));

export const MAX_SOURCE_CHUNK_BYTES = 16 * 1024; // payload bytes of one SOURCE_CHUNK
export const MAX_OPUS_PACKET_BYTES = 1275; // RFC 6716: largest Opus packet
export const MAX_KEYPOINTS_BYTES = 2048;

/** Size limit in bytes per message type (whole message, tag included). */
export const MAX_MESSAGE_BYTES_BY_TYPE = Object.freeze({
  [MessageType.HELLO]: 1024,
  [MessageType.ERROR]: 1024,
  [MessageType.REFRESH]: 16,
  [MessageType.STATS]: 256,
  [MessageType.SOURCE_CHUNK]: MAX_SOURCE_CHUNK_BYTES + 256,
  [MessageType.KEYPOINTS_KEY]: MAX_KEYPOINTS_BYTES,
  [MessageType.KEYPOINTS_DELTA]: MAX_KEYPOINTS_BYTES,
  [MessageType.AUDIO]: 7 + MAX_OPUS_PACKET_BYTES,
});
export const MAX_MESSAGE_BYTES = Math.max(...Object.values(MAX_MESSAGE_BYTES_BY_TYPE)); // 16640

/**
 * Name of a message type ("HELLO", ...).
 * @param {number} type
 * @returns {string}
 */
export function messageTypeName(type) {
  return TYPE_NAMES[type] ?? `UNKNOWN(${type})`;
}

/**
 * Tag byte of a message of this build's version: (WIRE_VERSION << 4) | type (not for DELTA packets).
 * @param {number} type one of MessageType
 * @returns {number} 0..255
 * @throws {Error} KEYPOINTS_DELTA, whose first byte is COMPACT_DELTA_BIT | (seq & 0x7f) instead
 */
export function makeTag(type) {
  if (type === MessageType.KEYPOINTS_DELTA) {
    throw new Error('a KEYPOINTS_DELTA starts with COMPACT_DELTA_BIT | (seq & 0x7F), not a tag');
  }
  return (WIRE_VERSION << 4) | type;
}

/** Python's type name of a decoded value, for error messages ("int", "float", "str", "bytes", ...). */
export function pyTypeName(value) {
  if (value === null || value === undefined) return 'NoneType';
  if (typeof value === 'bigint') return 'int';
  if (typeof value === 'number') return 'float';
  if (typeof value === 'boolean') return 'bool';
  if (typeof value === 'string') return 'str';
  if (value instanceof Uint8Array) return 'bytes';
  if (Array.isArray(value)) return 'list';
  return value?.constructor?.name ?? typeof value;
}

/**
 * A received message as a plain Uint8Array view (no copy).
 * @param {Uint8Array|ArrayBuffer|ArrayBufferView} data what a data channel delivered (binaryType "arraybuffer")
 * @returns {Uint8Array}
 * @throws {ProtocolError} not bytes (e.g. a text message or a Blob)
 */
export function toBytes(data) {
  if (data instanceof Uint8Array && data.constructor === Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  // other views, node Buffers included (their slice() does not copy): a plain Uint8Array over the same bytes
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new ProtocolError(`message must be bytes, got ${pyTypeName(data)}`);
}

/**
 * Read the tag byte, check the version, bound the length, check the type and its own size limit. The version
 * comes first (SPEC.md, "Framing"): a message of another version gets UNSUPPORTED_VERSION whatever its size.
 * A first byte with bit 7 set is a KEYPOINTS_DELTA (it carries no version: it is only valid in a call whose
 * Hello was accepted).
 * @param {Uint8Array|ArrayBuffer|ArrayBufferView} data one whole message as received
 * @returns {number} the message type (one of MessageType)
 * @throws {ProtocolError} empty or oversized message, unsupported version (code UNSUPPORTED_VERSION), unknown
 *   type, or a message longer than its type allows
 */
export function parseTag(data) {
  const bytes = toBytes(data);
  const n = bytes.length;
  if (n === 0) throw new ProtocolError('empty message');
  const tag = bytes[0];
  if (tag & COMPACT_DELTA_BIT) {
    if (n > MAX_MESSAGE_BYTES_BY_TYPE[MessageType.KEYPOINTS_DELTA]) {
      throw new ProtocolError(`KEYPOINTS_DELTA message is ${n} bytes, limit ${MAX_KEYPOINTS_BYTES}`);
    }
    return MessageType.KEYPOINTS_DELTA;
  }
  const version = tag >> 4;
  const type = tag & 0x0f;
  if (version !== WIRE_VERSION) {
    throw new ProtocolError(`wire version ${version} not supported (this build speaks ${WIRE_VERSION})`,
      ErrorCode.UNSUPPORTED_VERSION);
  }
  if (n > MAX_MESSAGE_BYTES) throw new ProtocolError(`message is ${n} bytes, limit ${MAX_MESSAGE_BYTES}`);
  if (!(type in TYPE_NAMES)) throw new ProtocolError(`unknown message type ${type}`);
  if (type === MessageType.KEYPOINTS_DELTA) {
    throw new ProtocolError('a KEYPOINTS_DELTA has no tag byte in this version (its first byte has bit 7 set)');
  }
  const limit = MAX_MESSAGE_BYTES_BY_TYPE[type];
  if (n > limit) throw new ProtocolError(`${TYPE_NAMES[type]} message is ${n} bytes, limit ${limit}`);
  return type;
}

/**
 * parseTag and require `type` (ProtocolError with code UNEXPECTED_MESSAGE otherwise).
 * @param {Uint8Array} bytes
 * @param {number} type
 */
export function expectType(bytes, type) {
  const got = parseTag(bytes);
  if (got !== type) {
    throw new ProtocolError(`expected a ${TYPE_NAMES[type]} message, got ${TYPE_NAMES[got]}`,
      ErrorCode.UNEXPECTED_MESSAGE);
  }
}

/** Python's repr() of a float (near enough for messages: "4.0", "nan", "inf"). */
export function pyFloat(x) {
  if (Number.isNaN(x)) return 'nan';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  if (Object.is(x, -0)) return '-0.0';
  if (Number.isInteger(x) && Math.abs(x) < 1e16) return `${x.toFixed(0)}.0`;
  return String(x);
}

/** Python's repr() of a str (near enough for messages). */
export function pyRepr(s) {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === '\\' || ch === quote) out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || (c >= 0x7f && c < 0xa0)) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out + quote;
}

/** Characters (code points, as Python's len) of a string. */
export function codePoints(s) {
  let n = 0;
  for (const _ of s) n++; // eslint-disable-line no-unused-vars
  return n;
}

/**
 * `value` must be a msgpack int (BigInt, not a bool or float) in [lo, hi].
 * @returns {number} the value as a Number
 */
export function checkInt(value, name, lo, hi) {
  if (typeof value !== 'bigint') throw new ProtocolError(`${name} must be an int, got ${pyTypeName(value)}`);
  if (value < BigInt(lo) || value > BigInt(hi)) {
    throw new ProtocolError(`${name}=${value} out of range [${lo}, ${hi}]`);
  }
  return Number(value);
}

/**
 * `value` must be a finite msgpack float (Number) in [lo, hi]; returns it.
 * @returns {number}
 */
export function checkFloat(value, name, lo, hi) {
  if (typeof value !== 'number') throw new ProtocolError(`${name} must be a float, got ${pyTypeName(value)}`);
  if (!Number.isFinite(value)) throw new ProtocolError(`${name} is not finite (${pyFloat(value)})`);
  if (!(lo <= value && value <= hi)) {
    throw new ProtocolError(`${name}=${pyFloat(value)} out of range [${pyFloat(lo)}, ${pyFloat(hi)}]`);
  }
  return value;
}

/** `value` must be a bool; returns it. */
export function checkBool(value, name) {
  if (typeof value !== 'boolean') throw new ProtocolError(`${name} must be a bool, got ${pyTypeName(value)}`);
  return value;
}

/**
 * `value` must be a str of at most `maxChars` characters (code points), matching `pattern` in full if given.
 * @param {unknown} value
 * @param {string} name
 * @param {number} maxChars
 * @param {string} [pattern] a regular expression source, matched in full
 * @returns {string}
 */
export function checkStr(value, name, maxChars, pattern) {
  if (typeof value !== 'string') throw new ProtocolError(`${name} must be a str, got ${pyTypeName(value)}`);
  const n = codePoints(value);
  if (n > maxChars) throw new ProtocolError(`${name} is ${n} characters, limit ${maxChars}`);
  if (pattern !== undefined && !fullRegex(pattern).test(value)) {
    const head = Array.from(value).slice(0, 40).join('');
    throw new ProtocolError(`${name}=${pyRepr(head)} does not match ${pattern}`);
  }
  return value;
}

const REGEX_CACHE = new Map();
function fullRegex(pattern) {
  let re = REGEX_CACHE.get(pattern);
  if (re === undefined) {
    re = new RegExp(`^(?:${pattern})$`, 'u');
    REGEX_CACHE.set(pattern, re);
  }
  return re;
}

/**
 * `value` must be bytes (Uint8Array) with minLen <= length <= maxLen; returns it.
 * @returns {Uint8Array}
 */
export function checkBytes(value, name, minLen, maxLen) {
  if (!(value instanceof Uint8Array)) throw new ProtocolError(`${name} must be bytes, got ${pyTypeName(value)}`);
  if (value.length < minLen || value.length > maxLen) {
    throw new ProtocolError(`${name} is ${value.length} bytes, expected ${minLen}..${maxLen}`);
  }
  return value;
}
