// Test helper: the binary fixtures written by tests/data/web/make_mel.py (a .json of array shapes + one .bin).
import { readFileSync } from 'node:fs';

export const FIXTURES = new URL('../../tests/data/web/', import.meta.url);

/** Read a make_mel.py fixture: {meta, get(name) -> typed array (little-endian host assumed)}. */
export function loadFixture(jsonName) {
  const meta = JSON.parse(readFileSync(new URL(jsonName, FIXTURES), 'utf8'));
  const raw = readFileSync(new URL(meta.bin, FIXTURES));
  const bytes = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength); // aligned copy
  const types = { float32: Float32Array, float64: Float64Array, int16: Int16Array };
  const get = (name) => {
    const { dtype, shape, offset } = meta.arrays[name];
    return new types[dtype](bytes, offset, shape.reduce((a, b) => a * b, 1));
  };
  return { meta, get };
}
