// Test page: the browser receiver's picture path on given inputs, for tests/test_web_browser.py.
// window.runParity({source, format, frames: [{kp, jac, mel}], threads}) -> priors, frames (base64 RGB) and times.
import { PriorExtractor, fiveChannel } from "/src/priors.mjs";
import { ReceiverGraphs } from "/src/render.mjs";
import { decodeSourceImage } from "/src/source_image.mjs";

function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

window.runParity = async ({ source, format, frames, threads }) => {
  const ort = await import("/vendor/ort/ort.wasm.min.mjs");
  ort.env.wasm.wasmPaths = "/vendor/ort/";
  ort.env.wasm.numThreads = threads;
  const t0 = performance.now();
  const graphs = await ReceiverGraphs.create(ort, "/models/manifest.json", ["wasm"]);
  const priors = await PriorExtractor.create();
  const tLoad = performance.now();
  const rgba = await decodeSourceImage(fromBase64(source), format, priors.cv);
  const canvas = new OffscreenCanvas(256, 256);
  canvas.getContext("2d").putImageData(new ImageData(rgba, 256, 256), 0, 0);
  const bitmap = canvas.transferToImageBitmap();
  const p = await priors.extract(bitmap);
  const tPriors = performance.now();
  await priors.extract(bitmap); // a second image: the engines are warm now
  const priorsAgainMs = performance.now() - tPriors;
  const tSet = performance.now();
  await graphs.setSource(fiveChannel(rgba, p.mesh, p.mask));
  const tSource = performance.now();
  const out = [];
  const times = [];
  for (const f of frames) {
    const t = performance.now();
    const chw = await graphs.frame(Float32Array.from(f.kp), Float32Array.from(f.jac), Float32Array.from(f.mel), 0);
    times.push(performance.now() - t);
    out.push(toBase64(new Uint8Array(chw.buffer, chw.byteOffset, chw.byteLength)));
  }
  const rgb = new Uint8Array(256 * 256 * 3);
  for (let i = 0; i < 256 * 256; i++) for (let c = 0; c < 3; c++) rgb[3 * i + c] = rgba[4 * i + c];
  return {
    frames: out, frameMs: times, loadMs: tLoad - t0, priorsMs: tPriors - tLoad, priorsAgainMs, sourceMs: tSource - tSet,
    numFaces: p.numFaces, landmarks: p.landmarks ? Array.from(p.landmarks) : null,
    mesh: toBase64(p.mesh), mask: toBase64(p.mask), rgb: toBase64(rgb), manifestSha256: graphs.info.sha256,
    isolated: globalThis.crossOriginIsolated, threads: ort.env.wasm.numThreads,
  };
};
window.parityReady = true;

// A source image whose header passed the checks but whose body is broken must reject (the player then asks
// the sender for another image), not hang or kill the page.
window.decodeBroken = async ({ source, format }) => {
  try {
    await decodeSourceImage(fromBase64(source), format, null);
    return "decoded";
  } catch (exc) {
    return `rejected: ${exc.message}`;
  }
};
