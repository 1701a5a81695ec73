// The browser receiver page: join the sender's call and redraw the caller on a canvas with the speech in sync.
//
// Set-up (before the call, so the call's first second is not spent loading): onnxruntime-web and the two
// receiver graphs (sha256-checked against the manifest), mediapipe's face mesh + selfie segmentation and
// opencv.js (warmed up on a blank image). Then the call: a WebSocket at /signal brings the sender's SDP offer
// (the two avfr data channels); the page answers with its own host candidates (no ICE servers) and feeds
// every data-channel message to the Decoder, whose jobs go to the Player and whose replies (REFRESH, STATS,
// ERROR) go back on avfr-control.
//
// URL options: ?threads=N (onnxruntime-web threads, default 2 when cross-origin isolated), ?worker=0 (run the
// graphs on the main thread instead of a worker), ?webgpu=0 (WASM even where WebGPU is there), ?capture=1 (keep drawn frames for tests), ?autojoin=1.

import { Decoder, receiverCapabilities } from "./decoder.mjs";
import { WebCodecsOpus } from "./opus.mjs";
import { Player } from "./player.mjs";
import { PriorExtractor } from "./priors.mjs";
import { ReceiverGraphs, WorkerGraphs } from "./render.mjs";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
// heardLevelMax: the loudest RMS the page's audio graph played (its analyser, 50 ms windows).
const state = { phase: "loading", error: "", bytes: { keypoints: 0, audio: 0, control: 0 }, startS: 0,
  heardLevelMax: 0 };
window.avfr = state; // read by tests and the curious

function fail(text) {
  state.phase = "failed";
  state.error = text;
  $("status").textContent = `error: ${text}`;
  console.error("avfr:", text);
}

async function setUp() {
  const threads = Number(params.get("threads") || (globalThis.crossOriginIsolated ? 2 : 1));
  const t0 = performance.now();
  let graphs;
  if (params.get("worker") === "0") {
    const ort = await import("/vendor/ort/ort.wasm.min.mjs");
    ort.env.wasm.wasmPaths = "/vendor/ort/";
    ort.env.wasm.numThreads = threads;
    graphs = await ReceiverGraphs.create(ort, "/models/manifest.json", ["wasm"]);
  } else {
    const providers = params.get("webgpu") === "0" ? ["wasm"] : ["webgpu", "wasm"];
    graphs = await WorkerGraphs.create("/models/manifest.json", threads, providers);
  }
  const priors = await PriorExtractor.create();
  const blank = new OffscreenCanvas(256, 256);
  blank.getContext("2d").fillRect(0, 0, 256, 256);
  await priors.extract(blank.transferToImageBitmap()); // mediapipe's first run loads and compiles its graphs
  state.setupMs = performance.now() - t0;
  state.threads = threads;
  state.worker = graphs instanceof WorkerGraphs;
  state.providers = graphs.providers ?? ["wasm"];
  return { graphs, priors };
}

/** Only 127.0.0.1 and this page's host as candidates: no mDNS names, no other interfaces. */
function keepLocalCandidates(sdp) {
  const allowed = new Set(["127.0.0.1", location.hostname]);
  return sdp.split(/\r?\n/).filter((line) => {
    const m = /^a=candidate:\S+ \d+ \S+ \d+ (\S+) /.exec(line);
    return !m || allowed.has(m[1]);
  }).join("\r\n");
}

function countBytes(label, data) {
  const first = new Uint8Array(data)[0];
  const type = first & 0x80 ? 7 : first & 0x0f; // bit 7: a KEYPOINTS_DELTA (its 7 low bits are the seq's)
  if (label === "avfr-control") state.bytes.control += data.byteLength;
  else if (type === 8) state.bytes.audio += data.byteLength;
  else state.bytes.keypoints += data.byteLength;
}

