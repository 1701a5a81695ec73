"""The caller's source image: encoding it for the wire and turning it into the generator's input.

Both peers decode the same bytes with the same functions (cv2 + mediapipe in static-image mode), so the
sender's replica of the receiver sees exactly the receiver's source.
"""

from __future__ import annotations

import cv2
import numpy as np

from avfr.codec.data import FRAME_SIZE, PriorExtractor, five_channel

__all__ = ["SOURCE_FORMAT", "encode_source_image", "decode_source_image", "source_input"]

SOURCE_FORMAT = "webp"  # a 256x256 face at quality 90 is ~10-20 kB


def encode_source_image(rgb: np.ndarray, quality: int = 90) -> bytes:
    """uint8 (H, W, 3) RGB -> WebP bytes.

    Raises:
        ValueError: the image cannot be encoded.
    """
    ok, buf = cv2.imencode(".webp", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_WEBP_QUALITY, int(quality)])
    if not ok:
        raise ValueError("cv2 could not encode the source image as WebP")
    return buf.tobytes()


def decode_source_image(data: bytes, size: int = FRAME_SIZE) -> np.ndarray:
    """Encoded image bytes (any format cv2 reads) -> uint8 (size, size, 3) RGB.

    Non-square images are centre-cropped, other sizes resized.

    Raises:
        ValueError: the bytes are not an image cv2 can decode.
    """
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("source image bytes could not be decoded")
    h, w = bgr.shape[:2]
    side = min(h, w)
    bgr = bgr[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
    if side != size:
        interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
        bgr = cv2.resize(bgr, (size, size), interpolation=interp)
    return np.ascontiguousarray(bgr[..., ::-1])


def source_input(rgb: np.ndarray, extractor: PriorExtractor) -> tuple[np.ndarray, bool]:
    """Generator source input of an RGB image.

    Args:
        rgb: uint8 (256, 256, 3).
        extractor: a PriorExtractor with mesh and mask.

    Returns:
        (float32 (5, 256, 256) in [0, 1], whether a face was found).
    """
    priors = extractor(rgb)
    return five_channel(rgb, priors.mesh, priors.mask), priors.face_found
