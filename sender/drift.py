"""`DriftMonitor`: the sender's replica of the receiver's picture, and when to send a fresh source image.

The sender runs the receiver graph on what it sent (the dequantised keypoints the far end decodes, the
source image it holds, the mel window of the Opus-decoded speech it hears) every
`drift_check_interval_frames` frames, for the frame DRIFT_LAG_FRAMES back (once that frame's audio window
is coded). Without loss this is bit-exactly the far end's picture (`last_replica`). It measures the PSNR
of that picture against the camera frame and asks for a fresh source image (the current frame, small and
cheap: `EncoderConfig.refresh_size`) when the PSNR falls `drift_threshold_db` below the best it reached since
the last source change (the first check after a change only sets that level). Before it goes out, `trial`
draws the same frame from the refresh image as the far end will hold it: the Encoder sends it only if that
beats the current picture by `refresh_min_gain_db`, else `decline` makes the current level the baseline.

`NeutralWindow` holds the face frames since the last check and picks the most neutral one (eyes open, mouth
closed: `neutral_score`) as that source image (`EncoderConfig.refresh_pick` "neutral"): the generator warps the
source image and keeps its expression, so a refresh that caught a blink or an open mouth shows it for seconds.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from avfr.codec.data import SAMPLES_PER_FRAME, log_mel_window, mouth_opening, pcm_window
from avfr.codec.data.mouth import FACE_BOTTOM, FACE_TOP
from avfr.codec.runtime import OpusDecoder, ReceiverModel, source_input
from avfr.sender.config import EncoderConfig

__all__ = ["DRIFT_LAG_FRAMES", "DriftMonitor", "DriftReading", "NeutralWindow", "neutral_score", "psnr_db"]

logger = logging.getLogger(__name__)

DRIFT_LAG_FRAMES = 4  # the drift check renders the frame 160 ms back, once its whole audio window was coded
REPLICA_PCM_SAMPLES = 8 * 16_000  # the replica keeps the last 8 s of decoded speech
EYE_LID_PAIRS = ((159, 145), (386, 374))  # mediapipe face mesh: upper / lower lid of the left and right eye
NEUTRAL_TIE = 0.005  # neutral scores this close to the best (0.5 % of the face height) tie: the latest wins


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two uint8 images in dB (100 for identical images)."""
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 100.0 if mse <= 1e-10 else 10.0 * np.log10(255.0**2 / mse)


def neutral_score(landmarks: np.ndarray) -> float:
    """How neutral one face looks: eyes open, mouth closed.

    Args:
        landmarks: float (478, 2) px, mediapipe face mesh of one frame (NaN without a face).

    Returns:
        (left + right eye-lid gap - inner-lip gap) / face height (landmarks 159/145 + 386/374 - 13/14, over
        10/152): about 0.1 for open eyes and a closed mouth, lower for a blink (-0.08) or an open mouth
        (-0.05 to -0.2 in speech); NaN without a face. A ratio of distances: zoom and shift leave it unchanged.
    """
    x = np.asarray(landmarks, np.float64)  # (478, 2)
    height = float(np.linalg.norm(x[FACE_TOP] - x[FACE_BOTTOM]))
    if not height > 0:
        return float("nan")
    eyes = sum(float(np.linalg.norm(x[i] - x[j])) for i, j in EYE_LID_PAIRS) / height
    return float(eyes - mouth_opening(x[None])[0])


class NeutralWindow:
    """The face frames of the last `size` frames and the most neutral of them (`neutral_score`).

    Args:
        size: frames looked back (`drift_check_interval_frames`: the frames since the last drift check); at
            most this many camera frames are held (uint8 (256, 256, 3) copies, 196 kB each).
    """

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._frames: deque[tuple[int, np.ndarray, float]] = deque(maxlen=self.size)  # (index, rgb, score)

    def add(self, index: int, rgb: np.ndarray, landmarks: np.ndarray) -> None:
        """Hold camera frame `index` (uint8 (H, W, 3), copied) with its landmarks (478, 2) px; frames without a
        face (NaN landmarks) are skipped, frames `size` or more before `index` dropped."""
        while self._frames and self._frames[0][0] <= index - self.size:
            self._frames.popleft()
        score = neutral_score(landmarks)
        if np.isfinite(score):
            self._frames.append((index, np.array(rgb, np.uint8, copy=True), score))

    @property
    def scores(self) -> list[tuple[int, float]]:
        """(frame index, neutral score) of the frames held, oldest first."""
        return [(index, score) for index, _, score in self._frames]

    def pick(self) -> tuple[int, np.ndarray] | None:
        """(frame index, rgb) of the most neutral frame held, the latest of those within NEUTRAL_TIE of the best
        score (None: no face frame held)."""
        if not self._frames:
            return None
        best = max(score for _, _, score in self._frames)
        index, rgb, _ = next(f for f in reversed(self._frames) if f[2] >= best - NEUTRAL_TIE)
        return index, rgb


