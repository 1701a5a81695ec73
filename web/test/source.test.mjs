// web/src/source.mjs: SourceAssembler (the rules of avfr.proto.source.SourceAssembler) on the real call's
// and the golden chunks, and sourceImageSize against Python's source_image_size (fixtures: make_stream.py).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { SourceAssembler, sha256, sourceImageSize } from '../src/source.mjs';
import { MessageType, ProtocolError, WIRE_VERSION, decodeMessage, parseTag } from '../src/wire.mjs';

const DATA = new URL('../../tests/data/', import.meta.url);
const STREAM = JSON.parse(readFileSync(new URL('web/stream_grid_lwbsza.json', DATA), 'utf8'));
const IMAGES = JSON.parse(readFileSync(new URL('web/source_images.json', DATA), 'utf8'));
const sha = (u8) => new Uint8Array(createHash('sha256').update(u8).digest());
const hex = (u8) => Buffer.from(u8).toString('hex');

/** The chunks split_source_image makes of `data`. */
function chunksOf(imageId, data, chunkBytes = 1024, format = 'webp') {
  const count = Math.ceil(data.length / chunkBytes);
  return Array.from({ length: count }, (_, index) => ({
    type: MessageType.SOURCE_CHUNK, imageId, format, totalBytes: data.length, sha256: sha(data), chunkBytes,
    index, count, payload: data.slice(index * chunkBytes, (index + 1) * chunkBytes),
  }));
}

const image = (n, seed = 0) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7 + (i >> 8)) & 0xff);

test('the recorded call: both source images assemble, sha256 and size as in Python', async () => {
  const assembler = new SourceAssembler();
  const done = [];
  for (const [i, m] of STREAM.messages.entries()) {
    const data = new Uint8Array(Buffer.from(m.data, 'base64'));
    if (parseTag(data) !== MessageType.SOURCE_CHUNK) continue;
    const img = await assembler.push(decodeMessage(data), 0.001 * i);
    if (img !== null) done.push({ img, i });
  }
  assert.equal(done.length, STREAM.images.length);
  assert.equal(done.length, 2);
  done.forEach(({ img, i }, n) => {
    const want = STREAM.images[n];
    assert.equal(img.imageId, want.imageId);
    assert.equal(img.format, want.format);
    assert.equal(img.data.length, want.bytes);
    assert.equal(hex(sha(img.data)), want.sha256);
    assert.equal(i, want.completedBy);
    assert.deepEqual(sourceImageSize(img.data, img.format), { width: want.width, height: want.height });
  });
  assert.deepEqual(assembler.pendingIds, []);
});

test('the golden chunks in reverse order, duplicates ignored', async () => {
  const chunks = ['source_chunk_0', 'source_chunk_1']
    .map((n) => decodeMessage(readFileSync(new URL(`proto/v${WIRE_VERSION}/${n}.bin`, DATA))));
  const expected = new Uint8Array(1284);
  for (let i = 0; i < 1280; i++) expected[i] = i & 0xff;
  expected.set(Buffer.from('avfr'), 1280);
  const a = new SourceAssembler();
  assert.equal(await a.push(chunks[1], 0), null);
  assert.equal(await a.push(chunks[1], 0.1), null); // same bytes again
  assert.deepEqual(a.pendingIds, [7]);
  const img = await a.push(chunks[0], 0.2);
  assert.deepEqual(img, { imageId: 7, format: 'webp', data: expected });
  assert.equal(await a.push(chunks[0], 0.3), null); // a chunk of a completed image
  assert.deepEqual(a.pendingIds, []);
  assert.deepEqual(await sha256(expected), chunks[0].sha256);
});

test('pushes without awaiting in between are handled in order', async () => {
  const data = image(3000);
  const [c0, c1, c2] = chunksOf(3, data);
  const a = new SourceAssembler();
  const results = await Promise.all([a.push(c2, 0), a.push(c0, 0), a.push(c1, 0), a.push(c1, 0), a.push(c0, 0)]);
  assert.deepEqual(results.map((r) => (r === null ? null : r.imageId)), [null, null, 3, null, null]);
  assert.deepEqual(results[2].data, data);
});

