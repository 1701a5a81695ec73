// The receiver's two graphs in onnxruntime-web: the identity encoder once per source image (receiver_source),
// then one frame per keypoint set (receiver_frame); the browser twin of avfr.codec.runtime.ReceiverModel.
//
// The graphs come from the page's server with the ONNX manifest (models/<name>.json); each file's sha256 is
// checked against the manifest before onnxruntime sees it; the caller's Hello must name the manifest's detector
// (HELLO.model_id) and its sender graph's sha256 (HELLO.weights_sha256), the keypoints these graphs were trained on.

export const SOURCE_OUTPUTS = ["kp_source", "jac_source", "src64", "src128", "source_out", "feat64", "skip128",
  "skip256"];
export const HOLD_INPUT = "held_frames"; // (1, 1) input of graphs trained with held keypoints
const SIZE = 256;

/** Lowercase hex sha256 of bytes (WebCrypto). */
export async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function fetchBytes(url) {
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
  return new Uint8Array(await resp.arrayBuffer());
}

/** The generator at the receiver, on onnxruntime-web. */
export class ReceiverGraphs {
  /**
   * @param {object} ort the onnxruntime-web module
   * @param {object} sourceSession receiver_source session
   * @param {object} frameSession receiver_frame session
   * @param {{name: string, numKp: number, sha256: string, detector: string, detectorSha256: string}} info the
   *   manifest's generator name, K, the manifest's sha256, the detector's name and its sender graph's sha256
   */
  constructor(ort, sourceSession, frameSession, info) {
    this.ort = ort;
    this.sourceSession = sourceSession;
    this.frameSession = frameSession;
    this.info = info;
    this.cache = null; // receiver_source outputs by name
  }

  /**
   * Fetch the manifest and both receiver graphs, verify their hashes, open onnxruntime-web sessions.
   * @param {object} ort the onnxruntime-web module (its env already set: wasmPaths, numThreads)
   * @param {string} manifestUrl e.g. "/models/avfr-small.json"
   * @param {string[]} providers e.g. ["wasm"] or ["webgpu", "wasm"]
   * @returns {Promise<ReceiverGraphs>}
   */
  static async create(ort, manifestUrl, providers = ["wasm"]) {
    const manifestBytes = await fetchBytes(manifestUrl);
    const manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
    if (manifest.format !== "avfr-onnx/1") throw new Error(`${manifestUrl}: not an avfr ONNX manifest`);
    const base = new URL(".", new URL(manifestUrl, location.href));
    const sessions = [];
    for (const name of ["receiver_source", "receiver_frame"]) {
      const graph = manifest.graphs[name];
      const bytes = await fetchBytes(new URL(graph.file, base));
      const digest = await sha256Hex(bytes);
      if (digest !== graph.sha256) throw new Error(`${graph.file}: sha256 ${digest}, manifest says ${graph.sha256}`);
      sessions.push(await ort.InferenceSession.create(bytes, { executionProviders: providers,
        graphOptimizationLevel: "all" }));
    }
    // The Hello names the keypoint detector (the sender graph), not this generator: see avfr/proto/SPEC.md.
    const info = { name: manifest.name, numKp: manifest.num_kp, sha256: await sha256Hex(manifestBytes),
      detector: manifest.detector ?? manifest.name, detectorSha256: manifest.graphs.sender.sha256 };
    return new ReceiverGraphs(ort, sessions[0], sessions[1], info);
  }

  get hasSource() { return this.cache !== null; }

  /** Source keypoints {kp: Float32Array(K*2), jac: Float32Array(K*4)} of the cached source. */
  get sourceKeypoints() {
    if (!this.cache) throw new Error("setSource() has not been called");
    return { kp: this.cache.kp_source.data, jac: this.cache.jac_source.data };
  }

  /**
   * Run the identity encoder once for a new source image.
   * @param {Float32Array} source5 (5 * 256 * 256) in [0, 1] (priors.fiveChannel)
   */
  async setSource(source5) {
    const feed = { source: new this.ort.Tensor("float32", source5, [1, 5, SIZE, SIZE]) };
    const out = await this.sourceSession.run(feed);
    if (this.cache) for (const t of Object.values(this.cache)) t.dispose?.();
    this.cache = Object.fromEntries(SOURCE_OUTPUTS.map((n) => [n, out[n]]));
  }

