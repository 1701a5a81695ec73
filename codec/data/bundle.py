"""Training bundles: the prepared clips packed small enough to travel to a GPU box.

A GPU box for training has torch, numpy and OpenCV but no mediapipe, no PyAV and no libopus, and what
travels to it is capped (64 MiB here). A bundle therefore holds, per clip:

- ``<id>.rgb.mp4``: the 256x256 RGB frames re-encoded with libx264 (``crf`` 16 by default, yuv420p like the
  source clips, so the loss is small next to their own compression);
- ``<id>.mask.mp4``: the segmentation prior as a grey video (smooth, so it compresses to almost nothing);
- ``<id>.npz``: landmarks (int16 in 1/16 px, -1 where no face, delta-coded over time), face flags, and the
  clip-level log-mel of the clean speech and of its real Opus round trips (float16): the box cannot run Opus.

The mesh prior is redrawn from the landmarks with ``avfr.codec.data.priors.render_mesh`` (identical code), so it
costs no bytes. ``load_bundle`` rebuilds ``ClipArrays`` from a bundle.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from avfr.codec.data.audio import clip_log_mel
from avfr.codec.data.cache import ClipArrays
from avfr.codec.data.priors import render_mesh

log = logging.getLogger(__name__)

BUNDLE_VERSION = 1
LANDMARK_SCALE = 16.0  # int16 units per pixel (1/16 px: far below what the 256x256 mesh drawing resolves)
OPUS_BITRATES_BPS: tuple[int, ...] = (8000, 16000)


def _encode_video(frames: np.ndarray, path: Path, crf: int, gray: bool) -> None:
    """Encode uint8 frames (T,H,W,3) RGB or (T,H,W) grey to an H.264 mp4 at 25 fps."""
    import imageio_ffmpeg

    t, h, w = frames.shape[:3]
    pix_in = "gray" if gray else "rgb24"
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", pix_in,
        "-s", f"{w}x{h}", "-r", "25", "-i", "-", "-c:v", "libx264", "-preset", "slow", "-crf", str(crf),
        "-pix_fmt", "yuv420p", str(path),
    ]
    subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), check=True)


def _decode_video(path: Path, num_frames: int) -> np.ndarray:
    """Decode an mp4 with OpenCV -> uint8 (T,H,W,3) RGB, exactly ``num_frames`` frames.

    Raises:
        ValueError: the file holds fewer frames than expected.
    """
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < num_frames:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if len(frames) != num_frames:
        raise ValueError(f"{path}: decoded {len(frames)} frames, expected {num_frames}")
    return np.stack(frames)


def write_bundle(clips: Sequence[ClipArrays], out_dir: Path, crf: int = 16,
                 opus_bitrates_bps: Sequence[int] = OPUS_BITRATES_BPS, mask_crf: int = 20) -> int:
    """Pack prepared clips into ``out_dir``; returns the bundle's size in bytes.

    Args:
        clips: prepared clips (``avfr.codec.data.lookup.load_clips``).
        out_dir: created if missing; existing files of the same clips are overwritten.
        crf: libx264 quality of the RGB video (lower = larger, closer to the cache's frames).
        mask_crf: the same for the grey segmentation-mask video (a soft mask: it tolerates more).
        opus_bitrates_bps: Opus round trips whose mel is stored beside the clean mel.
    """
    from avfr.codec.data.audio import opus_roundtrip

    out_dir.mkdir(parents=True, exist_ok=True)
    index = []
    for clip in clips:
        _encode_video(np.asarray(clip.frames), out_dir / f"{clip.clip_id}.rgb.mp4", crf, gray=False)
        _encode_video(np.asarray(clip.mask), out_dir / f"{clip.clip_id}.mask.mp4", mask_crf, gray=True)
        lm = np.where(np.isnan(clip.landmarks), -1.0, np.round(clip.landmarks * LANDMARK_SCALE)).astype(np.int16)
        arrays = {
            # (T,478,2) int16, frame 0 absolute then frame-to-frame differences: small numbers, they deflate well
            "landmarks_dq": np.concatenate([lm[:1], np.diff(lm, axis=0)]),
            "face_found": clip.face_found.astype(bool),
        }
        if clip.has_audio:
            arrays["mel_clean"] = clip.mel.astype(np.float16)
            for bps in opus_bitrates_bps:
                arrays[f"mel_opus{bps}"] = clip_log_mel(opus_roundtrip(clip.pcm, bps)).astype(np.float16)
        np.savez_compressed(out_dir / f"{clip.clip_id}.npz", **arrays)
        index.append({"clip_id": clip.clip_id, "split": clip.split, "frames": int(clip.frames.shape[0]),
                      "has_audio": bool(clip.has_audio), "problems": list(clip.problems)})
    meta = {"version": BUNDLE_VERSION, "opus_bitrates_bps": list(opus_bitrates_bps), "crf": crf, "clips": index}
    (out_dir / "bundle.json").write_text(json.dumps(meta, indent=1))
    return sum(p.stat().st_size for p in out_dir.iterdir())


def load_bundle(bundle_dir: Path) -> tuple[list[ClipArrays], list[ClipArrays], dict[str, list[np.ndarray]]]:
    """Rebuild clips from a bundle.

    Returns:
        (train clips, dev clips, mel variants): ``mel`` of each clip is the clean log-mel (80, 4T+29);
        ``variants[clip_id]`` lists the Opus round-trip log-mels (same shape, float32), empty without audio.
        ``pcm`` is zeros (the box never needs samples: every mel is precomputed).

    Raises:
        ValueError: unknown bundle version or a clip whose files disagree with the index.
    """
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    if meta.get("version") != BUNDLE_VERSION:
        raise ValueError(f"bundle version {meta.get('version')!r}, this code reads {BUNDLE_VERSION}")
    train: list[ClipArrays] = []
    dev: list[ClipArrays] = []
    variants: dict[str, list[np.ndarray]] = {}
    for entry in meta["clips"]:
        cid, t = entry["clip_id"], int(entry["frames"])
        with np.load(bundle_dir / f"{cid}.npz") as z:
            lm_q = np.cumsum(z["landmarks_dq"], axis=0, dtype=np.int16).astype(np.float32)
            face_found = z["face_found"]
            has_audio = bool(entry["has_audio"])
            mel = z["mel_clean"].astype(np.float32) if has_audio else None
            variants[cid] = [z[f"mel_opus{b}"].astype(np.float32) for b in meta["opus_bitrates_bps"]
                             if has_audio]
        landmarks = np.where(lm_q < 0, np.nan, lm_q / LANDMARK_SCALE).astype(np.float32)
        frames = _decode_video(bundle_dir / f"{cid}.rgb.mp4", t)
        mask = _decode_video(bundle_dir / f"{cid}.mask.mp4", t)[..., 0]
        mesh = np.stack([render_mesh(landmarks[i] if face_found[i] else None) for i in range(t)])
        pcm = np.zeros(t * 640, np.float32)
        if mel is None:
            mel = clip_log_mel(pcm)
        clip = ClipArrays(clip_id=cid, split=entry["split"], frames=frames, landmarks=landmarks,
                          face_found=face_found, mesh=mesh, mask=mask, pcm=pcm, has_audio=has_audio, mel=mel,
                          problems=tuple(entry["problems"]))
        (dev if entry["split"] == "dev" else train).append(clip)
    log.info("bundle %s: %d train, %d dev clips", bundle_dir, len(train), len(dev))
    return train, dev, variants
