// The avfr wire format for the browser receiver: decodeMessage for all 8 message types, the Session built
// from a Hello, Hello validation, and the encoders the receiver sends (REFRESH, STATS, ERROR).
// Port of avfr/proto/{framing,messages,hello,control,source,audio}.py (proto/SPEC.md). Every check of the
// Python decoder is here, in the same order, with the same messages where the text is the code's own.
//
// Decoded messages are plain objects with `type` (one of MessageType):
//   HELLO        {type: 1, modelId, weightsSha256, numKp, fps, kpBits, jacBits, jacAbsMax, keyIntervalFrames,
//                 audio: {codec, sampleRateHz, channels, frameMs, bitrateBps}, causalWindow}
//   ERROR        {type: 2, code, text}
//   REFRESH      {type: 3, wantKey, wantSource}
//   STATS        {type: 4, received, droppedMalformed, droppedLate, droppedBroken, concealed, audioReceived,
//                 audioConcealed, jitterMs, delayMs}
//   SOURCE_CHUNK {type: 5, imageId, format, totalBytes, sha256: Uint8Array(32), chunkBytes, index, count,
//                 payload: Uint8Array}
//   KEYPOINTS_KEY / KEYPOINTS_DELTA: see keypoints.mjs decodeKeypoints
//   AUDIO        {type: 8, seq, ts90k, payload: Uint8Array (one Opus packet)}
// Integers are Numbers (uint32 fields are exact), byte fields are copies (they outlive the received buffer).

import { ErrorCode, ProtocolError } from './errors.mjs';
import {
  MAX_SOURCE_CHUNK_BYTES, MessageType, checkBool, checkBytes, checkFloat, checkInt, checkStr,
  expectType, makeTag, messageTypeName, parseTag, pyFloat, pyRepr, toBytes,
} from './framing.mjs';
import { decodeKeypoints } from './keypoints.mjs';
import { packArrayHeader, packBool, packFloat64, packInt, packStr, unpackArray } from './msgpack.mjs';

export { ErrorCode, ProtocolError, errorCodeName } from './errors.mjs';
export {
  COMPACT_DELTA_BIT, DATA_CHANNEL_PROTOCOL, MAX_KEYPOINTS_BYTES, MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES_BY_TYPE,
  MAX_OPUS_PACKET_BYTES, MAX_SOURCE_CHUNK_BYTES, MessageType, WIRE_VERSION, makeTag, messageTypeName, parseTag,
  toBytes,
} from './framing.mjs';
export { decodeKeypoints, extendSeq, seqDiff } from './keypoints.mjs';

export const CLOCK_RATE_HZ = 90000; // the media clock of ts90k, shared by keypoints and audio
export const TS_STEP_AUDIO_90K = 1800; // one 20 ms Opus packet
export const MAX_ERROR_TEXT_CHARS = 200;
export const MAX_COUNTER = 0xffffffff; // STATS counters are uint32 (senders saturate)
export const MAX_STAT_MS = 1.0e6;
export const SOURCE_FORMATS = Object.freeze(['webp', 'jpeg', 'avif', 'png']);
export const MAX_SOURCE_BYTES = 2 * 1024 * 1024;
export const MIN_CHUNK_BYTES = 1024;
export const MAX_IMAGE_ID = 0xffffffff;
export const CONTROL_CHANNEL_LABEL = 'avfr-control'; // reliable, ordered
export const MEDIA_CHANNEL_LABEL = 'avfr-media'; // ordered: false, maxRetransmits: 0
export const CONTROL_CHANNEL_TYPES = Object.freeze(new Set([1, 2, 3, 4, 5]));
export const MEDIA_CHANNEL_TYPES = Object.freeze(new Set([6, 7, 8]));
export const AUDIO_HEADER_BYTES = 7;

