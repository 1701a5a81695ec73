"""Training pairs sampled on the training device, without a DataLoader.

``TrainSet`` holds every frame of its clips with the two structural priors (uint8) and, per clip, the
clip-level log-mel of the clean speech and of real Opus round trips (float32). On CUDA all of it lives in
one device tensor (the whole data set is ~12k frames: ~4 GB of uint8 at 256x256x5), so a batch is a
gather plus on-device augmentation. On CPU the clips' own arrays (memmaps from the cache) are kept and
indexed per sample, so nothing is loaded before it is used.

A batch is ``(source5, driving5, mel)``:

- ``source5``, ``driving5``: (B, 5, 256, 256) float32 in [0, 1], channels R, G, B, mesh, mask; both frames
  of a pair come from the same clip, are distinct frames with a face found in both, and get the *same*
  augmentation (flip, scale/shift via ``grid_sample``; colour jitter on RGB only);
- ``mel``: (B, 1, 80, 19) float32 log-mel window of the driving frame, cut from the clip-level mel on the
  fixed grid of ``avfr.codec.data.audio`` (centred: columns [4i+10, 4i+29); causal: [4i, 4i+19)); clean, or
  a real Opus round trip (see :mod:`avfr.codec.train.mels`; silent for clips without audio).

The augmentation itself lives in :mod:`avfr.codec.train.augment`.

All randomness comes from one CPU ``torch.Generator`` per set (``state_dict`` / ``load_state_dict`` for
exact resume); the draws happen in a fixed order and number whatever the augmentation settings, so two
sets with the same seed pick the same pairs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from avfr.codec.data import LIP_LANDMARKS, ClipArrays, mouth_shape
from avfr.codec.train.augment import AugmentConfig, AugmentDraw, apply_augment, augment_boxes, augment_draw
from avfr.codec.train.mels import CENTRED_COL_OFFSET, MEL_COLS_PER_FRAME, MEL_WINDOW_COLS, OPUS_BITRATES_BPS, stack_mels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairIndex:
    """Which pairs a batch holds (all (B,) int64 CPU tensors)."""

    clip: Tensor  # index into TrainSet.clip_ids
    source: Tensor  # source frame index within the clip
    driving: Tensor  # driving frame index within the clip
    variant: Tensor  # mel variant, 0 = clean, k = TrainSet.variant_names[k]


@dataclass(frozen=True)
class TrainBatch:
    """One augmented training batch (``TrainSet.sample_batch``), on the set's device."""

    source: Tensor  # (B, 5, H, W) in [0, 1]
    driving: Tensor  # (B, 5, H, W) in [0, 1], the target
    mel: Tensor  # (B, 1, 80, 19) log-mel window of the driving frame
    mouth_box: Tensor  # (B, 4) lip box of the driving frame, grid coordinates (``mouth_boxes``)
    kp_image: Tensor  # (B, 5, H, W) the frame the driving keypoints come from (the driving frame unless held)
    held_frames: Tensor  # (B, 1) float32 driving minus keypoint frame index (0 = not held)
    mouth_shape: Tensor  # (B, 3) float32 ``mouth_measures`` of the driving frame (NaN without a face)


MOUTH_MARGIN = 0.25  # mouth box widened by this fraction of its size on every side
_LAG_SEED_OFFSET = 7919


