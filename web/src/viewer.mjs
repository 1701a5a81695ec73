// The gateway's viewer page: plain WebRTC, no model. It offers to receive one video + audio pair per caller
// (?callers=N, default 4), sends the offer on /signal and shows each caller's stream (the msid stream id is the
// caller id). window.viewer: {state, callers, frames: {callerId: video frames shown}, error} for tests.

const params = new URLSearchParams(location.search);
const wanted = Math.max(1, Math.min(16, Number(params.get("callers") || 4)));
const viewer = { state: "connecting", callers: [], frames: {}, error: "" };
window.viewer = viewer;
const status = (text) => { document.getElementById("status").textContent = text; };

function fail(text) {
  viewer.state = "failed";
  viewer.error = text;
  status(`error: ${text}`);
}

function show(stream) {
  const id = stream.id;
  if (viewer.frames[id] !== undefined) return;
  viewer.frames[id] = 0;
  const fig = document.createElement("figure");
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  video.muted = params.get("muted") !== "0"; // autoplay policy: unmute by clicking the video
  video.onclick = () => { video.muted = false; };
  video.srcObject = stream;
  const caption = document.createElement("figcaption");
  caption.textContent = id;
  fig.append(video, caption);
  document.getElementById("callers").append(fig);
  const count = () => { viewer.frames[id] += 1; video.requestVideoFrameCallback(count); };
  video.requestVideoFrameCallback(count);
}

async function main() {
  const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: "max-bundle" });
  for (let i = 0; i < wanted; i++) {
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
  }
  pc.ontrack = (ev) => { if (ev.streams[0]) show(ev.streams[0]); };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
  });
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/signal`);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error("signaling failed")); });
  ws.send(JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp }));
  const reply = await new Promise((resolve) => { ws.onmessage = (ev) => resolve(JSON.parse(ev.data)); });
  ws.close();
  if (reply.type !== "answer") throw new Error(reply.error || "no answer from the gateway");
  viewer.callers = reply.callers;
  await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
  viewer.state = "watching";
  setInterval(() => {
    status(`${pc.connectionState}: ${viewer.callers.length} callers; frames ` +
      Object.entries(viewer.frames).map(([id, n]) => `${id} ${n}`).join(", "));
  }, 500);
}

main().catch((exc) => fail(exc.message));