const MIN_BITS = 4;
const MAX_BITS = 16;
const MIN_JAC_ABS_MAX = 0.25;
const MAX_JAC_ABS_MAX = 64.0;
const MAX_NUM_KP = 64;
const MAX_FPS = 120;
const MAX_KEY_INTERVAL_FRAMES = 10000;
const MODEL_ID_RE = '[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}';
const SHA256_RE = '[0-9a-f]{64}';
const CODEC_RE = '[a-z0-9]{1,16}';
const STATS_FIELDS = Object.freeze([ // [JS name, Python name]
  ['received', 'received'], ['droppedMalformed', 'dropped_malformed'], ['droppedLate', 'dropped_late'],
  ['droppedBroken', 'dropped_broken'], ['concealed', 'concealed'], ['audioReceived', 'audio_received'],
  ['audioConcealed', 'audio_concealed'], ['jitterMs', 'jitter_ms'], ['delayMs', 'delay_ms'],
]);

/** Default audio stream: Opus 16 kHz mono, 20 ms packets, 16 kbit/s. */
export const DEFAULT_AUDIO = Object.freeze({ codec: 'opus', sampleRateHz: 16000, channels: 1, frameMs: 20, bitrateBps: 16000 });

function unpackBody(bytes, type, arity) {
  const name = messageTypeName(type);
  const fields = unpackArray(bytes, 1, name);
  if (fields.length !== arity) throw new ProtocolError(`${name}: body has ${fields.length} fields, expected ${arity}`);
  return fields;
}

// --- Hello and Session ------------------------------------------------------------------------------------

function intField(value, name, lo, hi) { // a JS-side (Number) field of a Session
  if (!Number.isInteger(value) || value < lo || value > hi) {
    throw new ProtocolError(`${name}=${value} must be an int in [${lo}, ${hi}]`);
  }
  return value;
}

/**
 * A validated, frozen Session: what decoding a call's media needs (Python Session; defaults as
 * `Session()`: K = 10, 25 fps, 8/5 bits, jacAbsMax 4.0, key every 100 frames, DEFAULT_AUDIO, centred window).
 * @param {{numKp?: number, fps?: number, kpBits?: number, jacBits?: number, jacAbsMax?: number,
 *   keyIntervalFrames?: number, audio?: object, causalWindow?: boolean}} [fields]
 * @returns {Readonly<{numKp: number, fps: number, kpBits: number, jacBits: number, jacAbsMax: number,
 *   keyIntervalFrames: number, audio: object, causalWindow: boolean, tsStep90k: number}>} tsStep90k: ts90k
 *   ticks between keypoint frames (3600 at 25 fps)
 * @throws {ProtocolError} a field out of range
 */
export function makeSession(fields = {}) {
  const f = { numKp: 10, fps: 25, kpBits: 8, jacBits: 5, jacAbsMax: 4.0, keyIntervalFrames: 100, causalWindow: false, ...fields };
  const a = { ...DEFAULT_AUDIO, ...(fields.audio ?? {}) };
  intField(f.numKp, 'Session.num_kp', 1, MAX_NUM_KP);
  intField(f.fps, 'Session.fps', 1, MAX_FPS);
  if (CLOCK_RATE_HZ % f.fps) throw new ProtocolError(`Session.fps=${f.fps} does not divide the ${CLOCK_RATE_HZ} Hz media clock`);
  intField(f.kpBits, 'kp_bits', MIN_BITS, MAX_BITS);
  intField(f.jacBits, 'jac_bits', MIN_BITS, MAX_BITS);
  if (!(Number.isFinite(f.jacAbsMax) && f.jacAbsMax >= MIN_JAC_ABS_MAX && f.jacAbsMax <= MAX_JAC_ABS_MAX)) {
    throw new ProtocolError(`jac_abs_max=${f.jacAbsMax} must be a finite float in [${MIN_JAC_ABS_MAX}, ${MAX_JAC_ABS_MAX}]`);
  }
  intField(f.keyIntervalFrames, 'Session.key_interval_frames', 1, MAX_KEY_INTERVAL_FRAMES);
  if (typeof a.codec !== 'string' || !new RegExp(`^${CODEC_RE}$`).test(a.codec)) throw new ProtocolError(`audio.codec=${a.codec} is invalid`);
  intField(a.sampleRateHz, 'audio.sample_rate_hz', 8000, 48000);
  intField(a.channels, 'audio.channels', 1, 2);
  intField(a.frameMs, 'audio.frame_ms', 1, 120);
  intField(a.bitrateBps, 'audio.bitrate_bps', 500, 512000);
  if (typeof f.causalWindow !== 'boolean') throw new ProtocolError('Session.causal_window must be a bool');
  return Object.freeze({
    numKp: f.numKp, fps: f.fps, kpBits: f.kpBits, jacBits: f.jacBits, jacAbsMax: f.jacAbsMax,
    keyIntervalFrames: f.keyIntervalFrames, audio: Object.freeze({ codec: a.codec, sampleRateHz: a.sampleRateHz,
      channels: a.channels, frameMs: a.frameMs, bitrateBps: a.bitrateBps }),
    causalWindow: f.causalWindow, tsStep90k: CLOCK_RATE_HZ / f.fps,
  });
}