test('conflicting chunks and a wrong sha256 drop the image with a ProtocolError', async () => {
  const data = image(2500);
  const chunks = chunksOf(1, data);
  const a = new SourceAssembler();
  await a.push(chunks[0], 0);
  const other = { ...chunks[0], payload: chunks[0].payload.map((v) => v ^ 1) };
  await assert.rejects(a.push(other, 0), (e) => e instanceof ProtocolError
    && e.message === 'source image 1: chunk 0 re-sent with other bytes');
  assert.deepEqual(a.pendingIds, []);
  await a.push(chunks[0], 0);
  await assert.rejects(a.push({ ...chunks[1], totalBytes: 2600 }, 0),
    /source image 1: chunk 1 disagrees with earlier chunks/);
  assert.deepEqual(a.pendingIds, []);
  const wrong = chunksOf(2, data).map((c) => ({ ...c, sha256: sha(image(10)) }));
  for (const c of wrong.slice(0, -1)) assert.equal(await a.push(c, 0), null);
  await assert.rejects(a.push(wrong.at(-1), 0), /source image 2: sha256 of the assembled bytes does not match/);
  assert.equal(await a.push(chunksOf(2, data)[0], 0), null); // the assembler goes on
  await assert.rejects(new SourceAssembler({ maxImageBytes: 2000 }).push(chunks[0], 0),
    /source image 1 is 2500 bytes, limit 2000/);
});

test('timeouts, at most 2 partial images, and newer images supersede older ones', async () => {
  const a = new SourceAssembler();
  const img = (id) => chunksOf(id, image(2100, id));
  await a.push(img(1)[0], 0);
  assert.deepEqual(a.expire(10), []);
  assert.deepEqual(a.expire(10.5), [1]);
  assert.equal(a.timedOut, 1);
  await a.push(img(2)[0], 11);
  await a.push(img(3)[0], 12);
  await a.push(img(4)[0], 13); // evicts 2, the oldest started
  assert.deepEqual(a.pendingIds.sort(), [3, 4]);
  assert.equal(a.timedOut, 2);
  await a.push(img(3)[1], 13.5);
  await a.push(img(4)[1], 14);
  assert.equal((await a.push(img(4)[2], 14)).imageId, 4);
  assert.deepEqual(a.pendingIds, []); // 3 was older: dropped
  assert.equal(await a.push(img(3)[2], 15), null); // older than the newest completed: ignored
  assert.equal(await a.push(img(2)[0], 15), null);
  assert.deepEqual(a.pendingIds, []);
  await a.push(img(5)[0], 20);
  assert.equal(await a.push(img(5)[0], 25), null);
  assert.deepEqual(a.expire(31), [5]); // the last chunk counts, not the duplicate's time
  assert.throws(() => new SourceAssembler({ maxPartialImages: 0 }), RangeError);
});

test('sourceImageSize: Python\'s answer on real files, crafted headers and header bit flips', () => {
  const answer = (data, format) => {
    try {
      const { width, height } = sourceImageSize(data, format);
      return [width, height];
    } catch (exc) {
      assert.ok(exc instanceof ProtocolError, String(exc));
      return exc.message;
    }
  };
  const good = {};
  for (const c of IMAGES.cases) {
    const data = new Uint8Array(Buffer.from(c.data, 'base64'));
    assert.deepEqual(answer(data, c.format), c.expected, c.name);
    good[c.name] = [data, c.format];
  }
  assert.ok(IMAGES.cases.filter((c) => Array.isArray(c.expected)).length >= 8);
  for (const { name, answers } of IMAGES.flips) {
    const [data, format] = good[name];
    answers.forEach((expected, bit) => {
      const flipped = data.slice();
      flipped[bit >> 3] ^= 1 << (bit & 7);
      assert.deepEqual(answer(flipped, format), expected, `${name} bit ${bit}`);
    });
  }
  assert.throws(() => sourceImageSize(new Uint8Array(8), 'constructor'), ProtocolError);
});

test('sourceImageSize: random bytes give a size or a ProtocolError', () => {
  let seed = 7;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const prefixes = { webp: [0x52, 0x49, 0x46, 0x46], png: [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], jpeg: [0xff, 0xd8, 0xff] };
  for (let i = 0; i < 3000; i++) {
    const format = ['webp', 'png', 'jpeg'][i % 3];
    const body = Array.from({ length: Math.floor(rand() * 80) }, () => Math.floor(rand() * 256));
    const data = Uint8Array.from(i % 2 ? [...prefixes[format], ...body] : body);
    try {
      const { width, height } = sourceImageSize(data, format);
      assert.ok(width >= 1 && width <= 1024 && height >= 1 && height <= 1024);
    } catch (exc) {
      assert.ok(exc instanceof ProtocolError, String(exc));
    }
  }
});
