// The source image's structural priors in the browser: the face mesh drawn as an image, and a selfie mask.
//
// The browser twin of avfr.codec.data.PriorExtractor + render_mesh (AVFR-GAN section 3.1), on the same engines:
// mediapipe's face mesh (refined, 478 landmarks, largest of up to 2 faces) and selfie segmentation (model 0),
// from their npm solution packages (wasm + models bundled, nothing downloaded from elsewhere), and OpenCV's own
// antialiased polylines from opencv.js (4.11, the Python receiver's cv2 version). The generator is sensitive to
// how the mesh is drawn (a non-antialiased mesh costs ~27 dB against the Python receiver's frames), so the mesh is
// drawn by the same code, from landmarks in the same fixed point, in the same edge order.
//
// Every image is processed on its own (the face mesh graph is reset before each, as Python's static_image_mode).
// The solution packages are classic scripts that define globals (FaceMesh, SelfieSegmentation, cv); `loadScript`
// adds them to the page once.

import { CONTOURS, CONTOUR_LINE_PX, MESH_LINE_PX, SUBPIXEL_BITS, TESSELATION } from "./mesh_edges.mjs";

export const FRAME_SIZE = 256; // px, side of the source image and its priors
export const NUM_LANDMARKS = 478;

const loaded = new Map(); // url -> Promise<void>

/** Add a classic script to the page once; resolves when it has run. */
function loadScript(url) {
  if (!loaded.has(url)) {
    loaded.set(url, new Promise((resolve, reject) => {
      const el = document.createElement("script");
      el.src = url;
      el.crossOrigin = "anonymous";
      el.onload = () => resolve();
      el.onerror = () => reject(new Error(`could not load ${url}`));
      document.head.appendChild(el);
    }));
  }
  return loaded.get(url);
}

/** opencv.js once its wasm runtime is ready (the global `cv` is the module, or a promise/thenable of it). */
async function openCv(url) {
  await loadScript(url);
  const cv = globalThis.cv;
  if (cv && typeof cv.Mat === "function") return cv;
  if (cv && typeof cv.then === "function") {
    const ready = await new Promise((resolve) => cv.then(resolve));
    globalThis.cv = ready;
    return ready;
  }
  await new Promise((resolve) => { cv.onRuntimeInitialized = resolve; });
  return cv;
}

/** numpy's np.round (half to even) of a float. */
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Draw the face mesh like avfr.codec.data.render_mesh (tesselation 1 px + contours 2 px, antialiased).
 * @param {object} cv opencv.js
 * @param {Float32Array|null} landmarks (478 * 2) pixel x, y, or null for no face
 * @param {number} size output side in px
 * @returns {Uint8Array} (size * size), 0 background, up to 255 on lines
 */
export function renderMesh(cv, landmarks, size = FRAME_SIZE) {
  const out = new Uint8Array(size * size);
  if (landmarks === null) return out;
  if (landmarks.length !== NUM_LANDMARKS * 2) throw new Error(`landmarks must be ${NUM_LANDMARKS} x 2`);
  for (const v of landmarks) if (!Number.isFinite(v)) return out;
  const scale = 1 << SUBPIXEL_BITS;
  const fixed = new Int32Array(landmarks.length); // clamp far-off points, then float32 * 2^bits, round half even
  for (let i = 0; i < landmarks.length; i++) {
    const v = Math.min(Math.max(landmarks[i], Math.fround(-4 * size)), Math.fround(5 * size));
    fixed[i] = roundHalfEven(Math.fround(v * scale));
  }
  const image = cv.Mat.zeros(size, size, cv.CV_8UC1);
  const color = new cv.Scalar(255);
  try {
    for (const [edges, thickness] of [[TESSELATION, MESH_LINE_PX], [CONTOURS, CONTOUR_LINE_PX]]) {
      const segments = new cv.MatVector();
      const mats = [];
      try {
        for (let e = 0; e < edges.length; e += 2) {
          const a = edges[e], b = edges[e + 1];
          const m = cv.matFromArray(2, 1, cv.CV_32SC2, [fixed[2 * a], fixed[2 * a + 1], fixed[2 * b], fixed[2 * b + 1]]);
          mats.push(m);
          segments.push_back(m);
        }
        cv.polylines(image, segments, false, color, thickness, cv.LINE_AA, SUBPIXEL_BITS);
      } finally {
        for (const m of mats) m.delete();
        segments.delete();
      }
    }
    out.set(image.data);
  } finally {
    image.delete();
  }
  return out;
}

/** Area of the bounding box of a face's landmarks [[x, y], ...]. */
function boxArea(points) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const [x, y] of points) {
    x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
  }
  return (x1 - x0) * (y1 - y0);
}