/**
 * The session a receiver runs after accepting `hello` (Session.from_hello).
 * @param {object} hello a decoded HELLO
 */
export function sessionFromHello(hello) {
  return makeSession(hello);
}

/**
 * bytes -> HELLO (every field type- and range-checked, in the Python decoder's order).
 * @param {Uint8Array|ArrayBuffer|ArrayBufferView} data
 * @throws {ProtocolError} code UNSUPPORTED_VERSION for another wire version, MALFORMED for anything else
 */
export function decodeHello(data) {
  const bytes = toBytes(data);
  expectType(bytes, MessageType.HELLO);
  const [modelId, sha, numKp, fps, kpBits, jacBits, jacAbsMax, keyInterval, audio, causal] = unpackBody(bytes, MessageType.HELLO, 10);
  if (!Array.isArray(audio) || audio.length !== 5) throw new ProtocolError('Hello.audio must be an array of 5 fields');
  const quant = {
    kpBits: checkInt(kpBits, 'Hello.kp_bits', MIN_BITS, MAX_BITS),
    jacBits: checkInt(jacBits, 'Hello.jac_bits', MIN_BITS, MAX_BITS),
    jacAbsMax: checkFloat(jacAbsMax, 'Hello.jac_abs_max', MIN_JAC_ABS_MAX, MAX_JAC_ABS_MAX),
  };
  const audioParams = {
    codec: checkStr(audio[0], 'audio.codec', 16, CODEC_RE),
    sampleRateHz: checkInt(audio[1], 'audio.sample_rate_hz', 8000, 48000),
    channels: checkInt(audio[2], 'audio.channels', 1, 2),
    frameMs: checkInt(audio[3], 'audio.frame_ms', 1, 120),
    bitrateBps: checkInt(audio[4], 'audio.bitrate_bps', 500, 512000),
  };
  const hello = { type: MessageType.HELLO };
  hello.modelId = checkStr(modelId, 'Hello.model_id', 64, MODEL_ID_RE);
  hello.weightsSha256 = checkStr(sha, 'Hello.weights_sha256', 64, SHA256_RE);
  hello.numKp = checkInt(numKp, 'Hello.num_kp', 1, MAX_NUM_KP);
  hello.fps = checkInt(fps, 'Hello.fps', 1, MAX_FPS);
  if (CLOCK_RATE_HZ % hello.fps) throw new ProtocolError(`Hello.fps=${hello.fps} does not divide the ${CLOCK_RATE_HZ} Hz media clock`);
  Object.assign(hello, quant);
  hello.keyIntervalFrames = checkInt(keyInterval, 'Hello.key_interval_frames', 1, MAX_KEY_INTERVAL_FRAMES);
  hello.audio = audioParams;
  hello.causalWindow = checkBool(causal, 'Hello.causal_window');
  return hello;
}

/**
 * What a receiver supports (Python Capabilities), with Python's defaults for every field left out.
 * @param {{models: Array<{modelId: string, weightsSha256: string, numKp?: number}>}} caps
 */
export function makeCapabilities(caps) {
  return {
    fps: [25], kpBits: [MIN_BITS, MAX_BITS], jacBits: [MIN_BITS, MAX_BITS], jacAbsMax: [MIN_JAC_ABS_MAX, MAX_JAC_ABS_MAX],
    audioCodecs: ['opus'], audioSampleRatesHz: [8000, 12000, 16000, 24000, 48000], audioChannels: [1],
    audioFrameMs: [10, 20, 40, 60], maxAudioBitrateBps: 128000, causalWindowModes: [false, true], ...caps,
    models: caps.models.map((m) => ({ numKp: 10, ...m })),
  };
}

