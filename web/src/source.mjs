// The caller's source image on the receiving side: SourceAssembler (chunks -> image, bounded memory, sha256
// checked) and sourceImageSize (width and height from the header of the declared format, nothing decoded).
// Ports of avfr/proto/source.py::SourceAssembler and avfr/codec/runtime/source_image.py::source_image_size
// (proto/SPEC.md, "SOURCE_CHUNK").

import { ProtocolError } from './errors.mjs';
import { pyRepr } from './framing.mjs';
import { MAX_SOURCE_BYTES } from './wire.mjs';

export const ACCEPTED_SOURCE_FORMATS = Object.freeze(['webp', 'png', 'jpeg']); // not avif (no header parser)
export const MAX_SOURCE_SIDE_PX = 1024;
export const MAX_JPEG_SCANS = 32;
const MAX_HEADER_SEGMENTS = 64; // WebP chunks / JPEG segments read before the picture's size must be known
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const JPEG_FRAMES = new Set([0xc0, 0xc1, 0xc2]); // baseline, extended, progressive (Huffman)
const JPEG_TABLES = new Set([0xc4, 0xdb, 0xdd, 0xfe]); // DHT, DQT, DRI, COM
const WEBP_ANIMATION = 0x02; // VP8X flag

/**
 * sha256 of bytes (WebCrypto: browsers in a secure context, node >= 20).
 * @param {Uint8Array} bytes
 * @returns {Promise<Uint8Array>} 32 bytes
 */
export async function sha256(bytes) {
  return new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', bytes));
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameHeader(a, b) {
  return a.imageId === b.imageId && a.format === b.format && a.totalBytes === b.totalBytes
    && equalBytes(a.sha256, b.sha256) && a.chunkBytes === b.chunkBytes && a.count === b.count;
}

/**
 * Reassembles source images from SOURCE_CHUNKs, in any order, with bounded memory (Python SourceAssembler).
 *
 * At most maxPartialImages images are assembled at once (the oldest started is dropped for a new one), each
 * at most maxImageBytes; a partial image without a new chunk for timeoutS is dropped (ask again with REFRESH
 * wantSource). Chunks of an image not newer than the newest completed one are ignored; completing an image
 * drops older partial ones. push() is async (the sha256 check uses WebCrypto); calls are serialised, so
 * each one sees the state the previous ones left, as in Python: call it in arrival order without awaiting
 * in between if you like, and await each result.
 */
export class SourceAssembler {
  /**
   * @param {{maxPartialImages?: number, timeoutS?: number, maxImageBytes?: number}} [options]
   */
  constructor({ maxPartialImages = 2, timeoutS = 10.0, maxImageBytes = MAX_SOURCE_BYTES } = {}) {
    if (!(maxPartialImages >= 1 && timeoutS > 0 && maxImageBytes >= 1 && maxImageBytes <= MAX_SOURCE_BYTES)) {
      throw new RangeError('need maxPartialImages >= 1, timeoutS > 0, 1 <= maxImageBytes <= 2 MiB');
    }
    this.maxPartialImages = maxPartialImages;
    this.timeoutS = timeoutS;
    this.maxImageBytes = maxImageBytes;
    /** @type {Map<number, {header: object, startedS: number, lastS: number, chunks: Map<number, Uint8Array>}>} */
    this.partials = new Map();
    this.newestDone = null;
    this.doneIds = []; // the last 8 completed ids
    /** Partial images dropped for staleness or eviction. */
    this.timedOut = 0;
    this.tail = Promise.resolve();
  }

  /** Ids of the images being assembled. @returns {number[]} */
  get pendingIds() {
    return [...this.partials.keys()];
  }

  /**
   * Drop partial images with no chunk for timeoutS.
   * @param {number} nowS current time in seconds (any monotonic clock)
   * @returns {number[]} their ids
   */
  expire(nowS) {
    const stale = [...this.partials].filter(([, p]) => nowS - p.lastS > this.timeoutS).map(([id]) => id);
    for (const id of stale) {
      this.partials.delete(id);
      this.timedOut += 1;
    }
    return stale;
  }

  /**
   * Add one decoded chunk.
   * @param {object} chunk a SOURCE_CHUNK as decodeMessage returns it
   * @param {number} nowS current time in seconds
   * @returns {Promise<{imageId: number, format: string, data: Uint8Array}|null>} the completed image when
   *   this chunk finished it (sha256 verified), else null
   * @throws {ProtocolError} (as a rejection) image over the size limit, a chunk that disagrees with earlier
   *   ones (the partial image is dropped), or assembled bytes whose sha256 does not match
   */
  push(chunk, nowS) {
    const result = this.tail.then(() => this.pushNow(chunk, nowS));
    this.tail = result.then(() => undefined, () => undefined);
    return result;
  }

  async pushNow(chunk, nowS) {
    this.expire(nowS);
    const id = chunk.imageId;
    if (this.doneIds.includes(id) || (this.newestDone !== null && id <= this.newestDone)) return null;
    if (chunk.totalBytes > this.maxImageBytes) {
      throw new ProtocolError(`source image ${id} is ${chunk.totalBytes} bytes, limit ${this.maxImageBytes}`);
    }
    let partial = this.partials.get(id);
    if (partial === undefined) {
      while (this.partials.size >= this.maxPartialImages) {
        let oldest = null;
        for (const [pid, p] of this.partials) if (oldest === null || p.startedS < this.partials.get(oldest).startedS) oldest = pid;
        this.partials.delete(oldest);
        this.timedOut += 1;
      }
      partial = { header: chunk, startedS: nowS, lastS: nowS, chunks: new Map() };
      this.partials.set(id, partial);
    } else if (!sameHeader(partial.header, chunk)) {
      this.partials.delete(id);
      throw new ProtocolError(`source image ${id}: chunk ${chunk.index} disagrees with earlier chunks`);
    }
    const previous = partial.chunks.get(chunk.index);
    if (previous !== undefined) {
      if (!equalBytes(previous, chunk.payload)) {
        this.partials.delete(id);
        throw new ProtocolError(`source image ${id}: chunk ${chunk.index} re-sent with other bytes`);
      }
      return null;
    }
    partial.chunks.set(chunk.index, chunk.payload);
    partial.lastS = nowS;
    if (partial.chunks.size < chunk.count) return null;
    this.partials.delete(id);
    const data = new Uint8Array(chunk.totalBytes);
    for (let i = 0, at = 0; i < chunk.count; i++) {
      const piece = partial.chunks.get(i);
      data.set(piece, at);
      at += piece.length;
    }
    if (!equalBytes(await sha256(data), chunk.sha256)) {
      throw new ProtocolError(`source image ${id}: sha256 of the assembled bytes does not match`);
    }
    this.doneIds.push(id);
    if (this.doneIds.length > 8) this.doneIds.shift();
    this.newestDone = id;
    for (const older of [...this.partials.keys()]) if (older < id) this.partials.delete(older);
    return { imageId: id, format: chunk.format, data };
  }
}

// --- header check -----------------------------------------------------------------------------------------

class Bad extends Error {}

const u16le = (b, at) => b[at] | (b[at + 1] << 8);
const u32le = (b, at) => (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16)) + b[at + 3] * 0x1000000;
const u16be = (b, at) => (b[at] << 8) | b[at + 1];
const u32be = (b, at) => b[at] * 0x1000000 + ((b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]);
const ascii = (b, at, n) => String.fromCharCode(...b.subarray(at, at + n));

