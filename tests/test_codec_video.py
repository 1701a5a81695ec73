"""avfr.codec.data.video: 25 fps resampling, face crop of non-square sources, tiny / 4K / truncated files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from codec_data_helpers import SHORT_CLIP, read_frames, require_shared_data, write_video

from avfr.codec.data import CropBox, VideoReader, crop_and_resize, probe_video, square_crop_box


def test_real_clip_is_read_unchanged() -> None:
    path = require_shared_data() / "clips" / f"{SHORT_CLIP}.mp4"
    reader = VideoReader(path)
    frames = reader.read_all()
    assert frames.shape == (75, 256, 256, 3) and frames.dtype == np.uint8
    assert reader.num_frames == 75 and reader.problems == [] and reader.crop is None
    np.testing.assert_array_equal(frames[:5], read_frames(path, 5))


def _numbered_frames(count: int, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    """Flat frames whose colour encodes the index: R = 8 (j % 32), G = 8 (j // 32) (robust to coding)."""
    return np.stack([np.full((*size, 3), (8 * (j % 32), 8 * (j // 32), 0), np.uint8) for j in range(count)])


def _decode_index(frames: np.ndarray) -> list[int]:
    levels = np.round(frames[:, 128, 128, :2].astype(float) / 8).astype(int)  # (N, 2)
    return (levels[:, 0] + 32 * levels[:, 1]).tolist()


@pytest.mark.parametrize("fps", [30, 50, 15])
def test_nearest_frame_resampling(tmp_path, fps: int) -> None:
    count = fps * 2  # 2 s
    path = write_video(tmp_path / f"v{fps}.mp4", _numbered_frames(count), fps=fps)
    frames = VideoReader(path).read_all()
    assert frames.shape == (50, 256, 256, 3)
    expected = [min(count - 1, int(np.floor(i / 25 * fps + 0.5))) for i in range(50)]
    assert _decode_index(frames) == expected


def test_square_crop_box() -> None:
    box = square_crop_box(np.array([100, 100, 50, 60]), 640, 480)
    assert box.side == 108 and not box.clamped
    assert box.x0 == round(125 - 54) and box.y0 == round(130 - 6 - 54)
    near_edge = square_crop_box(np.array([0, 0, 50, 50]), 640, 480)
    assert near_edge.clamped and near_edge.x0 == 0 and near_edge.y0 == 0 and near_edge.side == 90
    huge = square_crop_box(np.array([0, 0, 400, 400]), 640, 480)
    assert huge.clamped and huge.side == 480 and huge.y0 == 0
    assert square_crop_box(None, 640, 480) == CropBox(80, 0, 480, False)
    out = crop_and_resize(np.zeros((480, 640, 3), np.uint8), huge)
    assert out.shape == (256, 256, 3)


def test_tiny_frames_are_flagged_not_fatal(tmp_path) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (10, 9, 17, 3), dtype=np.uint8)
    path = write_video(tmp_path / "tiny.mp4", frames, codec="libx264rgb", pix_fmt="rgb24")
    reader = VideoReader(path)
    out = reader.read_all()
    assert out.shape == (10, 256, 256, 3)
    assert any("tiny source 17x9" in p for p in reader.problems)
    assert any("no face found" in p for p in reader.problems)


def test_4k_source_is_cropped_around_the_face(tmp_path) -> None:
    face = read_frames(require_shared_data() / "clips" / f"{SHORT_CLIP}.mp4", 1)[0]
    canvas = np.full((2160, 3840, 3), 90, np.uint8)
    big_face = cv2.resize(face, (768, 768), interpolation=cv2.INTER_CUBIC)
    x, y = 2400, 900  # face region off-centre
    canvas[y : y + 768, x : x + 768] = big_face
    path = write_video(tmp_path / "uhd.mp4", np.stack([canvas] * 3))
    probe = probe_video(path)
    assert (probe.width, probe.height) == (3840, 2160)
    reader = VideoReader(path)
    frames = reader.read_all()
    assert frames.shape == (3, 256, 256, 3)
    crop = reader.crop
    assert crop is not None
    assert crop.x0 < x + 384 < crop.x0 + crop.side and crop.y0 < y + 384 < crop.y0 + crop.side
    assert 600 < crop.side < 1500
    assert not any("no face" in p for p in reader.problems)
    from avfr.codec.data import PriorExtractor

    with PriorExtractor(mask=False) as extractor:
        assert extractor.face_landmarks(frames[1])[1] == 1


def test_truncated_mp4(tmp_path) -> None:
    source = require_shared_data() / "clips" / f"{SHORT_CLIP}.mp4"
    data = source.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.5)])
    reader = VideoReader(cut)
    frames = reader.read_all()
    assert 0 < len(frames) < 75
    assert any("truncated" in p for p in reader.problems)
    header_only = tmp_path / "header.mp4"
    header_only.write_bytes(data[:1500])
    with pytest.raises(ValueError, match="cannot open video|no video frames"):
        VideoReader(header_only).read_all()
    with pytest.raises(FileNotFoundError):
        VideoReader(tmp_path / "absent.mp4")