@dataclass(frozen=True)
class DriftReading:
    """One drift check: the frame rendered, its PSNR vs. the camera, the time it took, the verdict."""

    index: int  # the frame rendered (DRIFT_LAG_FRAMES back)
    psnr_db: float
    elapsed_ms: float  # replica audio + receiver graph + PSNR
    refresh: bool  # the picture drifted: send a new source image now


class DriftMonitor:
    """The far end's picture, rendered on the sender, and the drift test on it.

    Feed it what the far end gets: `set_source` for each source image, `add_audio` for the Opus packets,
    `add_frame` for each keypoint packet's dequantised keypoints; `due(index)` says when to `check`.

    Args:
        replica: the receiver graphs (the model's own, as the far end runs them).
        config: sender settings (drift_*, min_refresh_interval_frames, audio_bitrate_bps, causal_window).
    """

    def __init__(self, replica: ReceiverModel, config: EncoderConfig) -> None:
        self.replica = replica
        self.interval_frames = config.drift_check_interval_frames
        self.threshold_db = config.drift_threshold_db
        self.min_refresh_interval_frames = config.min_refresh_interval_frames
        self.causal_window = config.causal_window
        self._opus = OpusDecoder(config.audio_bitrate_bps)  # the speech the far end hears
        self._pcm = np.zeros(0, np.float32)  # Opus-decoded speech (for the mel windows)
        self._pcm_base = 0  # sample index of _pcm[0] (a multiple of 640)
        # (frame index, camera uint8 (256, 256, 3), kp (K, 2), jac (K, 2, 2)) of the last frames sent
        self._recent: deque[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = deque(maxlen=DRIFT_LAG_FRAMES + 1)
        self.last_replica: tuple[int, np.ndarray] | None = None  # (frame index, the far end's picture)
        self._baseline_psnr_db: float | None = None
        # first frame a check may render: one drawn with the current source, not the source's own frame (the
        # first source may be camera frame 0; a refresh shows the newest frame added)
        self._first_checkable = 1
        # frame index of the last automatic or requested refresh (none yet: the first may come at once)
        self.last_refresh_frame = -config.min_refresh_interval_frames
        self._previous_refresh_frame = self.last_refresh_frame
        # what the last check drew: (camera uint8 (256, 256, 3), kp, jac, log-mel window), for `trial`
        self._last_check: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        # the image the last `trial` drew from and its identity-encoder outputs (reused if it is sent)
        self._trial: tuple[np.ndarray, dict[str, np.ndarray]] | None = None

    def set_source(self, source_rgb: np.ndarray, extractor: object) -> None:
        """The far end now holds `source_rgb` (decoded uint8 (256, 256, 3)); the next check sets the baseline,
        on a frame after the newest one added (earlier frames were drawn with the previous source)."""
        self._baseline_psnr_db = None
        self._last_check = None
        self._first_checkable = self._recent[-1][0] + 1 if self._recent else 1
        trial, self._trial = self._trial, None
        if trial is not None and np.array_equal(trial[0], source_rgb):
            self.replica.restore_source(trial[1])  # the image `trial` drew from: priors and encoder already run
            return
        source5, _ = source_input(source_rgb, extractor)
        self.replica.set_source(source5)

    def note_refresh(self, index: int) -> None:
        """A requested source image went out at frame `index`: the next automatic one waits for
        min_refresh_interval_frames from here."""
        self.last_refresh_frame = index

    def add_audio(self, packets: list[bytes]) -> None:
        """Decode the Opus packets sent (as the far end does)."""
        for payload in packets:
            self._opus.decode(payload)

    def add_frame(self, index: int, rgb: np.ndarray, kp: np.ndarray, jac: np.ndarray) -> None:
        """Hold camera frame `index` and the dequantised keypoints kp (K, 2), jac (K, 2, 2) sent for it."""
        self._recent.append((index, rgb, kp, jac))

    def due(self, index: int) -> bool:
        """True: check after frame `index` (every interval_frames frames, with DRIFT_LAG_FRAMES + 1 held, the
        frame to render drawn with the current source)."""
        n = self.interval_frames
        return (n > 0 and index % n == n - 1 and len(self._recent) > DRIFT_LAG_FRAMES
                and self._recent[0][0] >= self._first_checkable)

    def check(self, current_face: bool) -> DriftReading:
        """Render what the far end shows for the frame DRIFT_LAG_FRAMES back (its audio window is coded) and
        compare it with the camera. A refresh is due when it drifted (drift_threshold_db below the best PSNR
        since the source change), the current frame has a face and the last refresh is
        min_refresh_interval_frames back; the first check after a source change only sets the baseline."""
        index, rgb, kp, jac = self._recent[0]
        t0 = time.perf_counter()
        self._decode_audio()
        window = pcm_window(self._pcm, index - self._pcm_base // SAMPLES_PER_FRAME, self.causal_window)
        mel = log_mel_window(window)
        picture = self.replica.frame(kp, jac, mel)
        self.last_replica = (index, picture)
        self._last_check = (rgb, kp, jac, mel)
        score = psnr_db(picture, rgb)
        elapsed_ms = 1000 * (time.perf_counter() - t0)
        if self._baseline_psnr_db is None:
            self._baseline_psnr_db = score
            return DriftReading(index, score, elapsed_ms, refresh=False)
        drifted = score < self._baseline_psnr_db - self.threshold_db
        self._baseline_psnr_db = max(self._baseline_psnr_db, score)  # the best this source has done
        refresh = bool(drifted and current_face
                       and index - self.last_refresh_frame >= self.min_refresh_interval_frames)
        if refresh:
            logger.info("frame %d: far-end picture drifted to %.1f dB (baseline %.1f dB): new source",
                        index, score, self._baseline_psnr_db)
            self._previous_refresh_frame, self.last_refresh_frame = self.last_refresh_frame, index
        return DriftReading(index, score, elapsed_ms, refresh)

    def trial(self, source_rgb: np.ndarray, extractor: object) -> float:
        """PSNR (dB) of the last checked frame drawn from `source_rgb` (uint8 (256, 256, 3), decoded as the far
        end would hold it) instead of the current source; the replica keeps its source.

        Raises:
            RuntimeError: no check ran since the last source change.
        """
        if self._last_check is None:
            raise RuntimeError("trial() needs a drift check first")
        rgb, kp, jac, mel = self._last_check
        saved = self.replica.source_tensors
        try:
            source5, _ = source_input(source_rgb, extractor)
            self.replica.set_source(source5)
            picture = self.replica.frame(kp, jac, mel)
            self._trial = (source_rgb, self.replica.source_tensors)
        finally:
            self.replica.restore_source(saved)
        return psnr_db(picture, rgb)

    def decline(self, score_db: float) -> None:
        """The refresh of the last check was not sent: `score_db` (the current picture's PSNR) becomes the
        baseline, so only a further drift triggers again, and no refresh interval was used up."""
        self._baseline_psnr_db = score_db
        self.last_refresh_frame = self._previous_refresh_frame
        self._trial = None

    def _decode_audio(self) -> None:
        """Bring the decoded speech up to date (the Opus packets sent so far)."""
        new = self._opus.take()
        if len(new):
            self._pcm = np.concatenate([self._pcm, new])
        excess = len(self._pcm) - REPLICA_PCM_SAMPLES  # keep the last 8 s
        if excess > 0:
            drop = excess - excess % SAMPLES_PER_FRAME
            self._pcm, self._pcm_base = self._pcm[drop:], self._pcm_base + drop