/** Python's repr() of a bytes object given as a latin-1 string (a fourcc, for messages). */
function bytesRepr(s) {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = `b${quote}`;
  for (const ch of s) {
    const c = ch.charCodeAt(0);
    if (ch === '\\' || ch === quote) out += `\\${ch}`;
    else if (ch === '\t') out += '\\t';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (c < 0x20 || c >= 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out + quote;
}

function webpBitstreamSize(fourcc, body) {
  if (fourcc === 'VP8 ') {
    if (body.length < 10) throw new Bad('WebP VP8 chunk is too short for a frame header');
    if (body[0] & 1) throw new Bad('WebP VP8 bitstream does not start with a key frame');
    if (body[3] !== 0x9d || body[4] !== 0x01 || body[5] !== 0x2a) throw new Bad('WebP VP8 frame has no start code');
    return [u16le(body, 6) & 0x3fff, u16le(body, 8) & 0x3fff]; // the top 2 bits are an upscaling hint
  }
  if (body.length < 5 || body[0] !== 0x2f) throw new Bad('WebP VP8L chunk has no signature');
  const bits = u32le(body, 1);
  const version = Math.floor(bits / 2 ** 29);
  if (version) throw new Bad(`WebP VP8L version ${version} is not 0`);
  return [(bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1];
}

function webpSize(b) {
  if (b.length < 20 || ascii(b, 0, 4) !== 'RIFF' || ascii(b, 8, 4) !== 'WEBP') throw new Bad('not a WebP file (no RIFF/WEBP header)');
  const riffBytes = u32le(b, 4);
  const end = 8 + riffBytes;
  if (riffBytes < 12 || end > b.length) throw new Bad(`WebP RIFF size ${riffBytes} does not fit the ${b.length} bytes`);
  let canvas = null;
  let pos = 12;
  for (let n = 0; n < MAX_HEADER_SEGMENTS; n++) {
    if (pos + 8 > end) break;
    const fourcc = ascii(b, pos, 4);
    const size = u32le(b, pos + 4);
    const body = b.subarray(pos + 8, pos + 8 + size);
    if (body.length !== size || pos + 8 + size > end) throw new Bad(`WebP chunk ${bytesRepr(fourcc)} of ${size} bytes is truncated`);
    if (fourcc === 'VP8 ' || fourcc === 'VP8L') {
      const px = webpBitstreamSize(fourcc, body);
      if (canvas !== null && (px[0] !== canvas[0] || px[1] !== canvas[1])) {
        throw new Bad(`WebP bitstream is ${px[0]}x${px[1]}, canvas ${canvas[0]}x${canvas[1]}`);
      }
      return px;
    }
    if (pos === 12) {
      if (fourcc !== 'VP8X' || size < 10) throw new Bad(`WebP starts with chunk ${bytesRepr(fourcc)}, not VP8, VP8L or VP8X`);
      if (body[0] & WEBP_ANIMATION) throw new Bad('an animated WebP is not a source image');
      canvas = [(body[4] | (body[5] << 8) | (body[6] << 16)) + 1, (body[7] | (body[8] << 8) | (body[9] << 16)) + 1];
      checkSide(canvas[0], canvas[1]);
    }
    pos += 8 + size + (size & 1); // chunks are padded to an even size
  }
  throw new Bad('WebP has no VP8 / VP8L bitstream chunk');
}

function pngSize(b) {
  if (b.length < 33 || PNG_SIGNATURE.some((v, i) => b[i] !== v)) throw new Bad('not a PNG file (no PNG signature)');
  if (u32be(b, 8) !== 13 || ascii(b, 12, 4) !== 'IHDR') throw new Bad('PNG does not start with an IHDR chunk');
  return [u32be(b, 16), u32be(b, 20)];
}

function jpegSize(b) {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8 || b[2] !== 0xff) throw new Bad('not a JPEG file (no SOI marker)');
  let pos = 2;
  for (let n = 0; n < MAX_HEADER_SEGMENTS; n++) {
    if (pos >= b.length || b[pos] !== 0xff) throw new Bad(`JPEG: no marker at byte ${pos}`);
    while (pos < b.length && b[pos] === 0xff) pos++; // fill bytes
    if (pos + 3 > b.length) break;
    const marker = b[pos];
    const length = u16be(b, pos + 1);
    const hex = marker.toString(16).toUpperCase().padStart(2, '0');
    if (JPEG_FRAMES.has(marker)) {
      if (length < 8 || pos + 1 + length > b.length) throw new Bad('JPEG frame header is truncated');
      const height = u16be(b, pos + 4);
      const width = u16be(b, pos + 6);
      if (height === 0) throw new Bad('JPEG frame without a height (DNL) is not supported');
      let scans = 0;
      for (let i = 0; i + 1 < b.length; i++) if (b[i] === 0xff && b[i + 1] === 0xda) scans++;
      if (scans > MAX_JPEG_SCANS) throw new Bad(`JPEG has more than ${MAX_JPEG_SCANS} scans`);
      return [width, height];
    }
    if (!((marker >= 0xe0 && marker <= 0xef) || JPEG_TABLES.has(marker))) {
      throw new Bad(`JPEG marker 0x${hex} before a baseline / progressive frame header`);
    }
    if (length < 2) throw new Bad(`JPEG segment 0x${hex} has length ${length}`);
    pos += 1 + length;
  }
  throw new Bad('JPEG has no frame header within its first segments');
}

const HEADER_READERS = { webp: webpSize, png: pngSize, jpeg: jpegSize };

function checkSide(width, height) {
  if (!(width >= 1 && width <= MAX_SOURCE_SIDE_PX && height >= 1 && height <= MAX_SOURCE_SIDE_PX)) {
    throw new Bad(`source image is ${width}x${height} px, limit ${MAX_SOURCE_SIDE_PX}x${MAX_SOURCE_SIDE_PX}`);
  }
}

/**
 * Width and height of untrusted image bytes, from the header of their declared format (nothing decoded):
 * WebP (VP8, VP8L or a still VP8X), PNG, JPEG (baseline / extended / progressive, at most 32 scans); not AVIF.
 * @param {Uint8Array} bytes the encoded image
 * @param {string} format the declared format (SOURCE_CHUNK format)
 * @returns {{width: number, height: number}} each 1..1024 px
 * @throws {ProtocolError} a format not accepted, bytes that are not that format, a truncated or inconsistent
 *   header, an animation, or a size over the limit (Python raises ValueError with the same text)
 */
export function sourceImageSize(bytes, format) {
  const reader = Object.hasOwn(HEADER_READERS, format) ? HEADER_READERS[format] : undefined;
  if (reader === undefined) {
    throw new ProtocolError(`source image format ${pyRepr(String(format))} is not accepted (accepted: ${ACCEPTED_SOURCE_FORMATS.join(', ')})`);
  }
  try {
    const [width, height] = reader(bytes);
    checkSide(width, height);
    return { width, height };
  } catch (exc) {
    if (exc instanceof Bad) throw new ProtocolError(exc.message);
    throw exc;
  }
}
