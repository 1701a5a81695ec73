// A strict, bounded msgpack subset for the control messages' bodies (proto/SPEC.md, "Conventions" and
// "Robustness rules"), and the few packers the browser's encoders need.
//
// Decoded values: int (any encoding, uint64/int64 included) -> BigInt, so an int is never a float and stays
// exact; float32/float64 -> Number; str -> string (strict UTF-8); bin -> Uint8Array (a copy); true/false ->
// boolean; array -> Array. nil, maps, extension types and the unused 0xc1 are errors. Every size is checked
// against the bytes left before anything is allocated, arrays nest at most 2 deep (the body and Hello.audio;
// anything deeper fails the field checks anyway), and the body is exactly one array with nothing after it.

import { ProtocolError } from './errors.mjs';

const MAX_DEPTH = 2; // the body array (depth 1) and an array field (depth 2, Hello.audio)
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }); // Python keeps a leading U+FEFF
const UTF8_ENCODER = new TextEncoder();

class Fail extends Error {}

class Reader {
  constructor(bytes, pos) {
    this.b = bytes;
    this.pos = pos;
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  need(n) {
    if (n > this.b.length - this.pos) throw new Fail('incomplete input');
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8() { return this.b[this.need(1)]; }
  u16() { return this.dv.getUint16(this.need(2)); }
  u32() { return this.dv.getUint32(this.need(4)); }
}

function readValue(r, depth) {
  const t = r.u8();
  if (t <= 0x7f) return BigInt(t); // positive fixint
  if (t >= 0xe0) return BigInt(t - 256); // negative fixint
  if (t >= 0xa0 && t <= 0xbf) return readStr(r, t & 0x1f);
  if (t >= 0x90 && t <= 0x9f) return readArray(r, t & 0x0f, depth);
  if (t >= 0x80 && t <= 0x8f) throw new Fail('maps are not allowed');
  switch (t) {
    case 0xc0: throw new Fail('nil is not allowed');
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return readBin(r, r.u8());
    case 0xc5: return readBin(r, r.u16());
    case 0xc6: return readBin(r, r.u32());
    case 0xca: return r.dv.getFloat32(r.need(4));
    case 0xcb: return r.dv.getFloat64(r.need(8));
    case 0xcc: return BigInt(r.u8());
    case 0xcd: return BigInt(r.u16());
    case 0xce: return BigInt(r.u32());
    case 0xcf: return r.dv.getBigUint64(r.need(8));
    case 0xd0: return BigInt(r.dv.getInt8(r.need(1)));
    case 0xd1: return BigInt(r.dv.getInt16(r.need(2)));
    case 0xd2: return BigInt(r.dv.getInt32(r.need(4)));
    case 0xd3: return r.dv.getBigInt64(r.need(8));
    case 0xd9: return readStr(r, r.u8());
    case 0xda: return readStr(r, r.u16());
    case 0xdb: return readStr(r, r.u32());
    case 0xdc: return readArray(r, r.u16(), depth);
    case 0xdd: return readArray(r, r.u32(), depth);
    case 0xde: case 0xdf: throw new Fail('maps are not allowed');
    case 0xc1: throw new Fail('byte 0xc1 is never used');
    default: throw new Fail('extension types are not allowed'); // 0xc7-0xc9, 0xd4-0xd8
  }
}

function readStr(r, n) {
  const at = r.need(n); // checked against the bytes left before decoding
  try {
    return UTF8.decode(r.b.subarray(at, at + n));
  } catch {
    throw new Fail('str is not valid UTF-8');
  }
}

function readBin(r, n) {
  const at = r.need(n);
  return r.b.slice(at, at + n); // a copy: the value outlives the received buffer
}

function readArray(r, n, depth) {
  if (depth >= MAX_DEPTH) throw new Fail(`arrays nested deeper than ${MAX_DEPTH}`);
  if (n > r.b.length - r.pos) throw new Fail(`array of ${n} elements in ${r.b.length - r.pos} bytes`);
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = readValue(r, depth + 1);
  return out;
}

/**
 * Decode the msgpack array that fills `bytes[start..]` (the body after the tag byte).
 * @param {Uint8Array} bytes the whole message
 * @param {number} start offset of the body (1: after the tag)
 * @param {string} what message name for errors ("HELLO")
 * @returns {Array<bigint|number|string|boolean|Uint8Array|Array>} the array's elements (untrusted: check each)
 * @throws {ProtocolError} malformed msgpack, a forbidden type, trailing bytes, or not an array
 */
export function unpackArray(bytes, start, what) {
  const r = new Reader(bytes, start);
  let value;
  try {
    value = readValue(r, 0);
    if (r.pos !== bytes.length) throw new Fail(`${bytes.length - r.pos} bytes after the body`);
  } catch (exc) {
    if (!(exc instanceof Fail)) throw exc;
    throw new ProtocolError(`${what}: malformed msgpack body (${exc.message})`);
  }
  if (!Array.isArray(value)) {
    const got = typeof value === 'bigint' ? 'int' : typeof value === 'number' ? 'float'
      : typeof value === 'boolean' ? 'bool' : typeof value === 'string' ? 'str' : 'bytes';
    throw new ProtocolError(`${what}: body must be a msgpack array, got ${got}`);
  }
  return value;
}

// --- packing (what msgpack-python's packb(use_bin_type=True, use_single_float=False) writes) ----------------

/**
 * msgpack int in the smallest encoding.
 * @param {number} n a safe integer
 * @returns {number[]} bytes
 */
export function packInt(n) {
  if (!Number.isSafeInteger(n)) throw new RangeError(`not a safe integer: ${n}`);
  if (n >= 0) {
    if (n < 0x80) return [n];
    if (n <= 0xff) return [0xcc, n];
    if (n <= 0xffff) return [0xcd, n >>> 8, n & 0xff];
    if (n <= 0xffffffff) return [0xce, ...be(n, 4)];
    return [0xcf, ...be64(BigInt(n))];
  }
  if (n >= -32) return [n & 0xff];
  if (n >= -0x80) return [0xd0, n & 0xff];
  if (n >= -0x8000) return [0xd1, (n >> 8) & 0xff, n & 0xff];
  if (n >= -0x80000000) return [0xd2, ...be(n >>> 0, 4)];
  return [0xd3, ...be64(BigInt.asUintN(64, BigInt(n)))];
}

function be(n, size) {
  const out = [];
  for (let i = size - 1; i >= 0; i--) out.push(Math.floor(n / 2 ** (8 * i)) % 256);
  return out;
}

function be64(big) {
  const out = [];
  for (let i = 7n; i >= 0n; i--) out.push(Number((big >> (8n * i)) & 0xffn));
  return out;
}

/**
 * msgpack float64 (0xcb), as Python writes every float.
 * @param {number} x
 * @returns {number[]}
 */
export function packFloat64(x) {
  const dv = new DataView(new ArrayBuffer(9));
  dv.setUint8(0, 0xcb);
  dv.setFloat64(1, x);
  return Array.from(new Uint8Array(dv.buffer));
}

/** msgpack bool. @param {boolean} b @returns {number[]} */
export function packBool(b) {
  return [b ? 0xc3 : 0xc2];
}

/**
 * msgpack str (UTF-8; fixstr, str8, str16 or str32 by length).
 * @param {string} s well-formed Unicode (no lone surrogates)
 * @returns {number[]}
 */
export function packStr(s) {
  const data = UTF8_ENCODER.encode(s);
  const n = data.length;
  const head = n < 32 ? [0xa0 | n] : n <= 0xff ? [0xd9, n] : n <= 0xffff ? [0xda, ...be(n, 2)] : [0xdb, ...be(n, 4)];
  return [...head, ...data];
}

/**
 * msgpack array header.
 * @param {number} n elements
 * @returns {number[]}
 */
export function packArrayHeader(n) {
  return n < 16 ? [0x90 | n] : n <= 0xffff ? [0xdc, ...be(n, 2)] : [0xdd, ...be(n, 4)];
}