/**
 * Check a peer's (well-formed) Hello against what this receiver supports (validate_hello).
 * @param {object} hello a decoded HELLO
 * @param {object} caps makeCapabilities(...)
 * @returns {{code: number, text: string}|null} null to accept, else the ERROR to send back
 */
export function validateHello(hello, caps) {
  const byId = new Map(caps.models.map((m) => [m.modelId, m]));
  const model = byId.get(hello.modelId);
  const params = (text) => ({ code: ErrorCode.UNSUPPORTED_PARAMS, text });
  const list = (values) => values.map((v) => (typeof v === 'boolean' ? (v ? 'True' : 'False') : String(v))).join(', ');
  if (model === undefined) {
    const held = [...byId.keys()].sort().join(', ') || 'none';
    return { code: ErrorCode.UNKNOWN_MODEL, text: `unknown model ${pyRepr(hello.modelId)} (this receiver holds: ${held})` };
  }
  if (model.weightsSha256 !== hello.weightsSha256) {
    return { code: ErrorCode.WEIGHTS_MISMATCH, text: `model ${pyRepr(hello.modelId)}: peer weights sha256 `
      + `${hello.weightsSha256.slice(0, 12)}..., receiver has ${model.weightsSha256.slice(0, 12)}...` };
  }
  if (hello.numKp !== model.numKp) return params(`num_kp=${hello.numKp} but model ${pyRepr(hello.modelId)} uses K=${model.numKp}`);
  if (!caps.fps.includes(hello.fps)) return params(`fps=${hello.fps} not supported (supported: ${list(caps.fps)})`);
  for (const [name, value, [lo, hi], fmt] of [['kp_bits', hello.kpBits, caps.kpBits, String],
    ['jac_bits', hello.jacBits, caps.jacBits, String], ['jac_abs_max', hello.jacAbsMax, caps.jacAbsMax, pyFloat]]) {
    if (!(lo <= value && value <= hi)) return params(`${name}=${fmt(value)} outside the supported range [${fmt(lo)}, ${fmt(hi)}]`);
  }
  const a = hello.audio;
  for (const [name, value, allowed] of [['audio.codec', a.codec, caps.audioCodecs],
    ['audio.sample_rate_hz', a.sampleRateHz, caps.audioSampleRatesHz], ['audio.channels', a.channels, caps.audioChannels],
    ['audio.frame_ms', a.frameMs, caps.audioFrameMs]]) {
    if (!allowed.includes(value)) {
      const shown = typeof value === 'string' ? pyRepr(value) : String(value);
      return params(`${name}=${shown} not supported (supported: ${list(allowed)})`);
    }
  }
  if (a.bitrateBps > caps.maxAudioBitrateBps) return params(`audio.bitrate_bps=${a.bitrateBps} above the limit ${caps.maxAudioBitrateBps}`);
  if (!caps.causalWindowModes.includes(hello.causalWindow)) {
    return params(`${hello.causalWindow ? 'causal' : 'centred'} audio window not supported by this receiver`);
  }
  return null;
}

// --- control messages -------------------------------------------------------------------------------------

/** bytes -> ERROR {type: 2, code (1..7), text (<= 200 characters, the peer's: escape before showing)}. */
export function decodeError(data) {
  const bytes = toBytes(data);
  expectType(bytes, MessageType.ERROR);
  const [code, text] = unpackBody(bytes, MessageType.ERROR, 2);
  const n = checkInt(code, 'Error.code', 0, 255);
  if (n < 1 || n > 7) throw new ProtocolError(`Error.code=${n} is not a known error code`);
  return { type: MessageType.ERROR, code: n, text: checkStr(text, 'Error.text', MAX_ERROR_TEXT_CHARS) };
}