/** mediapipe face mesh + selfie segmentation + opencv.js mesh drawing, one image at a time. */
export class PriorExtractor {
  /**
   * @param {object} faceMesh a ready mediapipe FaceMesh
   * @param {object} segmenter a ready mediapipe SelfieSegmentation
   * @param {object} cv opencv.js
   */
  constructor(faceMesh, segmenter, cv) {
    this.faceMesh = faceMesh;
    this.segmenter = segmenter;
    this.cv = cv;
    this._mesh = null;
    this._mask = null;
    faceMesh.onResults((r) => { this._mesh = r; });
    segmenter.onResults((r) => { this._mask = r; });
    this._canvas = document.createElement("canvas");
    this._canvas.width = FRAME_SIZE;
    this._canvas.height = FRAME_SIZE;
  }

  /**
   * Load the engines from the page's server.
   * @param {{mediapipe: string, opencv: string}} urls folder of the two mediapipe packages, opencv.js file
   * @returns {Promise<PriorExtractor>}
   */
  static async create(urls = { mediapipe: "/vendor/mediapipe/", opencv: "/vendor/opencv/opencv.js" }) {
    await loadScript(`${urls.mediapipe}face_mesh/face_mesh.js`);
    await loadScript(`${urls.mediapipe}selfie_segmentation/selfie_segmentation.js`);
    const faceMesh = new globalThis.FaceMesh({ locateFile: (f) => `${urls.mediapipe}face_mesh/${f}` });
    // CPU inference (as the Python receiver): without a GPU, WebGL inference is software GL and ~10x slower
    faceMesh.setOptions({ maxNumFaces: 2, refineLandmarks: true, minDetectionConfidence: 0.5, selfieMode: false,
      useCpuInference: true });
    const segmenter = new globalThis.SelfieSegmentation({
      locateFile: (f) => `${urls.mediapipe}selfie_segmentation/${f}`,
    });
    segmenter.setOptions({ modelSelection: 0, selfieMode: false, useCpuInference: true });
    // One at a time: the two solution runtimes share emscripten globals while they start.
    await faceMesh.initialize();
    await segmenter.initialize();
    const cv = await openCv(urls.opencv);
    return new PriorExtractor(faceMesh, segmenter, cv);
  }

  /**
   * Priors of one 256 x 256 image.
   * @param {HTMLCanvasElement|ImageBitmap} image the source image, 256 x 256
   * @returns {Promise<{landmarks: Float32Array|null, numFaces: number, mesh: Uint8Array, mask: Uint8Array}>}
   *   landmarks (478 * 2) px of the largest face or null; mesh, mask (256 * 256) uint8 (mask 255 = person)
   */
  async extract(image) {
    this._mesh = null;
    this._mask = null;
    this.faceMesh.reset(); // static-image mode: detect afresh, no tracking from an earlier image
    await this.faceMesh.send({ image });
    await this.segmenter.send({ image });
    const faces = (this._mesh && this._mesh.multiFaceLandmarks) || [];
    let landmarks = null;
    if (faces.length) {
      const points = faces.map((f) => f.map((p) => [Math.fround(p.x * FRAME_SIZE), Math.fround(p.y * FRAME_SIZE)]));
      const largest = points.reduce((best, f) => (boxArea(f) > boxArea(best) ? f : best));
      landmarks = Float32Array.from(largest.flat());
    }
    const ctx = this._canvas.getContext("2d", { willReadFrequently: true });
    ctx.clearRect(0, 0, FRAME_SIZE, FRAME_SIZE);
    ctx.drawImage(this._mask.segmentationMask, 0, 0, FRAME_SIZE, FRAME_SIZE);
    const rgba = ctx.getImageData(0, 0, FRAME_SIZE, FRAME_SIZE).data;
    const mask = new Uint8Array(FRAME_SIZE * FRAME_SIZE);
    for (let i = 0; i < mask.length; i++) mask[i] = rgba[4 * i + 3]; // the mask's probability is its alpha
    return { landmarks, numFaces: faces.length, mesh: renderMesh(this.cv, landmarks), mask };
  }

  /** Release the mediapipe graphs. */
  async close() {
    await Promise.all([this.faceMesh.close(), this.segmenter.close()]);
  }
}

/**
 * The generator's source input: concat(RGB, mesh, mask) / 255, channel-first.
 * @param {Uint8ClampedArray} rgba (256 * 256 * 4) the source image's pixels
 * @param {Uint8Array} mesh (256 * 256)
 * @param {Uint8Array} mask (256 * 256)
 * @returns {Float32Array} (5 * 256 * 256) in [0, 1], channels R, G, B, mesh, mask
 */
export function fiveChannel(rgba, mesh, mask) {
  const n = FRAME_SIZE * FRAME_SIZE;
  const out = new Float32Array(5 * n);
  const k = Math.fround(1 / 255);
  for (let i = 0; i < n; i++) {
    out[i] = Math.fround(rgba[4 * i] * k);
    out[n + i] = Math.fround(rgba[4 * i + 1] * k);
    out[2 * n + i] = Math.fround(rgba[4 * i + 2] * k);
    out[3 * n + i] = Math.fround(mesh[i] * k);
    out[4 * n + i] = Math.fround(mask[i] * k);
  }
  return out;
}
