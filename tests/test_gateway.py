"""``avfr-codec gateway`` over loopback WebRTC: three real avfr senders (Encoder + SendingPeer, paced at 25 fps,
three ../shared/data clips, three people) call the gateway through its signaling; one plain aiortc viewer (no
model) offers to receive 3 video + 3 audio tracks and gets one pair per caller, VP8 / Opus. It counts the
decoded frames of every track, checks the size and that the three pictures are three different people, and
that every track ends after its caller hung up (RTCP BYE). On the way: a bad signaling client, a caller with
another model and one over --max-calls are refused, and a caller that never sends a source image times out;
the gateway goes on."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import numpy as np
from codec_data_helpers import require_shared_data
from loopback_helpers import free_port

CLIPS = ("grid_lwbsza", "retalking_2", "lrs2_audio_00024")  # dev split, three identities, with speech
FRAMES = 50  # 2 s per caller
MIN_VIDEO_FRAMES = 30  # of 50 decided, after the VP8 round trip on 2 shared cores
MIN_AUDIO_FRAMES = 70  # 20 ms Opus frames, of 100


async def _consume(track, out: dict) -> None:
    """Count a viewer track's frames until it ends; keep the video size and the brightest picture."""
    from aiortc.mediastreams import MediaStreamError

    out.update(frames=0, sizes=set(), picture=None, ended=False)
    best = -1.0
    try:
        while True:
            frame = await track.recv()
            out["frames"] += 1
            if track.kind == "video":
                out["sizes"].add((frame.width, frame.height))
                if out["frames"] % 5 == 0:
                    rgb = frame.to_ndarray(format="rgb24")
                    if rgb.mean() > best:
                        best, out["picture"] = float(rgb.mean()), rgb
    except MediaStreamError:
        out["ended"] = True


async def _signal(port: int, line: bytes) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(line)
        await writer.drain()
        return json.loads(await asyncio.wait_for(reader.readline(), 30))
    finally:
        writer.close()


async def _scenario(data) -> dict:
    from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from avfr.cli.gateway import GatewayServer
    from avfr.codec.runtime import load_call_model
    from avfr.proto import AudioParams, Hello, encode_hello
    from avfr.receiver import BatchRenderer, DecoderConfig
    from avfr.receiver.batch_backends import OrtBatchBackend
    from avfr.receiver.gateway import Gateway
    from avfr.sender import Encoder, EncoderConfig
    from avfr.sender.peer import (
        LOOPBACK,
        call_signaling,
        create_channels,
        host_candidates,
        new_peer_connection,
        wait_connected,
    )
    from avfr.sender.track import FileSource, SendingPeer

    model = load_call_model()
    backend = OrtBatchBackend(workers=1)  # two cores shared with the senders, aiortc and other jobs
    renderer = BatchRenderer(backend, skip_late=True)
    gateway = Gateway(renderer, model=model,
                      decoder_config=DecoderConfig(realtime=True, source_timeout_s=2.0, silence_timeout_s=5.0))
    server = GatewayServer(gateway, max_calls=5)
    out: dict = {"pcs": []}
    try:
        listen, publish = await server.start((LOOPBACK, 0), (LOOPBACK, 0))
        out["bad_client"] = await _signal(listen, b"not json\n")  # refused, the gateway goes on
        with host_candidates([LOOPBACK]):
            senders = []
            for clip in CLIPS:  # three callers, through the gateway's signaling
                encoder = Encoder(EncoderConfig(drift_check_interval_frames=0), model)
                pc = new_peer_connection()
                out["pcs"].append(pc)
                control, media = create_channels(pc)
                senders.append((encoder, SendingPeer(encoder, control, media), pc, clip))
                await call_signaling(pc, LOOPBACK, listen)
            out["calls"] = list(gateway.calls.values())

            # the plain WebRTC client: 3 video + 3 audio, receive only (max-bundle: see avfr.cli.gateway)
            viewer = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
            out["pcs"].append(viewer)
            for _ in CLIPS:
                viewer.addTransceiver("video", direction="recvonly")
                viewer.addTransceiver("audio", direction="recvonly")
            await viewer.setLocalDescription(await viewer.createOffer())
            desc = viewer.localDescription
            answer = await _signal(publish, json.dumps({"sdp": desc.sdp, "type": desc.type}).encode() + b"\n")
            out["answer_callers"] = answer["callers"]
            await viewer.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
            out["tracks"] = {t.mid: (t.receiver.track, {}) for t in viewer.getTransceivers()}
            consumers = [asyncio.ensure_future(_consume(track, got)) for track, got in out["tracks"].values()]
            await wait_connected(viewer, 20)

            # a fourth caller sends its Hello, then never a source image; a fifth has another model
            for model_id in (model.model_id, "some-other-model"):
                bad = new_peer_connection()
                out["pcs"].append(bad)
                bad_control, _ = create_channels(bad)
                await call_signaling(bad, LOOPBACK, listen)
                await wait_connected(bad, 20)
                while bad_control.readyState != "open":
                    await asyncio.sleep(0.01)
                bad_control.send(encode_hello(Hello(model_id, model.weights_sha256,
                                                    audio=AudioParams(bitrate_bps=12_000))))
            extra = new_peer_connection()  # a sixth: over --max-calls
            out["pcs"].append(extra)
            create_channels(extra)
            try:
                await call_signaling(extra, LOOPBACK, listen)
            except ConnectionError as exc:
                out["full"] = str(exc)

            t0 = time.perf_counter()

            async def call(encoder, sending, pc, clip) -> None:
                try:
                    await sending.run(FileSource(data / "clips" / f"{clip}.mp4", max_frames=FRAMES), realtime=True)
                    await asyncio.sleep(0.5)  # the end anchor reaches the gateway
                finally:
                    sending.close()
                    await pc.close()  # hang up
                    encoder.close()

            await asyncio.gather(*(call(*s) for s in senders))
            out["send_s"] = time.perf_counter() - t0
            await asyncio.wait(consumers, timeout=30)  # every track ends (BYE); asserted below
            for consumer in consumers:
                consumer.cancel()
            for _ in range(100):  # the dead caller's source timeout
                if not gateway.calls:
                    break
                await asyncio.sleep(0.1)
            out["left"] = list(gateway.calls)
            out["stats"] = renderer.stats
    finally:
        await server.close()
        gateway.close()
        renderer.close()
        backend.close()
        for pc in out["pcs"]:
            await pc.close()
    return out