/** bytes -> REFRESH {type: 3, wantKey, wantSource}. */
export function decodeRefresh(data) {
  const bytes = toBytes(data);
  expectType(bytes, MessageType.REFRESH);
  const [wantKey, wantSource] = unpackBody(bytes, MessageType.REFRESH, 2);
  return { type: MessageType.REFRESH, wantKey: checkBool(wantKey, 'Refresh.want_key'), wantSource: checkBool(wantSource, 'Refresh.want_source') };
}

/** bytes -> STATS {type: 4, seven uint32 counters, jitterMs, delayMs (0..1e6 ms)}. */
export function decodeStats(data) {
  const bytes = toBytes(data);
  expectType(bytes, MessageType.STATS);
  const values = unpackBody(bytes, MessageType.STATS, STATS_FIELDS.length);
  const out = { type: MessageType.STATS };
  STATS_FIELDS.forEach(([js, py], i) => {
    out[js] = py.endsWith('_ms') ? checkFloat(values[i], `Stats.${py}`, 0.0, MAX_STAT_MS)
      : checkInt(values[i], `Stats.${py}`, 0, MAX_COUNTER);
  });
  return out;
}

/** bytes -> SOURCE_CHUNK (header and payload size checked against each other). */
export function decodeSourceChunk(data) {
  const bytes = toBytes(data);
  expectType(bytes, MessageType.SOURCE_CHUNK);
  const [imageId, format, totalBytes, sha256, chunkBytes, index, count, payload] = unpackBody(bytes, MessageType.SOURCE_CHUNK, 8);
  const c = { type: MessageType.SOURCE_CHUNK };
  c.imageId = checkInt(imageId, 'SourceChunk.image_id', 0, MAX_IMAGE_ID);
  c.format = checkStr(format, 'SourceChunk.format', 8);
  if (!SOURCE_FORMATS.includes(c.format)) {
    throw new ProtocolError(`SourceChunk.format=${pyRepr(c.format)} is not one of ${SOURCE_FORMATS.join(', ')}`);
  }
  c.totalBytes = checkInt(totalBytes, 'SourceChunk.total_bytes', 1, MAX_SOURCE_BYTES);
  c.sha256 = checkBytes(sha256, 'SourceChunk.sha256', 32, 32);
  c.chunkBytes = checkInt(chunkBytes, 'SourceChunk.chunk_bytes', MIN_CHUNK_BYTES, MAX_SOURCE_CHUNK_BYTES);
  const expectedCount = Math.ceil(c.totalBytes / c.chunkBytes);
  const n = checkInt(count, 'SourceChunk.count', expectedCount, expectedCount);
  c.index = checkInt(index, 'SourceChunk.index', 0, n - 1);
  c.count = n;
  const size = Math.min(c.chunkBytes, c.totalBytes - c.index * c.chunkBytes);
  c.payload = checkBytes(payload, `SourceChunk.payload of chunk ${c.index}`, size, size);
  return c;
}

/** bytes -> AUDIO {type: 8, seq (uint16), ts90k (uint32), payload: Uint8Array (1..1275 bytes)}. */
export function decodeAudio(data) {
  const bytes = toBytes(data);
  expectType(bytes, MessageType.AUDIO);
  if (bytes.length < AUDIO_HEADER_BYTES + 1) throw new ProtocolError(`AUDIO is ${bytes.length} bytes, minimum ${AUDIO_HEADER_BYTES + 1}`);
  const seq = bytes[1] * 256 + bytes[2];
  const ts90k = ((bytes[3] * 256 + bytes[4]) * 256 + bytes[5]) * 256 + bytes[6];
  return { type: MessageType.AUDIO, seq, ts90k, payload: bytes.slice(AUDIO_HEADER_BYTES) };
}

/**
 * bytes -> the message they hold (shapes at the top of this file).
 * @param {Uint8Array|ArrayBuffer|ArrayBufferView} data one whole data-channel message
 * @param {object|null} [session] the call's session; keypoint packets before one is set up are refused
 * @param {number} [nearSeq] the keypoint seq the receiver expects next, to extend a DELTA's 7 seq bits
 *   (decodeKeypoints)
 * @returns {object}
 * @throws {ProtocolError} anything malformed (MALFORMED), another wire version (UNSUPPORTED_VERSION), a
 *   keypoint packet without a session (UNEXPECTED_MESSAGE). Never another exception for any bytes.
 */
