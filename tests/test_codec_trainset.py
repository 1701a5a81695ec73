"""TrainSet: batch shapes and ranges, same-clip pairs, mel windows on the audio grid, paired augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avfr.codec.data import ClipArrays, mel_window
from avfr.codec.train import SILENT_LOG_MEL, AugmentConfig, PairIndex, TrainSet
from avfr.codec.train.augment import apply_augment

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP_IDS = ("grid_lwbsza", "grid_bbaf2n")  # 3 s each, dev and train, with speech
NO_AUG_BUT_FLIP = AugmentConfig(flip_prob=1.0, brightness=0.0, contrast=0.0, saturation=0.0, hue_deg=0.0,
                                scale=0.0, shift_frac=0.0, opus_prob=0.0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[ClipArrays]:
    if not (DATA / "manifest.json").exists():
        pytest.skip(f"../shared/data not found: {DATA}")
    from avfr.codec.data import discover_clips, open_clip, prepare

    sources = [s for s in discover_clips(DATA) if s.clip_id in CLIP_IDS]
    cache = tmp_path_factory.getbasetemp() / "codec-train-cache"  # shared with test_codec_train.py
    summary = prepare(DATA, cache, sources=sources, progress=False)
    return [open_clip(e) for e in summary.entries]


def _clip(clips: list[ClipArrays], ts: TrainSet, c: int) -> ClipArrays:
    return next(x for x in clips if x.clip_id == ts.clip_ids[c])


def test_batch_shapes_dtypes_ranges(clips: list[ClipArrays]) -> None:
    ts = TrainSet(clips, "cpu", seed=0)
    idx, src, drv, mel = ts.sample_indexed(3)
    assert src.shape == drv.shape == (3, 5, 256, 256)
    assert mel.shape == (3, 1, 80, 19)
    assert src.dtype == drv.dtype == mel.dtype == torch.float32
    for x in (src, drv):
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert torch.isfinite(mel).all()
    assert float(mel.min()) >= SILENT_LOG_MEL - 1e-4
    for k in range(3):  # distinct frames of one clip, both with a face
        clip = _clip(clips, ts, int(idx.clip[k]))
        assert idx.source[k] != idx.driving[k]
        assert clip.face_found[int(idx.source[k])] and clip.face_found[int(idx.driving[k])]
    assert set(idx.variant.tolist()) <= {1, 2, 3}  # augmented: always an Opus round trip


def test_unaugmented_pairs_are_the_clip_frames_and_mel_windows(clips: list[ClipArrays]) -> None:
    for causal in (False, True):
        ts = TrainSet(clips, "cpu", seed=1, augment=None, causal=causal)
        idx, src, drv, mel = ts.sample_indexed(4)
        assert (idx.variant == 0).all()
        for k in range(4):
            clip = _clip(clips, ts, int(idx.clip[k]))
            s, d = int(idx.source[k]), int(idx.driving[k])
            got_src = (src[k] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # (H, W, 5)
            got_drv = (drv[k] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            np.testing.assert_array_equal(got_src[..., :3], clip.frames[s])
            np.testing.assert_array_equal(got_src[..., 3], clip.mesh[s])
            np.testing.assert_array_equal(got_src[..., 4], clip.mask[s])
            np.testing.assert_array_equal(got_drv[..., :3], clip.frames[d])
            np.testing.assert_array_equal(mel[k, 0].numpy(), mel_window(clip.mel, d, causal=causal))


def test_flip_is_applied_to_source_and_driving_alike(clips: list[ClipArrays]) -> None:
    plain = TrainSet(clips, "cpu", seed=2, augment=None)
    flipped = TrainSet(clips, "cpu", seed=2, augment=NO_AUG_BUT_FLIP)
    idx_a, src_a, drv_a, mel_a = plain.sample_indexed(3)
    idx_b, src_b, drv_b, mel_b = flipped.sample_indexed(3)
    assert torch.equal(idx_a.clip, idx_b.clip) and torch.equal(idx_a.driving, idx_b.driving)
    torch.testing.assert_close(src_b, src_a.flip(-1), atol=1e-4, rtol=0)  # all 5 channels
    torch.testing.assert_close(drv_b, drv_a.flip(-1), atol=1e-4, rtol=0)
    assert torch.equal(mel_a, mel_b)  # audio is not flipped


def test_augmentation_is_one_draw_per_pair(clips: list[ClipArrays]) -> None:
    ts = TrainSet(clips, "cpu", seed=3)
    idx, draw = ts._draw(4)
    same = PairIndex(clip=idx.clip, source=idx.driving, driving=idx.driving, variant=idx.variant)
    src, drv, _ = ts.batch(same)  # source frame == driving frame
    aug_src, aug_drv = apply_augment(draw, src, drv)
    assert torch.equal(aug_src, aug_drv)  # flip, warp and colour identical for both frames of a pair
    assert not torch.equal(aug_src, src)
    for x in (aug_src, aug_drv):
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_silent_mel_without_audio_and_opus_variants_differ(clips: list[ClipArrays]) -> None:
    silent = TrainSet(clips, "cpu", seed=4, use_audio=False)
    assert (silent.sample(2)[2] == SILENT_LOG_MEL).all()
    ts = TrainSet(clips, "cpu", seed=4, augment=None)
    idx = ts.fixed_pairs(max_per_clip=2, stride=5, variant=0)
    clean = ts.mel_windows(idx.clip, idx.driving, idx.variant)
    for v in range(1, len(ts.variant_names)):
        opus = ts.mel_windows(idx.clip, idx.driving, torch.full_like(idx.variant, v))
        assert not torch.equal(clean, opus)  # a real Opus round trip changes the spectrum a little...
        assert float((clean - opus).abs().mean()) < 2.0  # ...but not much


def test_generator_state_restores_the_sample_sequence(clips: list[ClipArrays]) -> None:
    ts = TrainSet(clips, "cpu", seed=5)
    ts.sample(2)
    state = ts.state_dict()
    first = ts.sample(2)
    ts.load_state_dict(state)
    again = ts.sample(2)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)


def test_fixed_pairs_are_deterministic_same_clip_and_spread(clips: list[ClipArrays]) -> None:
    ts = TrainSet(clips, "cpu", seed=6, augment=None)
    a = ts.fixed_pairs(max_per_clip=4, stride=5, variant=0)
    b = TrainSet(clips, "cpu", seed=99, augment=None).fixed_pairs(max_per_clip=4, stride=5, variant=0)
    assert torch.equal(a.driving, b.driving) and torch.equal(a.source, b.source)
    for c in range(len(ts.clip_ids)):
        sel = a.clip == c
        assert int(sel.sum()) == 4
        assert len(set(a.source[sel].tolist())) == 1  # one source per clip
        assert int(a.source[sel][0]) not in a.driving[sel].tolist()


def test_lip_landmarks_are_mediapipes_lips() -> None:
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LIPS

    from avfr.codec.data import LIP_LANDMARKS

    np.testing.assert_array_equal(LIP_LANDMARKS, sorted({i for edge in FACEMESH_LIPS for i in edge}))


def test_mouth_boxes_hold_the_lips_and_follow_flip_and_zoom(clips: list[ClipArrays]) -> None:
    from avfr.codec.data import LIP_LANDMARKS

    plain = TrainSet(clips, "cpu", seed=5, augment=None)
    idx, _ = plain._draw(4)
    boxes = plain.mouth_boxes(idx)  # (4, 4) grid coordinates
    assert boxes.shape == (4, 4) and (boxes[:, 0] < boxes[:, 2]).all() and (boxes[:, 1] < boxes[:, 3]).all()
    for k in range(4):
        lips = _clip(clips, plain, int(idx.clip[k])).landmarks[int(idx.driving[k])][LIP_LANDMARKS]  # px
        grid = (lips + 0.5) / 256 * 2 - 1
        assert (grid[:, 0] >= boxes[k, 0].item()).all() and (grid[:, 0] <= boxes[k, 2].item()).all()
        assert (grid[:, 1] >= boxes[k, 1].item()).all() and (grid[:, 1] <= boxes[k, 3].item()).all()
        assert 0.01 < float((boxes[k, 2] - boxes[k, 0]) * (boxes[k, 3] - boxes[k, 1])) / 4 < 0.2  # area share
    flipped = TrainSet(clips, "cpu", seed=5, augment=NO_AUG_BUT_FLIP)
    idx_f, draw_f = flipped._draw(4)
    assert torch.equal(idx_f.driving, idx.driving)
    fb = flipped.mouth_boxes(idx_f, draw_f)
    torch.testing.assert_close(fb, torch.stack([-boxes[:, 2], boxes[:, 1], -boxes[:, 0], boxes[:, 3]], 1))
    zoom = AugmentConfig(flip_prob=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue_deg=0.0, scale=0.2,
                         shift_frac=0.05, opus_prob=0.0)
    zoomed = TrainSet(clips, "cpu", seed=5, augment=zoom)
    idx_z, draw_z = zoomed._draw(4)
    zb = zoomed.mouth_boxes(idx_z, draw_z)
    size = (zb[:, 2] - zb[:, 0]) / (boxes[:, 2] - boxes[:, 0])
    torch.testing.assert_close(size, draw_z.scale.float())  # the box grows with the zoom
    # the mouth pixels move with the picture: the box's mean colour is the same before and after
    from avfr.codec.train import box_mask

    src, drv, _ = zoomed.batch(idx_z)
    _, aug = apply_augment(draw_z, src, drv)
    before = (drv[:, :3] * box_mask(boxes, 256, 256)).sum((1, 2, 3)) / box_mask(boxes, 256, 256).sum((1, 2, 3))
    after = (aug[:, :3] * box_mask(zb, 256, 256)).sum((1, 2, 3)) / box_mask(zb, 256, 256).sum((1, 2, 3))
    torch.testing.assert_close(after, before, atol=0.02, rtol=0)
    src2, drv2, mel2, mouth = TrainSet(clips, "cpu", seed=5, augment=zoom).sample_with_mouth(4)
    torch.testing.assert_close(mouth, zb)
    assert torch.equal(drv2, aug)


def test_held_keypoint_frames_are_earlier_face_frames_with_the_same_augmentation(clips: list[ClipArrays]) -> None:
    plain = TrainSet(clips, "cpu", seed=7, augment=None)
    idx, _ = plain._draw(6)
    assert torch.equal(plain.held_frames(idx, 0.0, 3), idx.driving)  # no hold: the driving frames
    held = plain.held_frames(idx, 1.0, 3)
    for k in range(6):
        faces = plain.face_frames[int(idx.clip[k])]
        pos_d, pos_h = (int(np.searchsorted(faces, int(f))) for f in (idx.driving[k], held[k]))
        assert faces[pos_h] == held[k]  # a face frame
        assert 1 <= pos_d - pos_h <= 3 or pos_h == pos_d == 0  # 1..3 face frames earlier (or the first)
    # with augmentation: the pairs, boxes and driving frames of sample_with_mouth, the keypoint frames warped alike
    aug = AugmentConfig(flip_prob=0.5, scale=0.1, shift_frac=0.05)
    src, drv, mel, mouth = TrainSet(clips, "cpu", seed=3, augment=aug).sample_with_mouth(4)
    ts = TrainSet(clips, "cpu", seed=3, augment=aug)
    tb = ts.sample_batch(4, 0.5, 2)
    src_h, drv_h, mel_h, mouth_h = tb.source, tb.driving, tb.mel, tb.mouth_box
    kp_img, held = tb.kp_image, tb.held_frames
    for a, b in ((src, src_h), (drv, drv_h), (mel, mel_h), (mouth, mouth_h)):
        assert torch.equal(a, b)
    ts2 = TrainSet(clips, "cpu", seed=3, augment=aug)
    idx2, draw2 = ts2._draw(4)
    frames = ts2.held_frames(idx2, 0.5, 2)
    assert (frames != idx2.driving).any() and (frames == idx2.driving).any()  # this seed holds some, not all
    expected = apply_augment(draw2, ts2.images(idx2.clip, frames))[0]
    torch.testing.assert_close(kp_img, expected)
    same = frames == idx2.driving
    assert torch.equal(kp_img[same], drv_h[same])
    assert torch.equal(held[:, 0], (idx2.driving - frames).float()) and (held[same] == 0).all()
    state = ts.state_dict()
    again = TrainSet(clips, "cpu", seed=99, augment=aug)
    again.load_state_dict(state)
    torch.testing.assert_close(again.sample_batch(2, 0.5, 2).kp_image, ts.sample_batch(2, 0.5, 2).kp_image)  # resume
    # the mouth's shape: ratios of lip distances to the face height, the same whatever the augmentation
    shape = tb.mouth_shape
    assert shape.shape == (4, 3) and torch.isfinite(shape).all()
    torch.testing.assert_close(shape, ts2.mouth_measures(idx2))
    assert (shape[:, 0] < shape[:, 1]).all() and (shape[:, 1] < shape[:, 2]).all()  # inner gap < outer < width
