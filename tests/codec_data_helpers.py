"""Shared helpers for the data-pipeline tests: locating ../shared/data, writing small synthetic videos."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHORT_CLIP = "grid_lwbsza"  # 3 s, dev split, speech


def require_shared_data() -> Path:
    """../shared/data, or skip the test when it is absent."""
    if not (SHARED_DATA / "manifest.json").exists():
        pytest.skip(f"../shared/data not found: {SHARED_DATA} (real-clip tests need the shared clips)")
    return SHARED_DATA


def first_frames(clip_id: str, n: int) -> list[np.ndarray]:
    """The first ``n`` frames of a shared clip as `avfr.codec.data.VideoReader` gives them (uint8 (256, 256, 3)
    RGB), or skip the test when the clip is absent."""
    from avfr.codec.data import VideoReader

    video = SHARED_DATA / "clips" / f"{clip_id}.mp4"
    if not video.exists():
        pytest.skip(f"../shared/data not found: {video}")
    frames = []
    for rgb in VideoReader(video):
        if len(frames) >= n:
            break
        frames.append(rgb)
    return frames


def read_frames(path: Path, max_frames: int | None = None) -> np.ndarray:
    """Decode RGB frames with PyAV: uint8 (N, H, W, 3)."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames is not None and len(frames) >= max_frames:
                break
    return np.stack(frames)


def read_wav(path: Path) -> np.ndarray:
    """16-bit mono WAV -> float32 in [-1, 1]."""
    with wave.open(str(path)) as wav:
        data = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    return data.astype(np.float32) / 32768.0


def write_wav(path: Path, pcm: np.ndarray, sample_rate: int = 16000) -> None:
    """float32 mono -> 16-bit WAV."""
    data = np.clip(np.round(np.asarray(pcm) * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(data.tobytes())


def write_video(
    path: Path,
    frames: np.ndarray,
    fps: int = 25,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio: np.ndarray | None = None,
    audio_rate: int = 16000,
) -> Path:
    """Encode RGB frames uint8 (N, H, W, 3) (+ optional float32 mono audio as AAC) with PyAV."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps)
        video.height, video.width = frames.shape[1:3]
        video.pix_fmt = pix_fmt
        if codec.startswith("libx264"):
            video.options = {"preset": "ultrafast", "crf": "10"}
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=audio_rate)
            astream.layout = "mono"
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if astream is not None:
            step = 1024
            for start in range(0, len(audio), step):
                chunk = np.ascontiguousarray(audio[None, start : start + step], dtype=np.float32)
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate = audio_rate
                frame.pts = start
                for packet in astream.encode(frame):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return path


def make_dataset(
    root: Path, clips: dict[str, tuple[np.ndarray, np.ndarray | None]], split: str = "train"
) -> Path:
    """A data folder like ../shared/data: clips/<id>.mp4 (+ .wav) and manifest.json.

    Args:
        clips: clip_id -> (frames uint8 (T, 256, 256, 3), pcm float32 or None).
    """
    (root / "clips").mkdir(parents=True, exist_ok=True)
    entries = []
    for clip_id, (frames, pcm) in clips.items():
        write_video(root / "clips" / f"{clip_id}.mp4", frames)
        if pcm is not None:
            write_wav(root / "clips" / f"{clip_id}.wav", pcm)
        entries.append(
            {"id": clip_id, "split": split, "frames": len(frames), "has_speech": pcm is not None, "fps": 25,
             "release": 1 + len(entries) % 2}
        )
    (root / "manifest.json").write_text(json.dumps({"fps": 25, "size": 256, "clips": entries}))
    return root


def short_clip(num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """First frames of the short real clip and their audio: (uint8 (T, 256, 256, 3), float32 (T*640,))."""
    data = require_shared_data()
    frames = read_frames(data / "clips" / f"{SHORT_CLIP}.mp4", num_frames)
    pcm = read_wav(data / "clips" / f"{SHORT_CLIP}.wav")[: num_frames * 640]
    return frames, pcm
