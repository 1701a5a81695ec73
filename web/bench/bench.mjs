// The browser receiver's per-frame time (benchmarks/bench_web.py): receiver_frame in onnxruntime-web, the
// mel window and the canvas pixels, on a source set once, in this page's main thread or in the render worker.
// window.runBench({threads, frames, worker}) -> {frameMs: [...], melMs, rgbaMs, sourceMs, loadMs, isolated}.
import { logMelWindow } from "/src/mel.mjs";
import { ReceiverGraphs, WorkerGraphs, toRgba } from "/src/render.mjs";

window.runBench = async ({ threads, frames, worker, providers = ["wasm"] }) => {
  const t0 = performance.now();
  let graphs;
  if (worker) {
    graphs = await WorkerGraphs.create("/models/manifest.json", threads, providers);
  } else {
    const ort = await import("/vendor/ort/ort.wasm.min.mjs");
    ort.env.wasm.wasmPaths = "/vendor/ort/";
    ort.env.wasm.numThreads = threads;
    graphs = await ReceiverGraphs.create(ort, "/models/manifest.json", ["wasm"]);
  }
  const loadMs = performance.now() - t0;
  const source = new Float32Array(5 * 256 * 256);
  for (let i = 0; i < source.length; i++) source[i] = ((i * 2654435761) % 1000) / 1000; // a fixed pattern
  const t1 = performance.now();
  await graphs.setSource(source);
  const sourceMs = performance.now() - t1;
  const k = graphs.info.numKp;
  const pcm = new Float32Array(3200).map((_, i) => 0.3 * Math.sin(i / 7));
  const rgba = new Uint8ClampedArray(256 * 256 * 4);
  const frameMs = [], melMs = [], rgbaMs = [];
  for (let n = 0; n < frames; n++) {
    const kp = new Float32Array(2 * k).map((_, i) => 0.5 * Math.sin(n / 10 + i));
    const jac = new Float32Array(4 * k).map((_, i) => (i % 4 === 0 || i % 4 === 3 ? 1 : 0));
    const a = performance.now();
    const mel = logMelWindow(pcm);
    const b = performance.now();
    const chw = await graphs.frame(kp, jac, mel, 0);
    const c = performance.now();
    toRgba(chw, rgba);
    const d = performance.now();
    melMs.push(b - a); frameMs.push(d - a); rgbaMs.push(d - c);
  }
  if (worker) graphs.terminate();
  return { frameMs, melMs, rgbaMs, sourceMs, loadMs, isolated: globalThis.crossOriginIsolated,
    providers: graphs.providers ?? ["wasm"] };
};
window.benchReady = true;