def test_gateway_republishes_three_callers_to_a_plain_viewer(caplog):
    data = require_shared_data()
    t0 = time.perf_counter()
    with caplog.at_level(logging.INFO, logger="avfr"):
        out = asyncio.run(asyncio.wait_for(_scenario(data), 150))
    wall = time.perf_counter() - t0
    assert "error" in out["bad_client"] and "not JSON" in out["bad_client"]["error"]
    assert "full (5 calls)" in out["full"]
    assert out["left"] == []  # every call ended, the bad ones included
    logged = [r.getMessage() for r in caplog.records]
    assert any("caller-4 timed out" in line and "source image" in line for line in logged)
    assert any("caller-5 refused: UNKNOWN_MODEL" in line for line in logged)

    listed = out["answer_callers"]
    assert [c["id"] for c in listed] == ["caller-1", "caller-2", "caller-3"]
    pictures, summary, drawn = [], [], 0
    for item, call in zip(listed, out["calls"], strict=True):
        video, got_video = out["tracks"][item["video_mid"]]
        audio, got_audio = out["tracks"][item["audio_mid"]]
        assert video.kind == "video" and audio.kind == "audio"
        assert video.id == item["video_track"] == f"{item['id']}-video"  # msid: a viewer tells who is who
        assert audio.id == item["audio_track"] == f"{item['id']}-audio"
        assert got_video["ended"] and got_audio["ended"]  # the caller hung up: the tracks ended
        assert got_video["sizes"] == {(256, 256)}
        assert got_video["frames"] >= MIN_VIDEO_FRAMES and got_audio["frames"] >= MIN_AUDIO_FRAMES
        stats = call.decoder.stats
        assert stats.frames_decided == FRAMES and stats.frames_out >= 1  # drawn by the shared generator
        drawn += stats.frames_out
        pictures.append(got_video["picture"].astype(np.float32))
        summary.append(f"{item['id']}: video {got_video['frames']} audio {got_audio['frames']} frames, "
                       f"{stats.frames_out} drawn / {stats.render_skipped} repeated of {stats.frames_decided}")
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(pictures[i] - pictures[j]).mean() > 10.0  # three tracks, three people
    assert out["stats"].frames == drawn  # every picture drawn came from the one shared renderer
    print(f"gateway: {'; '.join(summary)}; renderer {out['stats'].frames} frames in {out['stats'].batches} batches "
          f"({out['stats'].skipped} skipped as late); senders {out['send_s']:.1f} s; test {wall:.1f} s")


def test_gateway_cli_starts_and_exits_when_idle():
    """``avfr-codec gateway --timeout-s 1``: says where it listens, serves nobody, exits 0."""
    import subprocess
    import sys

    listen, publish = free_port(), free_port()
    proc = subprocess.run([sys.executable, "-m", "avfr.cli", "gateway", "--listen", f"127.0.0.1:{listen}",
                           "--publish", f"127.0.0.1:{publish}", "--timeout-s", "1", "--device", "cpu"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"callers on 127.0.0.1:{listen} (up to 8), viewers on 127.0.0.1:{publish}, generator ort" in proc.stderr
    assert "gateway: 0 callers served" in proc.stderr
