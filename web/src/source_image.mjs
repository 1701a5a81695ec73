// The caller's source image in the browser: bytes from the wire -> 256 x 256 RGBA pixels, as
// avfr.codec.runtime.decode_source_image does (centre crop to a square, then OpenCV's resize: area when
// shrinking, bicubic when enlarging, e.g. the sender's 96 px drift refreshes).
//
// The bytes have passed the header check of source.mjs (format, size <= 1024 px) before they get here; the
// browser's own decoder (libwebp in Chromium) decodes them, without colour management or premultiplication.

export const FRAME_SIZE = 256;
const MIME = { webp: "image/webp", png: "image/png", jpeg: "image/jpeg" };

/**
 * Decode a source image to RGBA at 256 x 256.
 * @param {Uint8Array} bytes the encoded image (its header already checked)
 * @param {string} format "webp", "png" or "jpeg"
 * @param {object} cv opencv.js (for the resize)
 * @returns {Promise<Uint8ClampedArray>} (256 * 256 * 4) RGBA, alpha 255
 * @throws {Error} the browser cannot decode the bytes
 */
export async function decodeSourceImage(bytes, format, cv) {
  const type = MIME[format];
  if (!type) throw new Error(`source image format ${format} is not decoded here`);
  const bitmap = await createImageBitmap(new Blob([bytes], { type }), {
    colorSpaceConversion: "none", premultiplyAlpha: "none", imageOrientation: "from-image" });
  try {
    const side = Math.min(bitmap.width, bitmap.height);
    const x0 = Math.floor((bitmap.width - side) / 2), y0 = Math.floor((bitmap.height - side) / 2);
    const canvas = new OffscreenCanvas(side, side);
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, x0, y0, side, side, 0, 0, side, side);
    const rgba = ctx.getImageData(0, 0, side, side).data;
    for (let i = 3; i < rgba.length; i += 4) rgba[i] = 255; // an alpha channel plays no part (cv2 drops it)
    if (side === FRAME_SIZE) return rgba;
    return resize(cv, rgba, side, side > FRAME_SIZE ? cv.INTER_AREA : cv.INTER_CUBIC);
  } finally {
    bitmap.close();
  }
}

/** OpenCV resize of square RGBA pixels to 256 x 256 (the same code as the Python receiver's cv2). */
function resize(cv, rgba, side, interpolation) {
  const src = cv.matFromArray(side, side, cv.CV_8UC4, rgba);
  const dst = new cv.Mat();
  try {
    cv.resize(src, dst, new cv.Size(FRAME_SIZE, FRAME_SIZE), 0, 0, interpolation);
    const out = new Uint8ClampedArray(dst.data);
    for (let i = 3; i < out.length; i += 4) out[i] = 255;
    return out;
  } finally {
    src.delete();
    dst.delete();
  }
}