class TrainSet:
    """Source/driving pairs with priors and Opus-augmented mel windows, sampled on ``device``.

    Args:
        clips: prepared clips; clips with fewer than two face frames are left out (logged).
        device: where batches are built (and, on CUDA, where the whole data set is kept).
        seed: seed of the set's generator.
        causal: past-only mel windows (latency mode) instead of centred ones.
        use_audio: False gives every sample the silent mel (audio ablation).
        use_priors: False gives zero mesh and mask channels (prior ablation).
        augment: augmentation settings; None for none (clean mel, raw frames).
        opus_mels: per clip id, precomputed Opus round-trip log-mels (each (80, 4T+29)), all clips with
            audio the same number, in the order of ``opus_bitrates_bps``; None computes them here.
        opus_bitrates_bps: bitrates of the Opus variants (computed, or the ones ``opus_mels`` holds).
        clip_weighting: how clips are drawn: "uniform", "frames" (by face frames) or "sqrt" (by
            their square root: long clips count more, but do not drown the short ones).

    Raises:
        ValueError: no usable clip, or mels whose shapes disagree with the clips.
    """

    def __init__(self, clips: Sequence[ClipArrays], device: torch.device | str = "cpu", *, seed: int = 0,
                 causal: bool = False, use_audio: bool = True, use_priors: bool = True,
                 augment: AugmentConfig | None = AugmentConfig(),  # noqa: B008 - a frozen dataclass
                 opus_mels: Mapping[str, Sequence[np.ndarray]] | None = None,
                 opus_bitrates_bps: Sequence[int] = OPUS_BITRATES_BPS,
                 clip_weighting: str = "sqrt") -> None:
        self.device = torch.device(device)
        self.causal = causal
        self.use_audio = use_audio
        self.use_priors = use_priors
        self.augment = augment
        self.generator = torch.Generator()
        # a second stream for the held-keypoint lags, so that runs with and without them draw the same pairs
        self.lag_generator = torch.Generator()
        self.reseed(seed)
        usable = []
        for clip in clips:
            n_face = int(np.count_nonzero(clip.face_found))
            if n_face < 2:
                log.warning("clip %s: %d frames with a face, left out of training", clip.clip_id, n_face)
                continue
            usable.append(clip)
        if not usable:
            raise ValueError("no clip with at least two face frames")
        self.clip_ids: tuple[str, ...] = tuple(c.clip_id for c in usable)
        self.num_frames = np.array([c.frames.shape[0] for c in usable], np.int64)  # (C,)
        self.height, self.width = (int(s) for s in usable[0].frames.shape[1:3])
        self.landmarks: list[np.ndarray] = [c.landmarks for c in usable]  # (T, 478, 2) px, NaN = no face
        self.face_frames: list[np.ndarray] = [np.flatnonzero(c.face_found) for c in usable]

        # face-frame table: clip c's face frames are _valid[_valid_off[c] : _valid_off[c] + _valid_n[c]]
        counts = np.array([len(v) for v in self.face_frames], np.int64)
        self._valid = torch.from_numpy(np.concatenate(self.face_frames).astype(np.int64))
        self._valid_n = torch.from_numpy(counts)
        self._valid_off = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64))
        weights = {"uniform": np.ones_like(counts, np.float64), "frames": counts.astype(np.float64),
                   "sqrt": np.sqrt(counts.astype(np.float64))}
        if clip_weighting not in weights:
            raise ValueError(f"clip_weighting {clip_weighting!r}: expected one of {sorted(weights)}")
        self._clip_w = torch.from_numpy(weights[clip_weighting])

        self.variant_names: tuple[str, ...]  # "clean", "opus<bps>", ...: mel variants, 0 = clean
        self.variant_names, self._mel_off, self._mel = stack_mels(usable, self.use_audio, opus_mels,
                                                                  opus_bitrates_bps, self.device)
        self._build_images(usable)
        log.info("TrainSet: %d clips, %d frames (%d with a face), %d mel variants, on %s",
                 len(usable), int(self.num_frames.sum()), int(counts.sum()), len(self.variant_names),
                 self.device)

    # ------------------------------------------------------------------ building

    def _build_images(self, clips: Sequence[ClipArrays]) -> None:
        """Keep frames and priors: one (N, C, H, W) uint8 device tensor on CUDA, the clips' arrays on CPU."""
        starts = np.concatenate([[0], np.cumsum(self.num_frames)[:-1]]).astype(np.int64)
        self._frame_off = torch.from_numpy(starts)  # (C,) first row of each clip
        self._host: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self._images: Tensor | None = None
        if self.device.type == "cpu":
            self._host = [(c.frames, c.mesh, c.mask) for c in clips]
            return
        n_ch = 5 if self.use_priors else 3
        total = int(self.num_frames.sum())
        self._images = torch.empty((total, n_ch, self.height, self.width), dtype=torch.uint8,
                                   device=self.device)
        for off, clip in zip(self._frame_off.tolist(), clips, strict=True):
            t = clip.frames.shape[0]
            dst = self._images[off:off + t]
            rgb = torch.from_numpy(np.ascontiguousarray(clip.frames)).to(self.device)  # (T, H, W, 3)
            dst[:, :3] = rgb.permute(0, 3, 1, 2)
            if self.use_priors:
                dst[:, 3] = torch.from_numpy(np.ascontiguousarray(clip.mesh)).to(self.device)
                dst[:, 4] = torch.from_numpy(np.ascontiguousarray(clip.mask)).to(self.device)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """The generators' states (everything else is rebuilt from the clips)."""
        return {"generator": self.generator.get_state(), "lag_generator": self.lag_generator.get_state()}

    def reseed(self, seed: int) -> None:
        """Restart both streams from ``seed`` (as a new set with that seed)."""
        self.generator.manual_seed(int(seed))
        self.lag_generator.manual_seed(int(seed) + _LAG_SEED_OFFSET)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the generators' states saved by ``state_dict`` (older states hold no lag stream)."""
        self.generator.set_state(state["generator"])
        if "lag_generator" in state:
            self.lag_generator.set_state(state["lag_generator"])

    # ------------------------------------------------------------------ sampling

    def _draw(self, batch_size: int) -> tuple[PairIndex, AugmentDraw]:
        """Draw pairs and augmentation parameters (always the same number of draws, in a fixed order)."""
        g, b = self.generator, batch_size
        clip = torch.multinomial(self._clip_w, b, replacement=True, generator=g)  # (B,)
        n = self._valid_n[clip]  # (B,) >= 2
        s = torch.minimum((torch.rand(b, generator=g, dtype=torch.float64) * n).long(), n - 1)
        step = torch.minimum((torch.rand(b, generator=g, dtype=torch.float64) * (n - 1)).long(), n - 2)
        d = (s + 1 + step) % n  # a different face frame of the same clip
        opus_pick = torch.randint(1, max(len(self.variant_names), 2), (b,), generator=g)
        opus_coin = torch.rand(b, generator=g)
        u = torch.rand(b, 8, generator=g) * 2 - 1  # (B, 8) uniform in [-1, 1)
        a = self.augment
        if a is None:
            variant = torch.zeros(b, dtype=torch.int64)
        else:
            use_opus = (opus_coin < a.opus_prob) & (len(self.variant_names) > 1)
            variant = torch.where(use_opus, opus_pick, torch.zeros_like(opus_pick))
        idx = PairIndex(clip=clip, source=self._valid[self._valid_off[clip] + s],
                        driving=self._valid[self._valid_off[clip] + d], variant=variant)
        return idx, augment_draw(a, u)

    def sample(self, batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
        """A random augmented batch: source5, driving5 (B, 5, H, W) in [0, 1], mel (B, 1, 80, 19)."""
        _, src, drv, mel = self.sample_indexed(batch_size)
        return src, drv, mel

    def sample_with_mouth(self, batch_size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Like ``sample`` (the same draws) plus the driving frames' mouth boxes after augmentation.

        Returns:
            source5, driving5 (B, 5, H, W), mel (B, 1, 80, 19), mouth box (B, 4) float32 (x0, y0, x1, y1) in
            grid_sample coordinates ([-1, 1], align_corners=False), on the device.
        """
        idx, draw = self._draw(batch_size)
        src, drv, mel = self._augmented_batch(idx, draw)
        return src, drv, mel, self.mouth_boxes(idx, draw).to(self.device)

    def sample_batch(self, batch_size: int, hold_prob: float = 0.0, max_lag: int = 1) -> TrainBatch:
        """Like ``sample_with_mouth`` (the same draws) plus held keypoint frames and the mouth's shape.

        A share ``hold_prob`` of the samples takes its keypoint frame 1..``max_lag`` face frames *before* the
        driving frame (uniform), the rest the driving frame itself. That is what the receiver renders when
        keypoint packets are lost: it holds the last keypoints while the speech goes on, so only the audio
        can tell the mouth of the frames in between.
        """
        idx, draw = self._draw(batch_size)
        frames = self.held_frames(idx, hold_prob, max_lag)
        if hold_prob <= 0:  # no frame is held: the keypoint frames are the driving frames
            src, drv, mel = self._augmented_batch(idx, draw)
            kp_img = drv
        else:
            src, drv, mel = self.batch(idx)
            kp_img = self.images(idx.clip, frames)
            if self.augment is not None:
                src, drv, kp_img = apply_augment(draw, src, drv, kp_img)
        held = (idx.driving - frames).float()[:, None].to(self.device)
        return TrainBatch(src, drv, mel, self.mouth_boxes(idx, draw).to(self.device), kp_img, held,
                          self.mouth_measures(idx).to(self.device))

    def mouth_measures(self, idx: PairIndex) -> Tensor:
        """The driving frames' mouth shape from their landmarks: (B, 3) float32 inner-lip gap (13-14), outer-lip
        gap (0-17) and mouth width (61-291) in % of the face height (10-152), NaN without a face; on the CPU.
        Ratios of distances: the flip, zoom and shift augmentation leaves them unchanged."""
        pairs = zip(idx.clip.tolist(), idx.driving.tolist(), strict=True)
        lm = np.stack([self.landmarks[c][f] for c, f in pairs])  # (B, 478, 2) px
        return torch.from_numpy((100 * mouth_shape(lm, min_height_px=1.0)).astype(np.float32))  # (B, 3)

    def held_frames(self, idx: PairIndex, hold_prob: float, max_lag: int) -> Tensor:
        """Keypoint frames for ``idx``: the driving frame, or with ``hold_prob`` one 1..``max_lag`` face
        frames earlier (the clip's first face frame at most). Draws from ``lag_generator``.

        Returns:
            (B,) int64 frame indices within the clips.
        """
        b = len(idx.clip)
        coin = torch.rand(b, generator=self.lag_generator)
        lag = torch.randint(1, max(int(max_lag), 1) + 1, (b,), generator=self.lag_generator)
        out = idx.driving.clone()
        for k in range(b):
            if coin[k] >= hold_prob or max_lag < 1:
                continue
            faces = self.face_frames[int(idx.clip[k])]
            pos = int(np.searchsorted(faces, int(idx.driving[k])))
            out[k] = int(faces[max(pos - int(lag[k]), 0)])
        return out

    def mouth_boxes(self, idx: PairIndex, draw: AugmentDraw | None = None) -> Tensor:
        """Bounding boxes of the lip landmarks of the driving frames, widened by ``MOUTH_MARGIN``.

        Args:
            idx: pairs (driving frames have a face: sampled pairs always do).
            draw: the augmentation applied to the batch (flip, then zoom/shift), or None for none.

        Returns:
            float32 (B, 4) (x0, y0, x1, y1) in [-1, 1] grid coordinates of the (augmented) frame, on the CPU.
        """
        boxes = np.zeros((len(idx.clip), 4), np.float32)
        for b, (c, f) in enumerate(zip(idx.clip.tolist(), idx.driving.tolist(), strict=True)):
            lips = np.asarray(self.landmarks[c][f], np.float32)[LIP_LANDMARKS]  # (40, 2) px
            if not np.isfinite(lips).all():
                boxes[b] = (1.0, 1.0, 1.0, 1.0)  # empty box: no mouth term for this sample
                continue
            lo, hi = lips.min(0), lips.max(0)
            pad = MOUTH_MARGIN * (hi - lo)
            lo, hi = lo - pad, hi + pad
            size = np.array([self.width, self.height], np.float32)
            boxes[b, :2] = (lo + 0.5) / size * 2 - 1  # pixel centres -> align_corners=False grid
            boxes[b, 2:] = (hi + 0.5) / size * 2 - 1
        out = torch.from_numpy(boxes)
        if draw is None or self.augment is None:
            return out
        return augment_boxes(out, draw)

    def sample_indexed(self, batch_size: int) -> tuple[PairIndex, Tensor, Tensor, Tensor]:
        """Like ``sample`` but also returns which pairs were drawn."""
        idx, draw = self._draw(batch_size)
        return (idx, *self._augmented_batch(idx, draw))

    def _augmented_batch(self, idx: PairIndex, draw: AugmentDraw) -> tuple[Tensor, Tensor, Tensor]:
        """``batch(idx)`` with the draw's augmentation applied (when the set augments)."""
        src, drv, mel = self.batch(idx)
        if self.augment is not None:
            src, drv = apply_augment(draw, src, drv)
        return src, drv, mel

    def batch(self, idx: PairIndex) -> tuple[Tensor, Tensor, Tensor]:
        """The un-augmented batch of given pairs.

        Args:
            idx: pairs (frame indices within their clips, any frames, mel variants).

        Returns:
            source5, driving5: (B, 5, H, W) float32 in [0, 1]; mel: (B, 1, 80, 19) float32, on the device.
        """
        src = self.images(idx.clip, idx.source)
        drv = self.images(idx.clip, idx.driving)
        return src, drv, self.mel_windows(idx.clip, idx.driving, idx.variant)

    def images(self, clip: Tensor, frame: Tensor) -> Tensor:
        """Frames with priors: (B,) clip and frame indices -> (B, 5, H, W) float32 in [0, 1] on the device."""
        b = clip.shape[0]
        if self._images is not None:
            rows = (self._frame_off[clip] + frame).to(self.device)
            img = self._images.index_select(0, rows)  # (B, C, H, W) uint8
            if not self.use_priors:
                img = torch.cat([img, img.new_zeros((b, 2, self.height, self.width))], 1)
        else:
            assert self._host is not None
            out = np.zeros((b, self.height, self.width, 5), np.uint8)  # (B, H, W, 5)
            for k, (c, f) in enumerate(zip(clip.tolist(), frame.tolist(), strict=True)):
                frames, mesh, mask = self._host[c]
                out[k, ..., :3] = frames[f]
                if self.use_priors:
                    out[k, ..., 3] = mesh[f]
                    out[k, ..., 4] = mask[f]
            img = torch.from_numpy(out).permute(0, 3, 1, 2)  # (B, 5, H, W)
        return img.float().div_(255.0)

    def mel_windows(self, clip: Tensor, frame: Tensor, variant: Tensor) -> Tensor:
        """Mel windows of frames: (B,) indices -> (B, 1, 80, 19) float32 on the device."""
        start = self._mel_off[clip] + MEL_COLS_PER_FRAME * frame + (0 if self.causal else CENTRED_COL_OFFSET)
        cols = start[:, None] + torch.arange(MEL_WINDOW_COLS)  # (B, 19)
        win = self._mel[variant[:, None].to(self.device), cols.to(self.device)]  # (B, 19, 80)
        return win.transpose(1, 2).unsqueeze(1).float()  # (B, 1, 80, 19)

    def fixed_pairs(self, max_per_clip: int, stride: int, variant: int) -> PairIndex:
        """Deterministic validation pairs (same identity: source and driving from one clip).

        Each clip's source is its first face frame; the driving frames are up to ``max_per_clip`` face
        frames evenly spread over the clip (about one every ``stride`` face frames), the source excluded.

        Args:
            max_per_clip: cap on driving frames per clip.
            stride: target spacing in face frames.
            variant: mel variant for every pair (0 = clean).
        """
        clips, srcs, drvs = [], [], []
        for c, valid in enumerate(self.face_frames):
            rest = valid[1:]
            k = min(max_per_clip, max(1, math.ceil(len(rest) / stride)))
            pick = rest[np.unique(np.round(np.linspace(0, len(rest) - 1, k)).astype(np.int64))]
            clips += [c] * len(pick)
            srcs += [int(valid[0])] * len(pick)
            drvs += pick.tolist()
        n = len(clips)
        return PairIndex(clip=torch.tensor(clips, dtype=torch.int64),
                         source=torch.tensor(srcs, dtype=torch.int64),
                         driving=torch.tensor(drvs, dtype=torch.int64),
                         variant=torch.full((n,), int(variant), dtype=torch.int64))

    def default_val_variant(self) -> int:
        """The mel variant validation uses: the highest-bitrate Opus round trip (clean if none)."""
        return len(self.variant_names) - 1