  /**
   * Render one frame.
   * @param {Float32Array} kp (K * 2) driving keypoints in [-1, 1]
   * @param {Float32Array} jac (K * 4) driving jacobians, row-major 2x2
   * @param {Float32Array} mel (80 * 19) log-mel window
   * @param {number} heldFrames frames the keypoints were held for (graphs without the input ignore it)
   * @returns {Promise<Float32Array>} (3 * 256 * 256) in (0, 1), channel-first RGB
   */
  async frame(kp, jac, mel, heldFrames = 0) {
    if (!this.cache) throw new Error("setSource() has not been called");
    const k = this.info.numKp;
    const T = this.ort.Tensor;
    const feed = { ...this.cache, kp_driving: new T("float32", kp, [1, k, 2]),
      jac_driving: new T("float32", jac, [1, k, 2, 2]), mel: new T("float32", mel, [1, 1, 80, 19]) };
    if (this.frameSession.inputNames.includes(HOLD_INPUT)) {
      feed[HOLD_INPUT] = new T("float32", Float32Array.of(Math.max(0, heldFrames | 0)), [1, 1]);
    }
    const out = await this.frameSession.run(feed);
    const frame = out.frame;
    const data = frame.data.slice();
    frame.dispose?.();
    return data;
  }
}

/**
 * Channel-first float RGB in (0, 1) -> canvas pixels, rounded as the Python receiver's uint8 frame
 * (clip(x * 255 + 0.5) then truncation).
 * @param {Float32Array} chw (3 * 256 * 256)
 * @param {Uint8ClampedArray} rgba (256 * 256 * 4) written in place
 */
export function toRgba(chw, rgba) {
  const n = SIZE * SIZE;
  for (let i = 0; i < n; i++) {
    rgba[4 * i] = Math.floor(Math.min(Math.max(chw[i] * 255 + 0.5, 0), 255));
    rgba[4 * i + 1] = Math.floor(Math.min(Math.max(chw[n + i] * 255 + 0.5, 0), 255));
    rgba[4 * i + 2] = Math.floor(Math.min(Math.max(chw[2 * n + i] * 255 + 0.5, 0), 255));
    rgba[4 * i + 3] = 255;
  }
}

/** ReceiverGraphs' API, run in a module worker (render_worker.mjs): the page's main thread stays free. */
export class WorkerGraphs {
  constructor(worker, info, threads) {
    this.worker = worker;
    this.info = info;
    this.threads = threads;
    this._source = null; // {kp, jac} of the cached source
    this._pending = new Map();
    this._nextId = 1;
    worker.onmessage = (ev) => {
      const { id, error, ...rest } = ev.data;
      const p = this._pending.get(id);
      if (!p) return;
      this._pending.delete(id);
      if (error) p.reject(new Error(error));
      else p.resolve(rest);
    };
  }

  /**
   * Start the worker and load the graphs there.
   * @param {string} manifestUrl e.g. "/models/manifest.json"
   * @param {number} threads onnxruntime-web threads
   * @param {string[]} providers ["webgpu", "wasm"]: WebGPU where the browser has an adapter, else WASM
   */
  static async create(manifestUrl, threads, providers = ["webgpu", "wasm"]) {
    const worker = new Worker(new URL("./render_worker.mjs", import.meta.url), { type: "module" });
    const probe = new WorkerGraphs(worker, null, threads);
    const { info, threads: used, providers: running } = await probe._call({ op: "init", manifestUrl, threads,
      providers });
    probe.info = info;
    probe.threads = used;
    probe.providers = running;
    return probe;
  }

  _call(msg, transfer = []) {
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, ...msg }, transfer);
    });
  }

  get hasSource() { return this._source !== null; }

  get sourceKeypoints() {
    if (!this._source) throw new Error("setSource() has not been called");
    return this._source;
  }

  /** @param {Float32Array} source5 (5 * 256 * 256), transferred to the worker */
  async setSource(source5) {
    this._source = await this._call({ op: "source", source5 }, [source5.buffer]);
  }

  /** Same as ReceiverGraphs.frame; also sets `lastMs` (the worker's run time). */
  async frame(kp, jac, mel, heldFrames = 0) {
    const { chw, ms } = await this._call({ op: "frame", kp, jac, mel, heldFrames });
    this.lastMs = ms;
    return chw;
  }

  terminate() { this.worker.terminate(); }
}
