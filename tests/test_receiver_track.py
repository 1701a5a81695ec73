"""avfr.receiver.track: received frames as standard aiortc MediaStreamTracks; a refused call ends cleanly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _frame(index: int):
    from avfr.receiver import ReceivedFrame

    rgb = np.full((256, 256, 3), index, np.uint8)
    pcm = np.full(640, 0.25, np.float32)
    return ReceivedFrame(index, 3600 * index, rgb, pcm, False, 1, 0.0, 0.0)


def test_tracks_deliver_av_frames():
    from aiortc.mediastreams import MediaStreamError

    from avfr.receiver.track import ReceivedAudioTrack, ReceivedVideoTrack

    async def run():
        video, audio = ReceivedVideoTrack(), ReceivedAudioTrack()
        for i in range(3):
            video.put(_frame(i))
            audio.put(_frame(i))
        video._put(None)
        got = [await video.recv() for _ in range(3)]
        a = await audio.recv()
        with pytest.raises(MediaStreamError):
            await video.recv()
        return video, got, a

    video, got, a = asyncio.run(run())
    assert video.kind == "video" and video.readyState == "ended"
    assert [f.pts for f in got] == [0, 3600, 7200] and got[0].width == 256
    assert got[2].to_ndarray(format="rgb24")[0, 0, 0] == 2
    assert a.sample_rate == 16000 and a.samples == 320 and a.pts == 0  # 20 ms: one Opus packet each
    assert abs(a.to_ndarray()[0, 0] / 32767 - 0.25) < 1e-3


def test_refused_call_ends_with_a_clear_error():
    from avfr.benchmarks import CallRefusedError, loopback_call
    from avfr.codec.runtime import CallModel, load_call_model
    from avfr.sender.track import FileSource

    video = DATA / "clips" / "retalking_2.mp4"
    if not video.exists():
        pytest.skip(f"../shared/data not found: {video}")
    model = load_call_model()
    other = CallModel(model.manifest, "some-other-model", model.weights_sha256)
    with pytest.raises(CallRefusedError, match="UNKNOWN_MODEL"):
        asyncio.run(loopback_call(FileSource(video, max_frames=10), receiver_model=other, timeout_s=60))


def _encoded_call(num_frames: int) -> list[tuple[str, bytes]]:
    """The messages a real Encoder sends for the first frames of a clip with speech, in sender order."""
    from avfr.codec.runtime import decode_source_image
    from avfr.sender import Encoder
    from avfr.sender.track import FileSource

    video, wav, still = (DATA / "clips" / "retalking_2.mp4", DATA / "clips" / "retalking_2.wav",
                         DATA / "stills" / "retalking_2.png")
    if not (video.exists() and wav.exists() and still.exists()):
        pytest.skip(f"../shared/data not found: {video}")
    encoder = Encoder()
    out = encoder.start(decode_source_image(still.read_bytes()))
    for frame in FileSource(video, wav, num_frames):
        out += encoder.encode_frame(frame.index, frame.rgb) + encoder.encode_audio(frame.pcm)
    out += encoder.finish()
    return [(m.channel, m.data) for m in out]


def test_skipped_renders_keep_their_speech():
    """A realtime peer whose generator is behind skips drawing frames, never their speech: every decided
    frame reaches the tracks and the callbacks with its own 40 ms of PCM, under the last picture drawn."""
    from aiortc.mediastreams import MediaStreamError

    from avfr.proto import CONTROL_CHANNEL_LABEL, peek_type
    from avfr.proto.framing import MessageType
    from avfr.receiver import Decoder, DecoderConfig, FrameJob
    from avfr.receiver.track import ReceivingPeer
    from avfr.sender.peer import LOOPBACK, connect_in_process, create_channels, host_candidates, new_peer_connection

    num_frames = 20
    messages = _encoded_call(num_frames)
    start = next(i for i, (ch, data) in enumerate(messages)  # the start anchor (after Hello + source)
                 if ch == CONTROL_CHANNEL_LABEL and peek_type(data) == MessageType.KEYPOINTS_KEY)
    # The media first, then the anchors: the decoder decides every frame at once, and the generator (busy
    # with the source image) finds them all queued - behind real time, as on a slow machine.
    ordered = (messages[:start] + [m for m in messages[start:] if m[0] != CONTROL_CHANNEL_LABEL]
               + [m for m in messages[start:] if m[0] == CONTROL_CHANNEL_LABEL])

    async def run():
        with host_candidates([LOOPBACK]):
            pc_send, pc_recv = new_peer_connection(), new_peer_connection()
            control, media = create_channels(pc_send)
            decoder = Decoder(DecoderConfig(realtime=True))
            peer = ReceivingPeer(decoder, pc_recv, record_messages=True)
            video, audio, frames = peer.video_track(), peer.audio_track(), []
            peer.frames_out.append(frames.append)
            try:
                await connect_in_process(pc_send, pc_recv)
                while control.readyState != "open" or media.readyState != "open":
                    await asyncio.sleep(0.01)
                for channel, data in ordered:
                    (control if channel == CONTROL_CHANNEL_LABEL else media).send(data)
                await peer.wait(timeout_s=120)
                tracks = {}
                for track in (video, audio):
                    tracks[track.kind] = []
                    while True:
                        try:
                            tracks[track.kind].append(await track.recv())
                        except MediaStreamError:
                            break
            finally:
                peer.close()
                await pc_send.close()
                await pc_recv.close()
            return decoder, peer.messages, frames, tracks

    decoder, received, frames, tracks = asyncio.run(run())
    reference = Decoder(render=False)  # what was decided, frame by frame, from what arrived
    for channel, data in received:
        reference.receive(channel, data)
    reference.finish()
    jobs = [j for j in reference.take_jobs() if isinstance(j, FrameJob)]
    assert [j.index for j in jobs] == list(range(num_frames))
    assert [f.index for f in frames] == list(range(num_frames))
    for frame, job in zip(frames, jobs, strict=True):
        np.testing.assert_array_equal(frame.pcm, job.pcm)
    repeated = [f.index for f in frames if f.repeated]
    assert repeated and decoder.stats.render_skipped == len(repeated)
    assert decoder.stats.frames_out == num_frames - len(repeated) and not frames[-1].repeated
    for i in repeated[1:] if repeated[0] == 0 else repeated:
        np.testing.assert_array_equal(frames[i].rgb, frames[i - 1].rgb)  # the last picture drawn, again
    assert [a.pts for a in tracks["audio"]] == [320 * i for i in range(2 * num_frames)]  # 20 ms frames
    np.testing.assert_array_equal(np.concatenate([a.to_ndarray()[0] for a in tracks["audio"]]),
                                  (np.clip(np.concatenate([j.pcm for j in jobs]), -1, 1) * 32767).astype(np.int16))
    assert [v.pts for v in tracks["video"]] == [3600 * i for i in range(num_frames)]
