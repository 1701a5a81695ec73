"""Training bundles: the prepared clips packed small enough to travel to a GPU box.

A GPU box for training has torch, numpy and OpenCV but no mediapipe, no PyAV and no libopus, and what
travels to it is capped (64 MiB here, the repository's ~35 MB included). A bundle (version 2) holds, with the
sizes of all 167 clips of ../shared/data (39,795 frames, 11.2 min of speech) at the defaults, 29.3 MB in all:

- ``<id>.rgb.mp4``: the 256x256 RGB frames re-encoded with libx264 (``crf`` 28, yuv420p like the source clips):
  12.1 MB, 37.1 dB mean PSNR against the cache's frames (5% of frames under 35.0 dB);
- ``<id>.mask.mp4``: the segmentation prior as a grey video (smooth: ``mask_crf`` 40 keeps a mean error of 1.4
  grey levels): 3.3 MB;
- ``<id>.npz``: face flags, landmarks (4.8 MB) and log-mels (8.7 MB), zip members compressed with LZMA;
- ``landmarks_pca.npz``: the bundle's landmark basis, ``mean`` float32 (956,) and ``basis`` float16 (956, K):
  0.3 MB.

Landmarks ((T, 478, 2) px, flattened to 956 values) are coded as ``mean + basis @ coef + residual``:
``lm_coef_dt`` int32 (T, K) holds the coefficients in 1/``LANDMARK_COEF_SCALE`` units, frame 0 absolute then
frame-to-frame differences, and ``lm_residual`` int16 (T, 956) what is left in ``LANDMARK_STEP_PX`` steps
(mostly 0), so every landmark comes back within ``LANDMARK_STEP_PX / 2`` (1/16 px). Frames without a face
store the previous coefficients and a zero residual; ``face_found`` says which rows are NaN.

Log-mels (natural log, (80, 4T+29)) are uint8 codes ``round((x - MEL_LOG_MIN) / MEL_LOG_STEP)``:
``MEL_LOG_MIN = log(1e-5)`` is the floor of ``clip_log_mel`` (silence comes back exactly) and code 255 is
+5.49, above any value seen in the data (max 5.29); error at most ``MEL_LOG_STEP / 2`` (1/30). ``mel_codes``
uint8 (1 + V, 80, M) holds the clean codes, then for each Opus round trip (``opus_bitrates_bps``: the box cannot
run Opus) its codes minus the clean codes, modulo 256 (small numbers: they compress well).

The mesh prior is redrawn from the decoded landmarks with ``avfr.codec.data.priors.render_mesh`` (the same code;
0.6 grey levels from the cache's mesh on average), so it costs no bytes. The scales and steps below are part of
format version 2 (``bundle.json`` repeats them): changing one means a new ``BUNDLE_VERSION``.

``load_bundle`` rebuilds ``ClipArrays`` from a bundle of version 2, or of version 1 (earlier code: float16 mels and
int16 1/16 px landmarks, delta-coded, in ``np.savez_compressed`` files, no basis).
"""

from __future__ import annotations

import json
import logging
import lzma
import subprocess
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from avfr.codec.data.audio import LOG_FLOOR, clip_log_mel
from avfr.codec.data.cache import NUM_LANDMARKS, ClipArrays
from avfr.codec.data.priors import render_mesh

log = logging.getLogger(__name__)

BUNDLE_VERSION = 2
READABLE_VERSIONS = (1, 2)
OPUS_BITRATES_BPS: tuple[int, ...] = (8000, 16000)
DEFAULT_CRF = 28  # the travel preset: all 167 clips in 29.3 MB (crf 27: 30.8 MB)
DEFAULT_MASK_CRF = 40
MEL_LOG_MIN = float(np.log(np.float32(LOG_FLOOR)))  # -11.5129: code 0, the log-mel of silence
MEL_LOG_STEP = 1.0 / 15.0  # code 255 = +5.487
LANDMARK_PCA_DIMS = 160  # K: 128 leaves 0.03 px RMS on the 167 clips; 160..192 code smallest
LANDMARK_COEF_SCALE = 8.0  # coefficient units per px (4 and 16 code larger)
LANDMARK_STEP_PX = 0.125  # residual step: landmarks come back within 1/16 px
LANDMARK_CLAMP_PX = (-1024.0, 1280.0)  # the range render_mesh draws; keeps every code inside int16
_V1_LANDMARK_SCALE = 16.0  # version 1: int16 units per px
_DIMS = NUM_LANDMARKS * 2  # 956 landmark coordinates per frame
_PCA_FILE = "landmarks_pca.npz"


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