async function join({ graphs, priors }) {
  const audio = new AudioContext();
  await audio.resume();
  const player = new Player({ canvas: $("view"), audio, graphs, priors,
    onSourceFailed: (id) => decoder.sourceFailed(id), onSourceApplied: () => decoder.sourceApplied(),
    capture: params.get("capture") === "1" });
  let opus = null;
  const decoder = new Decoder({ realtime: true },
    receiverCapabilities({ modelId: graphs.info.detector, weightsSha256: graphs.info.detectorSha256,
      numKp: graphs.info.numKp }),
    { pcmProvider: (hello) => (opus = new WebCodecsOpus({ bitrateBps: hello.audio.bitrateBps, onOutput: pump })),
      waitForPicture: true });
  state.player = player;
  state.decoder = decoder;
  state.messages = params.get("capture") === "1" ? [] : null; // every message received, for tests
  let control = null;
  function pump() {
    player.push(decoder.takeJobs());
    const replies = decoder.takeReplies();
    if (control && control.readyState === "open") for (const r of replies) control.send(r);
  }

  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/signal`);
  const offer = await new Promise((resolve, reject) => {
    ws.onmessage = (ev) => {
      try {
        resolve(JSON.parse(ev.data));
      } catch {
        reject(new Error("the sender's signaling message is not JSON"));
      }
    };
    ws.onerror = () => reject(new Error("signaling socket failed"));
    ws.onclose = () => reject(new Error("the sender closed signaling"));
  });
  if (offer.type !== "offer") throw new Error(offer.error || "no offer from the sender");
  const pc = new RTCPeerConnection({ iceServers: [] });
  state.pc = pc;
  const ended = new Promise((resolve) => {
    pc.ondatachannel = ({ channel }) => {
      channel.binaryType = "arraybuffer";
      if (channel.label === "avfr-control") control = channel;
      channel.onopen = () => decoder.connected();
      channel.onmessage = (ev) => {
        if (typeof ev.data === "string") return; // the wire format is binary only
        countBytes(channel.label, ev.data);
        if (state.messages) state.messages.push([channel.label, new Uint8Array(ev.data.slice(0))]);
        decoder.receive(channel.label, new Uint8Array(ev.data));
        pump();
      };
      channel.onclose = () => resolve("closed");
    };
    pc.onconnectionstatechange = () => {
      if (["failed", "closed"].includes(pc.connectionState)) resolve(pc.connectionState);
    };
  });
  await pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
  await pc.setLocalDescription(await pc.createAnswer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
  });
  ws.onclose = null;
  ws.send(JSON.stringify({ type: "answer", sdp: keepLocalCandidates(pc.localDescription.sdp) }));
  state.phase = "in call";
  state.startS = performance.now() / 1000;
  $("join").textContent = "in the call";

  let lastTick = performance.now();
  state.maxTickGapMs = 0; // the longest the page's main thread left the 10 ms ticker waiting
  const ticker = setInterval(() => {
    const t = performance.now();
    state.maxTickGapMs = Math.max(state.maxTickGapMs, t - lastTick);
    lastTick = t;
    decoder.tick();
    pump();
    try {
      decoder.checkAlive();
    } catch (exc) {
      if (state.phase !== "failed") fail(exc.message);
      pc.close();
    }
    if (decoder.finished) pc.close();
  }, 10);
  const liveLine = setInterval(() => showStats(decoder, player), 500);
  const meter = setInterval(() => { state.heardLevelMax = Math.max(state.heardLevelMax, player.level()); }, 50);
  const how = await Promise.race([ended, new Promise((resolve) => {
    const t = setInterval(() => decoder.finished && (clearInterval(t), resolve("ended")), 50);
  })]);
  clearInterval(ticker);
  if (opus) await opus.flush();
  decoder.finish();
  pump();
  await player.close();
  clearInterval(liveLine);
  clearInterval(meter);
  showStats(decoder, player);
  pc.close();
  ws.close();
  if (state.phase !== "failed") state.phase = decoder.refused ? "refused" : "ended";
  state.ended = how;
  $("join").textContent = "call ended";
  if (state.phase === "ended") {
    $("status").textContent += ` | ended: ${player.stats.framesDrawn} of ${player.stats.framesDecided} frames drawn, ` +
      `${player.stats.audioScheduledS.toFixed(1)} s of speech played`;
  }
  if (decoder.refused) fail(`the call was refused: ${decoder.refused}`);
}

function showStats(decoder, player) {
  const s = decoder.stats;
  const secs = Math.max(1e-3, performance.now() / 1000 - state.startS);
  const kbps = (n) => (8 * n / 1000 / secs).toFixed(2);
  state.live = {
    fps: player.fps, drawn: player.stats.framesDrawn, decided: player.stats.framesDecided,
    skipped: player.stats.framesSkipped, late: player.stats.framesLate, concealed: s.concealed,
    refreshes: Math.max(0, player.stats.sources - 1), renderMs: player.stats.renderMs,
    delayMs: 1000 * decoder.delayS, kbpsKeypoints: kbps(state.bytes.keypoints), kbpsAudio: kbps(state.bytes.audio),
    kbpsControl: kbps(state.bytes.control), audioS: player.stats.audioScheduledS, malformed: s.droppedMalformed,
  };
  const l = state.live;
  $("status").textContent = `${l.fps} fps drawn | keypoints ${l.kbpsKeypoints} kbit/s, speech ${l.kbpsAudio} ` +
    `kbit/s, control ${l.kbpsControl} kbit/s | concealed ${l.concealed} | refreshes ${l.refreshes} | render ` +
    `${l.renderMs.toFixed(0)} ms | delay ${l.delayMs.toFixed(0)} ms`;
}

async function main() {
  $("status").textContent = "loading the receiver (models, face mesh)...";
  let parts;
  try {
    parts = await setUp();
  } catch (exc) {
    fail(`could not load the receiver: ${exc.message}`);
    return;
  }
  state.phase = "ready";
  $("status").textContent = `ready (loaded in ${(state.setupMs / 1000).toFixed(1)} s): join the call`;
  const button = $("join");
  button.disabled = false;
  const start = () => {
    button.disabled = true;
    state.phase = "joining";
    join(parts).catch((exc) => fail(exc.message));
  };
  button.onclick = start;
  if (params.get("autojoin") === "1") start();
}

main();
