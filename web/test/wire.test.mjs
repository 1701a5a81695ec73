// web/src/wire.mjs (+ msgpack, framing, keypoints decoding) against the Python reference avfr.proto:
// the golden vectors of tests/data/proto/v2 (and the frozen v1 ones, refused by version), Python's verdict on
// every truncation and bit flip of them, random bytes, and the encoders' bytes (fixture:
// tests/data/web/make_stream.py -> proto_v2.json).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';

import { KeypointDecoder, extendSeq } from '../src/keypoints.mjs';
import { SourceAssembler } from '../src/source.mjs';
import {
  COMPACT_DELTA_BIT, DATA_CHANNEL_PROTOCOL, ErrorCode, MAX_KEYPOINTS_BYTES, MAX_MESSAGE_BYTES, MessageType,
  ProtocolError, WIRE_VERSION, decodeMessage, encodeError, encodeRefresh, encodeStats, errorFromException,
  makeCapabilities, makeSession, makeTag, parseTag, sessionFromHello, validateHello,
} from '../src/wire.mjs';

const DATA = new URL('../../tests/data/', import.meta.url);
const VERSION_DIR = new URL(`proto/v${WIRE_VERSION}/`, DATA);
const FROZEN_V1 = new URL('proto/v1/', DATA);
const FIXTURE = JSON.parse(readFileSync(new URL(`web/proto_v${WIRE_VERSION}.json`, DATA), 'utf8'));
const STREAM = JSON.parse(readFileSync(new URL('web/stream_grid_lwbsza.json', DATA), 'utf8'));
const SESSIONS = Object.fromEntries(Object.entries(FIXTURE.sessions).map(([k, v]) => [k, makeSession(v)]));
const GOLDEN = FIXTURE.golden.map((g) => ({ ...g, data: new Uint8Array(readFileSync(new URL(`${g.name}.bin`, VERSION_DIR))) }));

const b64 = (u8) => Buffer.from(u8).toString('base64');
const hex = (u8) => Buffer.from(u8).toString('hex');
const sha256Hex = (u8) => createHash('sha256').update(u8).digest('hex');

/** A decoded JS message in the fixture's JSON form (make_stream.py message_json). */
function toJson(msg, fullPayload = true) {
  const out = { ...msg };
  const payload = (p) => (fullPayload ? { payload: b64(p) } : { payloadSha256: sha256Hex(p), payloadBytes: p.length });
  switch (msg.type) {
    case MessageType.SOURCE_CHUNK:
      delete out.payload;
      return { ...out, sha256: hex(msg.sha256), ...payload(msg.payload) };
    case MessageType.KEYPOINTS_KEY:
      assert.deepEqual([...msg.levels], [...msg.kpQ, ...msg.jacQ]);
      delete out.levels;
      return { ...out, kpQ: [...msg.kpQ], jacQ: [...msg.jacQ] };
    case MessageType.KEYPOINTS_DELTA:
      return { ...out, common: [...msg.common], kpRes: [...msg.kpRes], jacRes: [...msg.jacRes] };
    case MessageType.AUDIO:
      delete out.payload;
      return { ...out, ...payload(msg.payload) };
    default:
      return out;
  }
}

/** '0' when decodeMessage accepts, else the ProtocolError's code; any other exception fails the test. */
function verdict(data, session) {
  try {
    decodeMessage(data, session);
    return '0';
  } catch (exc) {
    if (!(exc instanceof ProtocolError)) throw new Error(`not a ProtocolError: ${exc?.stack ?? exc}`);
    assert.ok(exc.message.length > 0);
    return String(exc.code);
  }
}

/** Feeds what decodes into the stateful parts too, as tests/test_proto_fuzz.py's _Sink. */
class Sink {
  constructor() {
    this.keypoints = new Map(Object.values(SESSIONS).map((s) => [s, new KeypointDecoder(s)]));
    this.assembler = new SourceAssembler();
    this.pushes = [];
    this.nowS = 0;
    this.decoded = 0;
    this.refused = 0;
  }