export function decodeMessage(data, session = null, nearSeq = 0) {
  const bytes = toBytes(data);
  const type = parseTag(bytes);
  switch (type) {
    case MessageType.KEYPOINTS_KEY:
    case MessageType.KEYPOINTS_DELTA:
      if (session === null || session === undefined) {
        throw new ProtocolError(`${messageTypeName(type)} before a Hello was accepted`, ErrorCode.UNEXPECTED_MESSAGE);
      }
      return decodeKeypoints(bytes, session, nearSeq);
    case MessageType.HELLO: return decodeHello(bytes);
    case MessageType.ERROR: return decodeError(bytes);
    case MessageType.REFRESH: return decodeRefresh(bytes);
    case MessageType.STATS: return decodeStats(bytes);
    case MessageType.SOURCE_CHUNK: return decodeSourceChunk(bytes);
    default: return decodeAudio(bytes);
  }
}

// --- encoders (byte-identical to Python's msgpack.packb) -------------------------------------------------

function packBody(type, fields) {
  return Uint8Array.from([makeTag(type), ...packArrayHeader(fields.length), ...fields.flat()]);
}

/**
 * REFRESH -> bytes: ask for a KEY packet (wantKey, default true) and/or the source image again (wantSource).
 * @param {{wantKey?: boolean, wantSource?: boolean}} [msg]
 * @returns {Uint8Array}
 */
export function encodeRefresh({ wantKey = true, wantSource = false } = {}) {
  if (typeof wantKey !== 'boolean' || typeof wantSource !== 'boolean') throw new ProtocolError('Refresh flags must be bools');
  return packBody(MessageType.REFRESH, [packBool(wantKey), packBool(wantSource)]);
}

/**
 * STATS -> bytes. Counters: integers 0..2**32 - 1 (saturate before calling); jitterMs, delayMs: 0..1e6 ms,
 * always sent as float64. Missing fields are 0.
 * @param {object} stats fields as decodeStats returns them (type ignored)
 * @returns {Uint8Array}
 * @throws {ProtocolError} a field out of range
 */
export function encodeStats(stats = {}) {
  const fields = STATS_FIELDS.map(([js, py]) => {
    const v = stats[js] ?? 0;
    if (py.endsWith('_ms')) {
      if (typeof v !== 'number' || !(v >= 0 && v <= MAX_STAT_MS)) throw new ProtocolError(`Stats.${py}=${v} out of range [0.0, 1000000.0]`);
      return packFloat64(v);
    }
    if (!Number.isInteger(v) || v < 0 || v > MAX_COUNTER) throw new ProtocolError(`Stats.${py}=${v} out of range [0, ${MAX_COUNTER}]`);
    return packInt(v);
  });
  return packBody(MessageType.STATS, fields);
}

/**
 * ERROR -> bytes.
 * @param {{code: number, text: string}} msg code one of ErrorCode; text at most 200 characters (code points)
 * @returns {Uint8Array}
 * @throws {ProtocolError} unknown code, text too long or not well-formed Unicode
 */
export function encodeError({ code, text }) {
  if (!Number.isInteger(code) || code < 1 || code > 7) throw new ProtocolError(`Error.code=${code} is not a known error code`);
  checkStr(text, 'Error.text', MAX_ERROR_TEXT_CHARS);
  if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text)) {
    throw new ProtocolError('Error.text holds a lone surrogate');
  }
  return packBody(MessageType.ERROR, [packInt(code), packStr(text)]);
}

/**
 * The ERROR that answers a refused message (error_from_exception): its code (INTERNAL for an exception
 * that is not a ProtocolError) and its message cut to 200 characters.
 * @param {Error} exc
 * @returns {{code: number, text: string}}
 */
export function errorFromException(exc) {
  const code = exc instanceof ProtocolError ? exc.code : ErrorCode.INTERNAL;
  const text = Array.from(String(exc?.message ?? exc)).slice(0, MAX_ERROR_TEXT_CHARS).join('');
  return { code, text };
}

/** peekType: the type of a message after the version, length and size checks (as parseTag). */
export const peekType = parseTag;
