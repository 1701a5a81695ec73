"""Clip discovery: where a data folder's clips are (manifest + clips/<id>.mp4/.wav, plain videos, or one video)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg")


@dataclass(frozen=True)
class ClipSource:
    """Where a clip's files are.

    audio_path: a sidecar WAV (sample 0 = first video frame); None means the video's own audio
    track, if any. expect_audio: the manifest says the clip has speech (plain videos: True).
    expected_frames: frame count from the manifest, None for plain videos.
    """

    clip_id: str
    split: str
    video_path: Path
    audio_path: Path | None
    expect_audio: bool
    expected_frames: int | None = None
    from_manifest: bool = False


def discover_clips(data: str | Path) -> list[ClipSource]:
    """List the clips of a data folder.

    Args:
        data: a folder with ``manifest.json`` (clips/<id>.mp4 + <id>.wav, splits), a folder of
            plain videos (own audio track, or a same-stem .wav beside them), or one video file.

    Returns:
        Clip sources in manifest / sorted order.

    Raises:
        FileNotFoundError: ``data`` does not exist.
        ValueError: unreadable manifest, or no video found.
    """
    data = Path(data)
    if not data.exists():
        raise FileNotFoundError(f"data not found: {data}")
    if data.is_file():
        if data.suffix.lower() not in VIDEO_EXTENSIONS:
            raise ValueError(f"{data} is not a video ({', '.join(VIDEO_EXTENSIONS)})")
        return [_plain_source(data)]
    manifest = data / "manifest.json"
    if manifest.exists():
        try:
            clips = json.loads(manifest.read_text())["clips"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read {manifest}: {exc}") from exc
        sources = []
        for clip in clips:
            clip_id = str(clip["id"])
            wav = data / "clips" / f"{clip_id}.wav"
            has_speech = bool(clip.get("has_speech", wav.exists()))
            sources.append(
                ClipSource(
                    clip_id=clip_id,
                    split=str(clip.get("split", "")),
                    video_path=data / "clips" / f"{clip_id}.mp4",
                    audio_path=wav if (has_speech or wav.exists()) else None,
                    expect_audio=has_speech,
                    expected_frames=int(clip["frames"]) if "frames" in clip else None,
                    from_manifest=True,
                )
            )
        return sources
    videos = sorted(p for p in data.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        raise ValueError(f"no manifest.json and no videos ({', '.join(VIDEO_EXTENSIONS)}) in {data}")
    return [_plain_source(p) for p in videos]


def _plain_source(video: Path) -> ClipSource:
    wav = video.with_suffix(".wav")
    return ClipSource(
        clip_id=video.stem,
        split="",
        video_path=video,
        audio_path=wav if wav.exists() else None,
        expect_audio=True,
    )


def manifest_releases(data: str | Path) -> dict[str, int]:
    """Clip id -> the manifest's ``release`` (1: the first 52 clips, 2: those added in December 2026).

    Returns:
        {} for a folder without ``manifest.json`` or clips without the field.

    Raises:
        ValueError: the manifest is not readable JSON.
    """
    manifest = Path(data) / "manifest.json"
    if not manifest.is_file():
        return {}
    try:
        clips = json.loads(manifest.read_text())["clips"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{manifest}: not a clip manifest ({exc})") from exc
    return {str(c["id"]): int(c["release"]) for c in clips if isinstance(c, dict) and "id" in c and "release" in c}