  feed(data, session) {
    this.nowS += 0.01;
    try {
      const msg = decodeMessage(data, session);
      this.decoded += 1;
      if ((msg.type === MessageType.KEYPOINTS_KEY || msg.type === MessageType.KEYPOINTS_DELTA) && session) {
        this.keypoints.get(session).decode(msg);
      } else if (msg.type === MessageType.SOURCE_CHUNK) {
        this.pushes.push(this.assembler.push(msg, this.nowS).catch((exc) => {
          if (!(exc instanceof ProtocolError)) throw exc;
        }));
      }
    } catch (exc) {
      if (!(exc instanceof ProtocolError)) throw exc;
      this.refused += 1;
    }
  }

  async done() {
    await Promise.all(this.pushes);
  }
}

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('every golden vector decodes to what make_golden.py says it holds', () => {
  assert.equal(GOLDEN.length, 12);
  assert.equal(FIXTURE.wireVersion, WIRE_VERSION);
  const onDisk = readdirSync(VERSION_DIR).filter((f) => f.endsWith('.bin')).map((f) => f.slice(0, -4)).sort();
  assert.deepEqual(onDisk, GOLDEN.map((g) => g.name).sort());
  for (const g of GOLDEN) {
    const session = g.session === null ? null : SESSIONS[g.session];
    const msg = decodeMessage(g.data, session);
    assert.deepEqual(toJson(msg), g.expected, g.name);
    assert.deepEqual(toJson(decodeMessage(g.data.buffer.slice(g.data.byteOffset, g.data.byteOffset + g.data.length), session)),
      g.expected, `${g.name} from an ArrayBuffer`);
  }
  const types = new Set(GOLDEN.map((g) => g.expected.type));
  assert.deepEqual([...types].sort(), [1, 2, 3, 4, 5, 6, 7, 8]);
});

