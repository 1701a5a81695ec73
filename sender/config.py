"""The `Encoder`'s data types: `EncoderConfig` (sender settings), `EncoderStats` (counters of one outgoing
call) and `OutMessage` (one message for one of the two data channels of proto/SPEC.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["REFRESH_PICKS", "EncoderConfig", "EncoderStats", "OutMessage"]

REFRESH_PICKS = ("current", "neutral")  # EncoderConfig.refresh_pick


@dataclass(frozen=True)
class EncoderConfig:
    """Sender settings (the stream's parameters travel in the Hello).

    Attributes:
        kp_bits, jac_bits, jac_abs_max: keypoint quantisation: 7-bit keypoints, 7-bit jacobian entries in
            [-3, 3) (step 3/64). The trained detector's jacobian entries stay within [-0.7, 2.7] (p0.1..p99.9 on
            the 7 dev clips), so the proto's +-4 range wastes levels, and the jacobians' precision is what the
            picture needs: they change slowly (0.019 RMS a frame against a 0.125 step at 6 bits over +-4), so
            a finer step costs few bits. Session 8, the shipped model's keypoints of the 7 dev clips under a 2000
            bit/s budget (`benchmarks/bench_quant.py`'s measurement, `--stride 10`; PSNR / LMD / mouth
            LMD of the render against the real frames; float keypoints: 23.71 dB, 2.04 px, 3.07 px):

            | kp/jac bits, jac_abs_max | kbit/s | PSNR dB | LMD px | mouth LMD px |
            |---|---:|---:|---:|---:|
            | 7/6, 4.0 (sessions 1-7) | 1.62 | 22.78 | 2.51 | 3.64 |
            | 7/7, 4.0 | 1.74 | 23.20 | 2.34 | 3.45 |
            | **7/7, 3.0** | 1.81 | 23.29 | 2.31 | 3.39 |
            | 7/8, 4.0 | 1.99 | 23.34 | 2.29 | 3.32 |
            | 7/7, 2.75 (clips the largest entries) | 1.75 | 23.20 | 2.33 | 3.38 |

            Coarser jacobian hysteresis to buy the rate back loses what the bits bought (7/7 at 3.0 with
            rate levels up to 1.5-2 steps of jacobian hysteresis: 1.60 kbit/s, 22.79 dB, LMD 2.59).
        key_interval_frames: a KEY packet at least this often (10 s; a receiver that misses packets asks for
            one at once with a Refresh, and again while none comes, so the periodic KEY only backs that up).
            Session 10, the call's path (dev split, q7, whole clips, kbit/s (b)): every 100 frames 2.00 kbit/s,
            24.67 dB, VMAF 26.7, LMD 2.32 px; every 250: 1.95 kbit/s, 24.68 dB, VMAF 26.8, LMD 2.31 px (a
            KEY costs ~35 bytes more than a delta; the rate control spends part of what it saves).
        kp_hysteresis_steps: keypoint level hysteresis of the keypoint encoder (0.5: plain rounding; 0.75
            saves 0.07 kbit/s for 0.04 dB at 7/6 bits); the rate controller's level 0.
        keypoint_budget_bps: keypoint stream budget of the rate controller (0: off, the stream is coded
            at kp_hysteresis_steps throughout), packet bytes included. See `KeypointRateController`. The call's
            path on the 7 dev clips (`avfr-codec bench --split dev --codecs avfr --avfr-points q7 --no-identity`,
            whole clips, the fourth checkpoint `dafedfde`; kbit/s (b): keypoints + refreshes + the first source
            over 5 min):

            | wire, quantisation, budget | kbit/s | PSNR | SSIM | VMAF | LMD px | mouth LMD px | lip sync |
            |---|---:|---:|---:|---:|---:|---:|---:|
            | v1, 7/6 over +-4, 2000 (sessions 1-7) | 2.30 | 23.96 | 0.790 | 23.7 | 2.49 | 3.07 | 0.24 |
            | v1, 7/7 over +-3, 1800 (session 8) | 2.38 | 24.49 | 0.798 | 25.2 | 2.40 | 3.05 | 0.23 |
            | **v2, 7/7 over +-3, 1400** | **1.98** | 24.50 | 0.798 | 25.3 | 2.40 | 3.05 | 0.21 |
            | v2, 7/7 over +-3, 1600 | 2.04 | 24.55 | 0.800 | 25.9 | 2.36 | 3.02 | 0.25 |
            | v2, 7/7 over +-3, 1800 | 2.09 | 24.58 | 0.801 | 26.1 | 2.33 | 2.98 | 0.25 |

            Wire version 2's one-byte DELTA header (3 bytes in v1) takes 0.4 kbit/s off every budget's packets:
            1400 now draws what 1800 drew in v1 (same PSNR, VMAF, landmarks) at 0.40 kbit/s less, the one budget
            that keeps a call within 2 kbit/s with its refreshes counted; the larger budgets buy a little picture
            (1800: +0.08 dB, VMAF +0.8, LMD -0.07 px) for +0.11 kbit/s.
        rate_window_packets: keypoint packets in the rate controller's sliding window (25 = 1 s).
        audio_bitrate_bps: Opus target bitrate, 6000..16000 for speech.
        causal_window: announce the causal (past-only) audio window.
        threads: onnxruntime intra-op threads per graph.
        drift_check_interval_frames: frames between drift checks (0: off).
        drift_threshold_db: PSNR drop (vs. right after the last source change) that triggers a refresh.
        min_refresh_interval_frames: at least this many frames between automatic refreshes (the first one
            may follow the call's first source image at once).
        source_quality: WebP quality of the first source image (and of refreshes the receiver asks for).
        refresh_size: side in px of an automatic (drift) refresh image; the receiver upscales it to 256. A
            refresh only has to give the generator the new pose: on the large-motion dev clips a 96 px WebP
            at quality 30 (~0.6 kB) draws the following frames as well as a 256 px one at quality 90 (~6 kB).
        refresh_quality: WebP quality of an automatic refresh image.
        refresh_pick: the frame an automatic refresh sends: "current" (the frame of the drift check) or
            "neutral" (of the face frames since the last check, the one with the eyes most open and the mouth
            most closed: `avfr.sender.drift.NeutralWindow`). A refresh the receiver asks for sends the
            current frame either way. Measured on the 4 dev clips that refresh (edtalk_expr, pcavs_00098,
            pcavs_681100216, lp_d9; `avfr-codec bench --split dev --codecs avfr --avfr-points q7 --no-identity`,
            whole clips; kbit/s: keypoints + refreshes; mouth LMD over the 40 lip points):

            | refresh_pick | kbit/s | PSNR dB | SSIM | VMAF | LMD px | mouth LMD px | refreshes |
            |---|---:|---:|---:|---:|---:|---:|---:|
            | **current (default)** | 2.45 | **20.84** | 0.755 | **15.04** | 2.82 | **3.60** | 7 |
            | neutral | **2.36** | 20.78 | **0.756** | 14.29 | **2.74** | 3.76 | 6 |

            PSNR per clip, current -> neutral: edtalk_expr 18.61 -> 18.99, pcavs_00098 19.42 -> 18.97,
            pcavs_681100216 20.60 -> 20.32, lp_d9 24.73 -> 24.83 (one refresh fewer); mouth LMD 4.35 -> 4.27,
            3.06 -> 3.53, 3.16 -> 3.11, 3.83 -> 4.13. Neutral frames help the expressive clip (LMD 3.76 -> 3.50
            px) but lose PSNR on two clips and mouth LMD on the mean (the frame picked may be up to 1 s older
            than the pose that drifted), so the default stays "current".
        refresh_payback_s: the keypoint rate control pays an automatic refresh back over this long (its bits
            are added to the keypoint window, spread over the period), so keypoints + refreshes stay near
            keypoint_budget_bps (0: refreshes come on top of the budget).
        refresh_min_gain_db: an automatic refresh is sent only if the sender's replica, drawing the checked frame
            from the refresh image as the far end will hold it, beats the current picture by at least this much
            (PSNR dB); otherwise the current level becomes the drift baseline (0: every drifted check sends).
            A refresh is a small, coarse image: on a clip the generator still draws well, it can cost picture
            as well as bits. Session 9, the call's path on the 7 dev clips (as above, wire v2, budget 1400):

            | drift refresh | kbit/s | PSNR | SSIM | VMAF | LMD px | mouth LMD px | source images |
            |---|---:|---:|---:|---:|---:|---:|---:|
            | every drifted check (before) | 1.98 | 24.50 | 0.798 | 25.3 | 2.40 | 3.05 | 14 |
            | **trial, 1 dB gain** | **1.90** | 24.51 | 0.801 | 26.1 | 2.33 | 2.93 | 12 |
            | trial, threshold 2 dB | 2.04 | 24.56 | 0.801 | 26.2 | 2.35 | 3.05 | 14 |
            | trial, refreshes 3 s apart | 2.04 | 24.60 | 0.803 | 26.7 | 2.32 | 2.90 | 14 |

            The trial declined two of lp_d9's three refreshes (VMAF 38.0 -> 43.8, LMD 2.71 -> 2.19 px) and kept
            every one of the large-motion clips'; at q8 it declined retalking_2's (30.31 -> 31.60 dB). Refreshes
            3 s apart lift pcavs_00098 to 21.27 dB (20.65) but take the mean over 2 kbit/s.
        ts0_90k: media timestamp of frame 0 (uint32).
        first_seq: seq of the first keypoint packet.
    """

    kp_bits: int = 7
    jac_bits: int = 7
    jac_abs_max: float = 3.0
    key_interval_frames: int = 250
    kp_hysteresis_steps: float = 0.75
    keypoint_budget_bps: int = 1400
    rate_window_packets: int = 25
    audio_bitrate_bps: int = 12_000
    causal_window: bool = False
    threads: int = 1
    drift_check_interval_frames: int = 25
    drift_threshold_db: float = 3.0
    min_refresh_interval_frames: int = 125
    source_quality: int = 90
    refresh_size: int = 96
    refresh_quality: int = 30
    refresh_pick: str = "current"
    refresh_payback_s: float = 10.0
    refresh_min_gain_db: float = 1.0
    ts0_90k: int = 0
    first_seq: int = 0

    def __post_init__(self) -> None:
        if self.refresh_pick not in REFRESH_PICKS:
            raise ValueError(f"refresh_pick is {self.refresh_pick!r}, not one of {REFRESH_PICKS}")


@dataclass
class EncoderStats:
    """Counters of one outgoing call (bytes are message bytes, data-channel framing excluded)."""

    frames: int = 0
    no_face_frames: int = 0
    held_frames: int = 0  # frames sent as holds because the sender was behind real time
    keypoint_packets: int = 0
    keypoint_bytes: int = 0
    kp_hysteresis_steps: float = float("nan")  # rate control: hysteresis of the next packet, in steps
    jac_hysteresis_steps: float = float("nan")
    rate_level: int = 0  # rate control: index into RATE_LEVELS (0: finest)
    rate_held_frames: int = 0  # frames the rate control sent as repeats of the last levels
    keypoint_window_bps: float = 0.0  # keypoint bits (+ refreshes paid back) of the last rate window, per s
    audio_packets: int = 0
    audio_bytes: int = 0
    source_images: int = 0
    source_bytes: int = 0
    refreshes: int = 0  # source images re-sent (drift, request or forced)
    refresh_bytes: int = 0  # their SOURCE_CHUNK bytes (source_bytes includes them)
    refresh_frame: int = -1  # the camera frame the last refresh image shows (-1: none yet)
    refreshes_declined: int = 0  # drifted checks whose refresh image would not have drawn better (not sent)
    keys_requested: int = 0
    drift_checks: int = 0
    last_drift_psnr_db: float = float("nan")
    priors_ms: float = 0.0  # total time in mediapipe
    keypoints_ms: float = 0.0  # total time in the keypoint graph
    drift_ms: float = 0.0  # total time in the replica generator
    refused: str = ""  # the peer's Error text when it refused the call


@dataclass(frozen=True)
class OutMessage:
    """One message to send: `channel` is CONTROL_CHANNEL_LABEL or MEDIA_CHANNEL_LABEL."""

    channel: str
    data: bytes = field(repr=False)
