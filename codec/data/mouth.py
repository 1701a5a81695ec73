"""Mouth measures from mediapipe face-mesh landmarks: ratios of lip distances to the face height.

Used by training (the mouth targets of pair sampling) and by the benchmark's lip-sync proxy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FACE_BOTTOM", "FACE_TOP", "MOUTH_LOWER_INNER", "MOUTH_SHAPE_PAIRS", "MOUTH_UPPER_INNER", "mouth_opening",
           "mouth_shape"]

MOUTH_UPPER_INNER = 13  # mediapipe face-mesh landmark indices
MOUTH_LOWER_INNER = 14
FACE_TOP = 10
FACE_BOTTOM = 152
MOUTH_SHAPE_PAIRS = ((MOUTH_UPPER_INNER, MOUTH_LOWER_INNER), (0, 17), (61, 291))  # inner gap, outer gap, width


def mouth_shape(lm: np.ndarray, min_height_px: float | None = None) -> np.ndarray:
    """Inner-lip gap (13/14), outer-lip gap (0/17) and mouth width (61/291) divided by the face height
    (10/152), per frame; NaN without a face. Ratios of distances: flips, zooms and shifts leave them unchanged.

    Args:
        lm: float (T, 478, 2) px.
        min_height_px: frames whose face height is not above this are NaN (None: no such check).

    Returns:
        float64 (T, 3).
    """
    x = np.asarray(lm, np.float64)
    gaps = np.stack([np.linalg.norm(x[:, i] - x[:, j], axis=-1) for i, j in MOUTH_SHAPE_PAIRS], -1)  # (T, 3)
    height = np.linalg.norm(x[:, FACE_TOP] - x[:, FACE_BOTTOM], axis=-1)  # (T,)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = gaps / height[:, None]
    if min_height_px is not None:
        out[~(height > min_height_px)] = np.nan
    return out


def mouth_opening(lm: np.ndarray) -> np.ndarray:
    """Inner-lip gap divided by face height (landmarks 13/14 over 10/152), per frame; NaN without a face.

    Args:
        lm: float (T, 478, 2) px.

    Returns:
        float64 (T,).
    """
    return mouth_shape(lm)[:, 0]