test('every bad vector is refused with the Python code and message', () => {
  const bad = new URL('bad/', VERSION_DIR);
  const onDisk = readdirSync(bad).filter((f) => f.endsWith('.bin')).map((f) => f.slice(0, -4)).sort();
  assert.deepEqual(onDisk, FIXTURE.bad.map((b) => b.name).sort());
  for (const b of FIXTURE.bad) {
    const data = new Uint8Array(readFileSync(new URL(`${b.name}.bin`, bad)));
    const session = b.session === null ? null : SESSIONS[b.session];
    assert.throws(() => decodeMessage(data, session), (exc) => {
      assert.ok(exc instanceof ProtocolError, `${b.name}: ${exc}`);
      assert.equal(exc.code, b.code, b.name);
      const lib = b.message.match(/^(\w+: malformed msgpack body) \(/); // the text of msgpack-python's exception
      if (lib) assert.ok(exc.message.startsWith(lib[1]), `${b.name}: ${exc.message}`);
      else assert.equal(exc.message, b.message, b.name);
      return true;
    });
  }
});

test('every truncation and single-bit flip of every golden vector: the same verdict as Python', async () => {
  const sink = new Sink();
  for (const g of GOLDEN) sink.feed(g.data, g.session === null ? null : SESSIONS[g.session]); // references
  for (const g of GOLDEN) {
    const session = g.session === null ? SESSIONS.default : SESSIONS[g.session];
    const expected = FIXTURE.verdicts[g.name];
    let truncations = '';
    for (let n = 0; n < g.data.length; n++) {
      truncations += verdict(g.data.subarray(0, n), session);
      sink.feed(g.data.slice(0, n), session);
      sink.feed(g.data.slice(0, n), null);
    }
    assert.equal(truncations, expected.truncations, `${g.name} truncations`);
    let flips = '';
    for (let bit = 0; bit < 8 * g.data.length; bit++) {
      const flipped = g.data.slice();
      flipped[bit >> 3] ^= 1 << (bit & 7);
      flips += verdict(flipped, session);
      sink.feed(flipped, session);
    }
    const first = [...flips].findIndex((c, i) => c !== expected.flips[i]);
    assert.equal(first, -1, `${g.name}: bit ${first} flipped: JS ${flips[first]}, Python ${expected.flips[first]}`);
    assert.ok(flips.includes('0') && /[1-7]/.test(flips), g.name);
  }
  await sink.done();
  assert.ok(sink.decoded > 0 && sink.refused > 0);
});

test('random bytes and mutated messages give a message or a ProtocolError, never another exception', async () => {
  const rand = mulberry32(1);
  const sink = new Sink();
  for (const g of GOLDEN) sink.feed(g.data, g.session === null ? null : SESSIONS[g.session]);
  const tags = [...Object.values(MessageType).map((t) => (WIRE_VERSION << 4) | t), 0x00, 0x16, 0x17, 0x2f, 0x3a,
    0x80, 0x85, 0xff]; // this version's tags, other versions', compact DELTA first bytes
  const sizes = [0, 1, 2, 3, 4, 7, 8, 13, 20, 52, 64, 200, 1300];
  const sessions = [SESSIONS.default, SESSIONS.k4];
  for (let i = 0; i < 4000; i++) {
    const n = sizes[Math.floor(rand() * sizes.length)];
    let body = Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
    if (i % 2) body = Uint8Array.from([tags[i % tags.length], ...body]);
    sink.feed(body, sessions[i % 2]);
  }
  const specials = [
    new Uint8Array(MAX_MESSAGE_BYTES + 1).fill(0x21),
    Uint8Array.from([0x21, ...new Array(2000).fill(0x91)]), // deeply nested arrays
    Uint8Array.from([0x21, 0xdd, 0xff, 0xff, 0xff, 0xff]), // an array claiming 4 G elements
    Uint8Array.from([0x21, 0xc6, 0xff, 0xff, 0xff, 0xff]), // a bin claiming 4 GiB
    Uint8Array.from([0x21, 0xdb, 0xff, 0xff, 0xff, 0xff]), // a str claiming 4 GiB
    Uint8Array.from([0x24, 0x99, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, ...new Array(8).fill(0)]),
    Uint8Array.from([0x23, 0x92, 0xc3, 0xc0]), // nil
    Uint8Array.from([0x23, 0x92, 0xc3, 0x80]), // a map
    Uint8Array.from([0x23, 0x92, 0xc3, 0xd4, 0x01, 0x00]), // an ext
    Uint8Array.from([0x23, 0x92, 0xc3, 0xc2, 0xc2]), // a trailing byte
    new Uint8Array(MAX_KEYPOINTS_BYTES + 1).fill(0x80), // a compact DELTA over its limit
    Uint8Array.from([0x80]), // a compact DELTA without a payload
    Uint8Array.from([0x27, 0, 1, 0x40]), // a tagged DELTA (version 1's layout)
  ];
  for (const data of specials) {
    assert.equal(verdict(data, SESSIONS.default) !== '0', true);
    sink.feed(data, null);
  }
  const msgpackVectors = GOLDEN.filter((g) => [1, 2, 3, 4, 5].includes(g.expected.type));
  assert.equal(msgpackVectors.length, 8);
  for (let i = 0; i < 3000; i++) {
    const mutated = msgpackVectors[i % msgpackVectors.length].data.slice();
    const times = 1 + Math.floor(rand() * 3);
    for (let j = 0; j < times; j++) mutated[1 + Math.floor(rand() * (mutated.length - 1))] = Math.floor(rand() * 256);
    sink.feed(mutated, null);
  }
  await sink.done();
  assert.ok(sink.refused > 3000);
});

test('msgpack details: int encodings, float32, strict UTF-8, a BOM kept, bools never ints', () => {
  const refresh = (a, b) => Uint8Array.from([0x23, 0x92, a, b]);
  assert.deepEqual(decodeMessage(refresh(0xc3, 0xc2)), { type: 3, wantKey: true, wantSource: false });
  assert.throws(() => decodeMessage(refresh(0x01, 0xc2)), /Refresh.want_key must be a bool, got int/);
  const error = (codeBytes, text) => Uint8Array.from([0x22, 0x92, ...codeBytes, 0xa0 | text.length, ...text]);
  for (const code of [[0x03], [0xcc, 0x03], [0xcd, 0, 3], [0xce, 0, 0, 0, 3], [0xcf, 0, 0, 0, 0, 0, 0, 0, 3],
    [0xd0, 3], [0xd1, 0, 3], [0xd2, 0, 0, 0, 3], [0xd3, 0, 0, 0, 0, 0, 0, 0, 3]]) {
    assert.deepEqual(decodeMessage(error(code, [0x68, 0x69])), { type: 2, code: 3, text: 'hi' });
  }
  assert.throws(() => decodeMessage(error([0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfd], [])), /Error.code=-3 out of range/);
  assert.throws(() => decodeMessage(error([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], [])),
    /Error.code=18446744073709551615 out of range \[0, 255\]/);
  assert.throws(() => decodeMessage(error([0x08], [])), /Error.code=8 is not a known error code/);
  assert.throws(() => decodeMessage(error([0x03], [0xc3, 0x28])), /malformed msgpack body/); // invalid UTF-8
  assert.throws(() => decodeMessage(error([0x03], [0xed, 0xa0, 0x80])), /malformed msgpack body/); // a surrogate
  assert.equal(decodeMessage(error([0x03], [0xef, 0xbb, 0xbf, 0x41])).text, '\ufeffA');
  const stats = Uint8Array.from([0x24, 0x99, 1, 2, 3, 4, 5, 6, 7, 0xca, 0x41, 0x48, 0, 0, 0xcb, 0x40, 0x54, 0, 0, 0, 0, 0, 0]);
  assert.equal(decodeMessage(stats).jitterMs, 12.5); // float32 accepted
  assert.throws(() => decodeMessage(Uint8Array.from([...stats.slice(0, 9), 0x0c, ...stats.slice(14)])),
    /Stats.jitter_ms must be a float, got int/);
  const text200 = '\u{1F600}'.repeat(200);
  assert.equal(decodeMessage(encodeError({ code: 7, text: text200 })).text, text200); // 200 characters, 400 code units
});

test('framing: version, type, sizes, keypoints without a session, non-bytes', () => {
  assert.equal(WIRE_VERSION, 2);
  assert.equal(DATA_CHANNEL_PROTOCOL, 'avfr/2');
  const hello = GOLDEN.find((g) => g.name === 'hello').data;
  assert.equal(hello[0], 0x21);
  for (const [tag, version] of [[0x31, 3], [0x11, 1], [0x41, 4]]) {
    const other = Uint8Array.from([tag, ...hello.subarray(1)]);
    assert.throws(() => decodeMessage(other), (e) => e.code === ErrorCode.UNSUPPORTED_VERSION
      && e.message === `wire version ${version} not supported (this build speaks 2)`);
  }
  const key = GOLDEN.find((g) => g.name === 'keypoints_key').data;
  assert.throws(() => decodeMessage(key), (e) => e.code === ErrorCode.UNEXPECTED_MESSAGE
    && e.message === 'KEYPOINTS_KEY before a Hello was accepted');
  assert.throws(() => decodeMessage('hello'), (e) => e instanceof ProtocolError && /must be bytes, got str/.test(e.message));
  assert.throws(() => decodeMessage(new Uint8Array(17).fill(0x23)), /REFRESH message is 17 bytes, limit 16/);
  for (const version of [0, 1, 3, 7]) { // the version before anything else, the overall size limit included
    const oversized = new Uint8Array(MAX_MESSAGE_BYTES + 1);
    oversized[0] = (version << 4) | 1;
    assert.throws(() => parseTag(oversized), (e) => e.code === ErrorCode.UNSUPPORTED_VERSION
      && e.message === `wire version ${version} not supported (this build speaks 2)`);
  }
  const oversized = new Uint8Array(MAX_MESSAGE_BYTES + 1).fill(0x21); // this version: the size
  assert.throws(() => parseTag(oversized), (e) => e.code === ErrorCode.MALFORMED
    && e.message === `message is ${MAX_MESSAGE_BYTES + 1} bytes, limit ${MAX_MESSAGE_BYTES}`);
  assert.equal(parseTag(new DataView(key.buffer, key.byteOffset, key.length)), MessageType.KEYPOINTS_KEY);
});

test('the frozen version 1 vectors are refused by version, as Python refuses them', () => {
  const onDisk = readdirSync(FROZEN_V1).filter((f) => f.endsWith('.bin')).map((f) => f.slice(0, -4)).sort();
  assert.equal(onDisk.length, 12);
  assert.deepEqual(onDisk, FIXTURE.frozen.map((f) => f.name));
  for (const f of FIXTURE.frozen) {
    const data = new Uint8Array(readFileSync(new URL(`${f.name}.bin`, FROZEN_V1)));
    if (f.name === 'keypoints_delta') assert.equal(data[0], 0x17); // a v1 tag, not a compact delta either
    assert.equal(f.code, ErrorCode.UNSUPPORTED_VERSION);
    assert.equal(f.message, 'wire version 1 not supported (this build speaks 2)');
    for (const session of [SESSIONS.default, null]) {
      assert.throws(() => decodeMessage(data, session), (e) => e instanceof ProtocolError && e.code === f.code
        && e.message === f.message, f.name);
    }
  }
});

test('a KEYPOINTS_DELTA has no tag byte: bit 7 of its first byte, then its seq\'s 7 low bits', () => {
  const delta = GOLDEN.find((g) => g.name === 'keypoints_delta').data;
  assert.equal(delta[0], COMPACT_DELTA_BIT | 1); // seq 1
  assert.equal(parseTag(delta), MessageType.KEYPOINTS_DELTA);
  const tagged = Uint8Array.from([(WIRE_VERSION << 4) | MessageType.KEYPOINTS_DELTA, 0, 1, ...delta.subarray(1)]);
  for (const session of [SESSIONS.default, null]) {
    assert.throws(() => decodeMessage(tagged, session), (e) => e.code === ErrorCode.MALFORMED
      && e.message === 'a KEYPOINTS_DELTA has no tag byte in this version (its first byte has bit 7 set)');
  }
  assert.throws(() => makeTag(MessageType.KEYPOINTS_DELTA), /not a tag/);
  assert.equal(makeTag(MessageType.KEYPOINTS_KEY), 0x26);
  for (const n of [MAX_KEYPOINTS_BYTES + 1, MAX_MESSAGE_BYTES + 1]) { // its own limit, before the overall one
    const long = new Uint8Array(n).fill(0xff);
    assert.throws(() => parseTag(long), (e) => e.code === ErrorCode.MALFORMED
      && e.message === `KEYPOINTS_DELTA message is ${n} bytes, limit ${MAX_KEYPOINTS_BYTES}`);
  }
  assert.throws(() => decodeMessage(Uint8Array.of(0x80), SESSIONS.default), (e) => e.code === ErrorCode.MALFORMED
    && e.message === 'KEYPOINTS_DELTA is 1 bytes, minimum 2');
  assert.throws(() => decodeMessage(delta), (e) => e.code === ErrorCode.UNEXPECTED_MESSAGE
    && e.message === 'KEYPOINTS_DELTA before a Hello was accepted');
});

test('extendSeq: the uint16 seq nearest the expected one, within -64..+63, across the wrap', () => {
  for (const [lowBits, near, seq] of [[5, 5, 5], [5, 0, 5], [127, 0, 65535], [64, 0, 65472], [63, 0, 63],
    [0, 65535, 0], [100, 65530, 65508], [70, 65530, 65478], [69, 65530, 65477], [0, 65500, 0]]) {
    assert.equal(extendSeq(lowBits, near), seq, `extendSeq(${lowBits}, ${near})`);
  }
  for (let near = 0; near < 65536; near++) { // every seq within the window comes back from its 7 bits
    for (let step = -64; step < 64; step++) {
      const seq = (near + step) & 0xffff;
      if (extendSeq(seq & 0x7f, near) !== seq) assert.fail(`near ${near}, step ${step}`);
    }
  }
});

test('a DELTA decodes next to the expected seq: 63 frames after it .. 64 before, aliased beyond', () => {
  const golden = GOLDEN.find((g) => g.name === 'keypoints_delta');
  const session = SESSIONS[golden.session];
  const payload = golden.data.subarray(1); // distance 2, the same for any seq: the payload does not hold it
  for (const seq of [0, 1, 127, 128, 40000, 65535]) {
    const data = Uint8Array.from([COMPACT_DELTA_BIT | (seq & 0x7f), ...payload]);
    const want = { ...golden.expected, seq, refSeq: (seq - 2) & 0xffff };
    for (const near of [seq, (seq - 63) & 0xffff, (seq + 64) & 0xffff]) {
      assert.deepEqual(toJson(decodeMessage(data, session, near)), want, `seq ${seq} near ${near}`);
    }
    assert.equal(decodeMessage(data, session, (seq - 64) & 0xffff).seq, (seq - 128) & 0xffff); // aliased
    assert.equal(decodeMessage(data, session, seq + 65536).seq, seq); // nearSeq is taken mod 2**16
  }
  assert.equal(decodeMessage(golden.data, session).seq, 1); // nearSeq defaults to 0
});

test('the recorded call: every message decodes as Python decoded it', () => {
  const session = sessionFromHello(decodeMessage(Buffer.from(STREAM.messages[0].data, 'base64')));
  assert.deepEqual({ ...session, tsStep90k: undefined }, { ...STREAM.session, tsStep90k: undefined });
  assert.equal(session.tsStep90k, 3600);
  let nearSeq = 0; // the seq after the previous keypoint packet's, as make_stream.py decodes
  const deltaSeqs = [];
  STREAM.messages.forEach((m, i) => {
    const msg = decodeMessage(new Uint8Array(Buffer.from(m.data, 'base64')), session, nearSeq);
    if (msg.type === MessageType.KEYPOINTS_KEY || msg.type === MessageType.KEYPOINTS_DELTA) nearSeq = (msg.seq + 1) & 0xffff;
    if (msg.type === MessageType.KEYPOINTS_DELTA) deltaSeqs.push(msg.seq);
    assert.deepEqual(toJson(msg, false), STREAM.decoded[i], `message ${i} on ${m.channel}`);
    const ok = m.channel === 'avfr-control' ? msg.type <= 5 || msg.type === MessageType.KEYPOINTS_KEY : msg.type >= 6;
    assert.ok(ok, `message ${i}: type ${msg.type} on ${m.channel}`);
  });
  assert.ok(deltaSeqs.includes(65535) && deltaSeqs.includes(1), 'DELTA seqs on both sides of the wrap');
});

test('encoders: REFRESH, STATS and ERROR bytes equal Python\'s', () => {
  for (const { msg, hex: expected } of FIXTURE.encoders.refresh) assert.equal(hex(encodeRefresh(msg)), expected);
  assert.equal(hex(encodeRefresh()), FIXTURE.encoders.refresh.find((r) => r.msg.wantKey && !r.msg.wantSource).hex);
  for (const { msg, hex: expected } of FIXTURE.encoders.stats) {
    assert.equal(hex(encodeStats(msg)), expected, JSON.stringify(msg));
    assert.deepEqual(decodeMessage(encodeStats(msg)), { type: 4, ...msg });
  }
  for (const { msg, hex: expected } of FIXTURE.encoders.error) {
    assert.equal(hex(encodeError(msg)), expected, msg.text);
    assert.deepEqual(decodeMessage(encodeError(msg)), { type: 2, ...msg });
  }
  for (const { message, code, hex: expected } of FIXTURE.encoders.errorFromException) {
    assert.equal(hex(encodeError(errorFromException(new ProtocolError(message, code)))), expected);
  }
  assert.equal(errorFromException(new TypeError('x')).code, ErrorCode.INTERNAL);
  assert.throws(() => encodeStats({ received: -1 }), ProtocolError);
  assert.throws(() => encodeStats({ received: 2 ** 32 }), ProtocolError);
  assert.throws(() => encodeStats({ jitterMs: NaN }), ProtocolError);
  assert.throws(() => encodeError({ code: 8, text: '' }), ProtocolError);
  assert.throws(() => encodeError({ code: 1, text: 'x'.repeat(201) }), ProtocolError);
  assert.throws(() => encodeError({ code: 1, text: '\ud800' }), ProtocolError);
  assert.throws(() => encodeRefresh({ wantKey: 1 }), ProtocolError);
});

test('validateHello: the Python answers', () => {
  for (const c of FIXTURE.validateHello) {
    const hello = decodeMessage(GOLDEN.find((g) => g.name === c.hello).data);
    assert.deepEqual(validateHello(hello, makeCapabilities(c.caps)), c.expected, JSON.stringify(c.caps));
  }
});

test('makeSession: defaults and checks', () => {
  assert.deepEqual(makeSession(), SESSIONS.default);
  assert.equal(makeSession({ fps: 30 }).tsStep90k, 3000);
  for (const bad of [{ fps: 7 }, { numKp: 0 }, { kpBits: 17 }, { jacAbsMax: 0.1 }, { audio: { channels: 3 } }]) {
    assert.throws(() => makeSession(bad), ProtocolError, JSON.stringify(bad));
  }
});
