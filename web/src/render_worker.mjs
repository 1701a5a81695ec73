// A module worker that owns the receiver graphs (render.mjs ReceiverGraphs), so that onnxruntime-web's ~0.1 s
// per frame never blocks the page's main thread, where the data channels, the Decoder and the audio clock run.
// Messages: {op: "init", manifestUrl, threads, providers} -> {info}; {op: "source", source5} -> {kp, jac};
// {op: "frame", kp, jac, mel, heldFrames} -> {chw, ms}. Every request has an id; errors come back as {error}.

import { ReceiverGraphs } from "./render.mjs";

let graphs = null;

async function handle(msg) {
  if (msg.op === "init") {
    const ort = await import("/vendor/ort/ort.wasm.min.mjs");
    ort.env.wasm.wasmPaths = "/vendor/ort/";
    ort.env.wasm.numThreads = msg.threads;
    graphs = await ReceiverGraphs.create(ort, msg.manifestUrl, msg.providers);
    return [{ info: graphs.info, threads: ort.env.wasm.numThreads }, []];
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
