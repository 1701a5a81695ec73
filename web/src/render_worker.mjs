// A module worker that owns the receiver graphs (render.mjs ReceiverGraphs), so that onnxruntime-web's ~0.1 s
// per frame never blocks the page's main thread, where the data channels, the Decoder and the audio clock run.
// Messages: {op: "init", manifestUrl, threads, providers} -> {info, threads, providers} (providers asked for:
// "webgpu" is used only where the browser has a WebGPU adapter); {op: "source", source5} -> {kp, jac};
// {op: "frame", kp, jac, mel, heldFrames} -> {chw, ms}. Every request has an id; errors come back as {error}.

import { ReceiverGraphs } from "./render.mjs";

let graphs = null;

/** onnxruntime-web with WebGPU when this browser has a hardware adapter (and it was asked for), else WASM. */
async function loadOrt(providers) {
  const adapter = providers.includes("webgpu") && self.navigator.gpu ? await self.navigator.gpu.requestAdapter() : null;
  const software = adapter && (adapter.isFallbackAdapter || adapter.info?.isFallbackAdapter);
  if (adapter && (!software || providers.includes("webgpu-fallback"))) {
    return [await import("/vendor/ort/ort.webgpu.min.mjs"), ["webgpu", "wasm"]];
  }
  return [await import("/vendor/ort/ort.wasm.min.mjs"), ["wasm"]];
}

async function handle(msg) {
  if (msg.op === "init") {
    const [ort, providers] = await loadOrt(msg.providers);
    ort.env.wasm.wasmPaths = "/vendor/ort/";
    ort.env.wasm.numThreads = msg.threads;
    graphs = await ReceiverGraphs.create(ort, msg.manifestUrl, providers);
    return [{ info: graphs.info, threads: ort.env.wasm.numThreads, providers }, []];
  }
  if (graphs === null) throw new Error("the render worker was not initialised");
  if (msg.op === "source") {
    await graphs.setSource(msg.source5);
    const { kp, jac } = graphs.sourceKeypoints;
    return [{ kp: kp.slice(), jac: jac.slice() }, []];
  }
  if (msg.op === "frame") {
    const t0 = performance.now();
    const chw = await graphs.frame(msg.kp, msg.jac, msg.mel, msg.heldFrames);
    return [{ chw, ms: performance.now() - t0 }, [chw.buffer]];
  }
  throw new Error(`unknown op ${msg.op}`);
}

let chain = Promise.resolve(); // one request at a time, in order
self.onmessage = (ev) => {
  const msg = ev.data;
  chain = chain.then(async () => {
    try {
      const [reply, transfer] = await handle(msg);
      self.postMessage({ id: msg.id, ...reply }, transfer);
    } catch (exc) {
      self.postMessage({ id: msg.id, error: String(exc && exc.message ? exc.message : exc) });
    }
  });
};