def _save_npz_lzma(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write an ``.npz`` whose members are LZMA-compressed (``np.load`` reads it: zipfile decompresses)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_LZMA) as zf:
        for name, array in arrays.items():
            with zf.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)


# ---------------------------------------------------------------------------------------------- mels


def quantise_log_mel(mel: np.ndarray) -> np.ndarray:
    """float log-mel -> uint8 codes on the fixed grid ``MEL_LOG_MIN + MEL_LOG_STEP * code`` (clipped to 0..255)."""
    return np.clip(np.round((np.asarray(mel, np.float32) - MEL_LOG_MIN) / MEL_LOG_STEP), 0, 255).astype(np.uint8)


def dequantise_log_mel(codes: np.ndarray) -> np.ndarray:
    """uint8 codes -> float32 log-mel (within ``MEL_LOG_STEP / 2`` of the quantised values inside the grid)."""
    return (MEL_LOG_MIN + MEL_LOG_STEP * codes.astype(np.float32)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- landmarks


def fit_landmark_basis(clips: Sequence[ClipArrays], dims: int = LANDMARK_PCA_DIMS) -> tuple[np.ndarray, np.ndarray]:
    """Principal components of the clips' face-frame landmarks.

    Returns:
        mean float32 (956,) px and basis float16 (956, K), K = min(dims, face frames, 956); (956, 0) without faces.
    """
    total = np.zeros(_DIMS, np.float64)
    outer = np.zeros((_DIMS, _DIMS), np.float64)
    count = 0
    for clip in clips:
        x = _clamped(clip.landmarks)[np.asarray(clip.face_found, bool)]  # (F, 956)
        total += x.sum(0)
        outer += x.T @ x
        count += len(x)
    if count == 0:
        return np.zeros(_DIMS, np.float32), np.zeros((_DIMS, 0), np.float16)
    mean = total / count
    cov = outer / count - np.outer(mean, mean)
    _, vectors = np.linalg.eigh(cov)  # ascending eigenvalues
    k = min(dims, count, _DIMS)
    return mean.astype(np.float32), np.ascontiguousarray(vectors[:, ::-1][:, :k]).astype(np.float16)


def _clamped(landmarks: np.ndarray) -> np.ndarray:
    """(T, 478, 2) px -> float64 (T, 956) inside ``LANDMARK_CLAMP_PX`` (NaN rows stay NaN)."""
    return np.clip(np.asarray(landmarks, np.float64).reshape(-1, _DIMS), *LANDMARK_CLAMP_PX)


def encode_landmarks(landmarks: np.ndarray, face_found: np.ndarray, mean: np.ndarray,
                     basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks (T, 478, 2) px -> (``lm_coef_dt`` int32 (T, K), ``lm_residual`` int16 (T, 956)).

    Raises:
        ValueError: a residual outside int16 (only for landmarks the basis cannot describe at all).
    """
    b = basis.astype(np.float64)  # (956, K)
    face = np.asarray(face_found, bool)
    x = _clamped(landmarks)
    coef = np.zeros((len(x), b.shape[1]), np.int64)
    residual = np.zeros(x.shape, np.int64)
    coef[face] = np.round((x[face] - mean) @ b * LANDMARK_COEF_SCALE)
    pred = mean + (coef[face] / LANDMARK_COEF_SCALE) @ b.T  # (F, 956)
    residual[face] = np.round((x[face] - pred) / LANDMARK_STEP_PX)
    if residual.size and np.abs(residual).max() > np.iinfo(np.int16).max:
        raise ValueError("landmark residual outside int16: the landmark basis does not fit these clips")
    held = np.maximum.accumulate(np.where(face, np.arange(len(x)), 0))  # no face: repeat the last face row
    coef = coef[held] * face[held][:, None]
    return np.diff(coef, axis=0, prepend=0).astype(np.int32), residual.astype(np.int16)


def decode_landmarks(coef_dt: np.ndarray, residual: np.ndarray, face_found: np.ndarray, mean: np.ndarray,
                     basis: np.ndarray) -> np.ndarray:
    """Inverse of ``encode_landmarks``: float32 (T, 478, 2) px, NaN rows where ``face_found`` is False."""
    coef = np.cumsum(coef_dt.astype(np.int64), axis=0) / LANDMARK_COEF_SCALE  # (T, K)
    x = mean.astype(np.float64) + coef @ basis.astype(np.float64).T + residual * LANDMARK_STEP_PX  # (T, 956)
    x[~np.asarray(face_found, bool)] = np.nan
    return x.reshape(-1, NUM_LANDMARKS, 2).astype(np.float32)


# ---------------------------------------------------------------------------------------------- writing


def write_bundle(clips: Sequence[ClipArrays], out_dir: Path, crf: int = DEFAULT_CRF,
                 opus_bitrates_bps: Sequence[int] = OPUS_BITRATES_BPS, mask_crf: int = DEFAULT_MASK_CRF,
                 releases: Mapping[str, int] | None = None) -> int:
    """Pack prepared clips into ``out_dir`` (format version ``BUNDLE_VERSION``); returns the bundle's size in bytes.

    Args:
        clips: prepared clips (``avfr.codec.data.lookup.load_clips``).
        out_dir: created if missing; existing files of the same clips are overwritten.
        crf: libx264 quality of the RGB video (lower = larger, closer to the cache's frames).
        mask_crf: the same for the grey segmentation-mask video (a soft mask: it tolerates more).
        opus_bitrates_bps: Opus round trips whose mel is stored beside the clean mel.
        releases: clip id -> data release (``manifest_releases``), kept in the index for ``train --release``.

    Raises:
        ValueError: landmarks the bundle's basis cannot code (see ``encode_landmarks``).
    """
    from avfr.codec.data.audio import opus_roundtrip

    out_dir.mkdir(parents=True, exist_ok=True)
    mean, basis = fit_landmark_basis(clips)
    _save_npz_lzma(out_dir / _PCA_FILE, {"mean": mean, "basis": basis})
    index = []
    clipped = 0
    for clip in clips:
        _encode_video(np.asarray(clip.frames), out_dir / f"{clip.clip_id}.rgb.mp4", crf, gray=False)
        _encode_video(np.asarray(clip.mask), out_dir / f"{clip.clip_id}.mask.mp4", mask_crf, gray=True)
        face_found = np.asarray(clip.face_found, bool)
        coef_dt, residual = encode_landmarks(clip.landmarks, face_found, mean, basis)
        arrays = {"face_found": face_found, "lm_coef_dt": coef_dt, "lm_residual": residual}
        if clip.has_audio:
            mels = [np.asarray(clip.mel, np.float32)]
            mels += [clip_log_mel(opus_roundtrip(clip.pcm, bps)) for bps in opus_bitrates_bps]
            clipped += sum(int(np.count_nonzero(m > MEL_LOG_MIN + 255 * MEL_LOG_STEP)) for m in mels)
            codes = np.stack([quantise_log_mel(m) for m in mels])  # (1 + V, 80, M)
            codes[1:] -= codes[0]  # uint8: modulo 256, undone by adding the clean codes back
            arrays["mel_codes"] = codes
        _save_npz_lzma(out_dir / f"{clip.clip_id}.npz", arrays)
        index.append({"clip_id": clip.clip_id, "split": clip.split, "frames": int(clip.frames.shape[0]),
                      "has_audio": bool(clip.has_audio), "problems": list(clip.problems),
                      **({"release": int(releases[clip.clip_id])} if releases and clip.clip_id in releases else {})})
    if clipped:
        log.warning("%d log-mel values above %.2f were clipped", clipped, MEL_LOG_MIN + 255 * MEL_LOG_STEP)
    meta = {"version": BUNDLE_VERSION, "opus_bitrates_bps": [int(b) for b in opus_bitrates_bps], "crf": crf,
            "mask_crf": mask_crf, "mel_log_min": MEL_LOG_MIN, "mel_log_step": MEL_LOG_STEP,
            "landmark_coef_scale": LANDMARK_COEF_SCALE, "landmark_step_px": LANDMARK_STEP_PX, "clips": index}
    (out_dir / "bundle.json").write_text(json.dumps(meta, indent=1))
    return sum(p.stat().st_size for p in out_dir.iterdir())


# ---------------------------------------------------------------------------------------------- reading


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _array(z: Mapping[str, np.ndarray], key: str, dtype: type, shape: tuple[int | None, ...], where: str) -> np.ndarray:
    """``z[key]`` checked for dtype and shape (None: any length on that axis)."""
    _require(key in z, f"{where}: no {key!r} array")
    a = z[key]
    ok = a.dtype == dtype and a.ndim == len(shape)
    ok = ok and all(s is None or s == n for s, n in zip(shape, a.shape, strict=True))
    _require(ok, f"{where}: {key} is {a.dtype} {a.shape}, expected {np.dtype(dtype)} {shape}")
    return a


def _read_meta(bundle_dir: Path) -> dict:
    """bundle.json, checked: a known version and a well-formed clip index."""
    try:
        meta = json.loads((bundle_dir / "bundle.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{bundle_dir}: no readable bundle.json ({exc})") from exc
    _require(isinstance(meta, dict), f"{bundle_dir}/bundle.json: not a JSON object")
    version = meta.get("version")
    _require(type(version) is int and version in READABLE_VERSIONS,
             f"bundle version {version!r}, this code reads {READABLE_VERSIONS}")
    bitrates = meta.get("opus_bitrates_bps")
    _require(isinstance(bitrates, list) and all(isinstance(b, int) for b in bitrates),
             f"{bundle_dir}/bundle.json: opus_bitrates_bps must be a list of integers")
    clips = meta.get("clips")
    _require(isinstance(clips, list), f"{bundle_dir}/bundle.json: no clip list")
    for entry in clips:
        _require(isinstance(entry, dict), f"{bundle_dir}/bundle.json: a clip entry is not an object")
        cid = entry.get("clip_id")
        _require(isinstance(cid, str) and cid != "" and Path(cid).name == cid and not cid.startswith("."),
                 f"{bundle_dir}/bundle.json: bad clip_id {cid!r}")
        frames = entry.get("frames")
        _require(isinstance(frames, int) and frames > 0, f"{cid}: bad frame count {frames!r}")
        _require(isinstance(entry.get("has_audio"), bool) and isinstance(entry.get("split"), str)
                 and isinstance(entry.get("problems", []), list), f"{cid}: malformed index entry")
    return meta


def _read_landmark_basis(bundle_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    where = f"{bundle_dir / _PCA_FILE}"
    try:
        with np.load(bundle_dir / _PCA_FILE) as z:
            mean = _array(z, "mean", np.float32, (_DIMS,), where)
            basis = _array(z, "basis", np.float16, (_DIMS, None), where)
    except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError, RuntimeError) as exc:
        raise ValueError(f"{where}: unreadable ({exc})") from exc
    _require(basis.shape[1] <= _DIMS and bool(np.isfinite(mean).all() and np.isfinite(basis).all()),
             f"{where}: bad basis")
    return mean, basis


def _read_clip_arrays(path: Path, version: int, t: int, has_audio: bool, bitrates: Sequence[int],
                      pca: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """One clip's npz -> face_found (T,), landmarks float32 (T, 478, 2) px, mels [clean, *opus] float32 (80, 4T+29)."""
    where, m, n_opus = str(path), 4 * t + 29, len(bitrates)
    try:
        with np.load(path) as z:
            face_found = _array(z, "face_found", np.bool_, (t,), where)
            mels = []
            if version == 1:
                dq = _array(z, "landmarks_dq", np.int16, (t, NUM_LANDMARKS, 2), where)
                landmarks = np.cumsum(dq, axis=0, dtype=np.int16).astype(np.float32) / _V1_LANDMARK_SCALE
                landmarks[~face_found] = np.nan  # v1 wrote -1 there (a real coordinate may be negative)
                if has_audio:
                    keys = ["mel_clean", *(f"mel_opus{b}" for b in bitrates)]
                    mels = [_array(z, k, np.float16, (80, m), where).astype(np.float32) for k in keys]
            else:
                assert pca is not None  # read_bundle loads it for every version-2 bundle
                coef_dt = _array(z, "lm_coef_dt", np.int32, (t, pca[1].shape[1]), where)
                residual = _array(z, "lm_residual", np.int16, (t, _DIMS), where)
                landmarks = decode_landmarks(coef_dt, residual, face_found, *pca)
                if has_audio:
                    codes = _array(z, "mel_codes", np.uint8, (1 + n_opus, 80, m), where)
                    mels = [dequantise_log_mel(codes[0])]
                    mels += [dequantise_log_mel(codes[0] + codes[i]) for i in range(1, 1 + n_opus)]
    except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError, RuntimeError) as exc:  # Runtime: no lzma module
        raise ValueError(f"{where}: unreadable ({exc})") from exc
    return face_found, landmarks, mels


def load_bundle(bundle_dir: Path) -> tuple[list[ClipArrays], list[ClipArrays], dict[str, list[np.ndarray]]]:
    """Rebuild clips from a bundle (version 2, or version 1 written by earlier code).

    Returns:
        (train clips, dev clips, mel variants): ``mel`` of each clip is the clean log-mel (80, 4T+29);
        ``variants[clip_id]`` lists the Opus round-trip log-mels (same shape, float32), empty without audio.
        ``pcm`` is zeros (the box never needs samples: every mel is precomputed).

    Raises:
        ValueError: unknown bundle version, a malformed index, or a clip whose files are missing, unreadable or
            disagree with the index.
    """
    meta = _read_meta(bundle_dir)
    version = int(meta["version"])
    bitrates = [int(b) for b in meta["opus_bitrates_bps"]]
    pca = _read_landmark_basis(bundle_dir) if version >= 2 else None
    train: list[ClipArrays] = []
    dev: list[ClipArrays] = []
    variants: dict[str, list[np.ndarray]] = {}
    for entry in meta["clips"]:
        cid, t, has_audio = entry["clip_id"], entry["frames"], entry["has_audio"]
        face_found, landmarks, mels = _read_clip_arrays(bundle_dir / f"{cid}.npz", version, t, has_audio,
                                                        bitrates, pca)
        frames = _decode_video(bundle_dir / f"{cid}.rgb.mp4", t)
        mask = _decode_video(bundle_dir / f"{cid}.mask.mp4", t)[..., 0]
        mesh = np.stack([render_mesh(landmarks[i] if face_found[i] else None) for i in range(t)])
        pcm = np.zeros(t * 640, np.float32)
        mel = mels[0] if has_audio else clip_log_mel(pcm)
        variants[cid] = mels[1:]
        clip = ClipArrays(clip_id=cid, split=entry["split"], frames=frames, landmarks=landmarks,
                          face_found=face_found, mesh=mesh, mask=mask, pcm=pcm, has_audio=has_audio, mel=mel,
                          problems=tuple(str(p) for p in entry.get("problems", [])))
        (dev if entry["split"] == "dev" else train).append(clip)
    log.info("bundle %s (version %d): %d train, %d dev clips", bundle_dir, version, len(train), len(dev))
    return train, dev, variants
