"""Structural priors (AVFR-GAN §3.1): mediapipe face mesh drawn as an image, and a selfie mask.

``render_mesh`` and ``five_channel`` need only numpy and cv2, so the receiver and the GPU trainer
can import this module without mediapipe; :class:`PriorExtractor` and :class:`FaceBoxDetector`
import mediapipe lazily when constructed.

The face mesh topology below (undirected edges of mediapipe's FACEMESH_TESSELATION, and of
FACEMESH_CONTOURS + FACEMESH_IRISES) is data of the mediapipe face mesh model (Apache-2.0,
Google LLC), stored as zlib-compressed little-endian uint16 (E, 2) pairs so that drawing works
without mediapipe; tests/test_codec_priors.py checks it against mediapipe's tables.
"""

from __future__ import annotations

import base64
import functools
import logging
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

logger = logging.getLogger(__name__)

FRAME_SIZE = 256  # px, h = w of frames and priors
NUM_LANDMARKS = 478  # face mesh with refined irises
NUM_INPUT_CHANNELS = 5  # R, G, B, mesh, mask
# The face mesh's lip landmarks (mediapipe's FACEMESH_LIPS: outer and inner contours, 40 points), written out
# so that code without mediapipe (a GPU training box) has them; a test checks them against mediapipe.
LIP_LANDMARKS = np.array([0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191,
                          267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415],
                         np.int64)
LIP_LANDMARKS.setflags(write=False)

_TESSELATION_B64 = (
    "eNod1gd4VtXBAOBzVETECdqK1bbOipWhaB24kCFgQUDBVkQIFARRREAQ2SB7770JhGVIQsiCsAJJIAFCqtQKKENEgaoIP3bZ"
    "//18zvN+95zz3Xv2OfeGUDmEcA8rqBxjuCLEUJUHqBIvC6+Hy0ISE1nBKhrJ78XYeHmoEy4POylgF2eVUIEHqEEdqsQrQlWq"
    "xQrSFdxfQfzK8EG4MqRQwC7ay1seK4ZqoWK4gx4sD1eFSjxKCtu5PV4VlsZK8iqF7rzFbG6X14KW8erwdrha3tWhVawcrtHL"
    "e2hMZema8Zpwrdx7acw10jXjtdLXhlaJf8Qfi9eF68N1oQ2v8KT0U/H6cIPc1rShrvST8YZwo9zW1I03hipSL/EyrXlc3hPU"
    "jVXkVwlFFPO4dHKsapyqGuOqYRATqSKvI73iTeHJcFN4kU6s5B+cDzeHP9CA51kWfhF+ya1MZS7zOMVX/rmFKUzlS07J6cEU"
    "TvKl0f4Nd9CD4RznpBJ7Mo/5fMXp8KtwG7ezmCUc5XO5j7GQRSzmCEfd+WuW8DlfSC1hKYn4MS6p/R3e4zgnw2/DBNayg2IO"
    "UK6Fw/k/LoU7wxDGM5kFnOCbcJey7grvMpDJHA93h7/QmUnspZR9VsTvaMwKVpn96jSmJa38ex+NacJrJLNKbhOa8ho55Hry"
    "fhrThKa0lNOUFiTiWWSH34fHeYq2vMk09lBiJdRgEIc5J1WHURwONcMjPEMj3mUgCzgWaulfrdCL/gxmKJ+G2uFBnqU3I/iM"
    "M3KfpQvDGEFZeMj4PGQOHgp9GUAepVowip2cDQ9rw8Pa8HCox3N04yif++cZEtcvOGaFNuANutql9ejOFrZzxGpZyHryOWJU"
    "niKHXPbw1/BE+JB1pHEo1A0vsJLPOGN3vEAnVvKdEv7INLLJCU9LPx2a0ZwOZLFVSxvQiOfpSjcj0pEuDOMM32n1c3TnCEel"
    "GtKN7qG+eH39q+/5+s6f+s6bBsprIN3wZ93ozltqep7xLBAbzzIrpYnQVMgmR09WcobvtLoZ08giW+pV2tKBaXrTng5sdTqs"
    "5O+c4x98a8W1JIutYq2cOi+TySaKpVqzkUyxNmSwUewV0skQSw9/Cn+mPR1IpDPkvEoHEvGNUm3pQCKeKfUm00jEN9khyeSy"
    "j7+Fdua0XRjLCb5x8k2kV2yvjCRzkGQ+k+QleS7JXkty3nWU19G8dJTX0f7taIw6/ey8ld+Z9+nPYCbJ6Us/3qfUrA4zU12F"
    "blq3iR2UmJ23hLeZ7Xe2028KyznpFOnDewxgMsedhiOZz2m+5gcu2I0DOcZxLtmJQ/mIzXxq943g73zGYSUPYCyTOaGWvgzg"
    "JF9K9SNxPSX2Pqf89idx/YrTUkM57Q2awma2U8BFJY1lOmnkad1kFjhZJnKO743UMCZRxqdO0/Es4xslb+Y0X3PRnZPYS5kT"
    "+DiX9GgUuynjsFkdS5oRms968vnBXbs5zNkwOoxhHLNYzTY+kTuOWaxTShon5KxjGx9zSOsWsMybYQZrWMsGyvXqe85r5V49"
    "XcAJMzmV5X7nGok08viYQ0qYw1pS2RBmqnumMmeKz9KuWeKzfUPM9u0wxz1zQv8413twnr4t9H5bqH+LvOMWe5ct8S5b6p20"
    "1JissF5X+L5Y4bsoWTxZe5Kt+5XmfqW5TzFHKb5xUny7rFbH6nCQcj6R2kC5VqVSyAEjcEhN+VbSZgr4lLPuKKR/TA0TYpp7"
    "0u3FDPtvoz2XaX1vsr432edZzo4sZ0C28yXHHsx1pubag3nGNc++yAv7+ZhP1FDARSd0Pts5wg9ckHOEHzz1MZ/49wIX1VJM"
    "CeXeELv4kWqxQLxAO3dJ7/I9t9sa2a3tu+UV+v4p1LdCbS8M62KRMoqki3wLFUkXi+9R5h5js0d796hvrzEskS5RT6l4qXaX"
    "6sc+9rtnv3v2i5ep46B7Dkr/9Wd/0+JDcs+agc84zDmxM2Ln9Oqo8LnwhXBMuGR1X7J6vrETvxROCV8Jp4WvhQtc9PR3nv6W"
    "752435K4nhf7XjhvpC4IF62KS0agWvzRGPwYiuI/w//CP0NF15cYFf8V7uQRGjOGPexlX/x3uI37qcHI+J/w3/CfEFz7MpBB"
    "7GBn/G/4yb/vufZlOzviT+r4Sd5PYRvb4/9CBSryEm+Qz7YYYmsGMZidFMQYL+NyhjOCXPLk/pqhDGM4OeS68wpGkMdmqRF8"
    "SCK+hYOUxwrxZV4ln23xyvguE1hGMutIjRXjGxykPF4V/0JP+jCEreyOlZRVKbYhiT7kx6tjE5rSm1WsZk2sHK+lJmPjNfF6"
    "fP/HR3nMP9fh2z/W4jlGM1ZuLWrzHHOZ58kbqEktavOonNr8gUR8NnPijfE33EU9XqQfK0mJvu7pSDbFUtXoTna8Kf6Ke3iA"
    "NiQxhC3xZn27Ob7C63SiM5nxF/GX3Muf6EoWhXLv5QW60JX18RZjc4vxvyW2pQPzWa0F3SmKt6r/VvXfGn/HfTQnlzz/3EPi"
    "upkt8bZ4P3+kWbzd/bfHFixkKTlWylAmsYgcI3IXc5nHSjbE38ZuTGQqGfGOeCcPMoYsCuU8SGPGUKKUh+jHHObGu6XvjnV4"
    "mIbMZrHW3s8D1KAZzY3I87xAFwop0fL7aEEOuVK/pzktYnXx6vpY3fPVY0taKbUGzfyT0JwWtFRTDXoyRKwnI62UWkJtYQ5z"
    "9aSQEi2uQz9mM0fqWerRkH560oCGLI6P6PcjcRPF7LXSHmU2i8Uei4/HJ5jJLJKl6jKDmWJPMp0ZYk8xjeli0+LT8Rka0JBE"
    "erqcZ2lIIj5Dqh4NScRnSr1IPxLxWXbGaOaxho2xvvmsH3uwld1KbxgbGfNG5q9R7MVoxrJPbmO6MJpVlMhJ2GelN6Udr9OJ"
    "3nLa8hrtWG0Wu5iZZkJzrZrFMlLMRkuhVXwpvscotjkp/syrdKAP+U69NxlMAbvYzwG7Lokt5FNux3VmMgvItMu6soksspXc"
    "gR70Yata2tKBbWyXeo3EdYdYO3b4fZ3EdScFUp0piO3V0d7+aR+XU6aUHrzPVOZrWR+GOD16UUyp0elCb9aT6bTsyUh2K3UB"
    "BeyizJ29WcV6J2w+5XrTnRWsJ9sM9mCq0RnMJBax310ryKYovhXf5h0GMI4lpMt9hwFMVMpUtsqZyBLSyNC6IYx08vdnPBOY"
    "QqpelbJPK1fp6RC2msW+jPI70EhMZT5pZChhAlPiB+r8QFkfiA/QngHiA73TBunDUO+qofoxzPtquPfSCO+lD71bRluHo9Uz"
    "2todYz7HmM9xnhsXPyKVdKkppKplnV5kKGWRlbCA5WRSpEUZds90YYYwU5glLCPZLp3DYr9zhXnCBjbqwRJWs5Y00pW6nDIn"
    "6CKWksN+DsjJYb+n0kj37wHK1JJMCqmeLjJD68mkyD/rnLIpfMQG0vV2jZyPSFX7GtayUWyj2AbS2aiUTHelki43YaOaM+QW"
    "GakssikWKxQr1rpcIU/YLGwRyq2ucrO32y7YLuwQdgoFwi7hAGWeLvH0XkrjHtc9P1/3iZUK+/T4gFBmtsrj/wP/WMQg"
)
_CONTOURS_B64 = (
    "eNodjksrhGEYhu97NUUzpdg4FEkoWTk1NTRGVhKToiQbJWSJHMdhZrIhZGSIcdhSUhZWdn6AcsjhD/gBSjaupqvrvut9n+95"
    "P6lGUqEDqlJAlyrQNMYdVFxBtTmkQYUUcZEGVKSwS9SiEl0w/cOXtVAH92pUs5ryRpkYVysdVhKvFNEe3qtD3TihzrxTijEX"
    "471ejeKD+tSPD2Sc1+54+VZD3A3Rw+wY5myEnSP6VoJ/SNApHeO1NnWAV9rRLl6SWe3rEG+U4S5DH2reWR3BsU50itdkDs7g"
    "HH70q4B/lfafyjHlgJ9c6CCEIOtil7k0b63L3eMKutITuOVqz2HWNW7AXtfl7XM9c/WOu8ldmHOLWzFHtjnsjCPeczt37XSU"
    "HVHOYuyM+dFjTuGjJ72C2572Im55xrOYJpc87x0vcL5AL3kZVrzqNdwm12EDkvDkZ7/gG/kKb373B36Rn/Dlf/pncJY="
)

_MESH_LINE_PX = 1  # tesselation
_CONTOUR_LINE_PX = 2  # lips, eyes, eyebrows, face oval, irises
_SUBPIXEL_BITS = 4  # cv2 fixed-point shift for antialiased lines


def _decode_edges(b64: tuple[str, ...]) -> np.ndarray:
    raw = zlib.decompress(base64.b64decode("".join(b64)))
    edges = np.frombuffer(raw, dtype="<u2").reshape(-1, 2).astype(np.int64)
    edges.setflags(write=False)
    return edges


@functools.lru_cache(maxsize=1)
def mesh_edges() -> tuple[np.ndarray, np.ndarray]:
    """Face mesh topology.

    Returns:
        (tesselation int64 (1322, 2), contours int64 (132, 2)): undirected landmark index pairs.
    """
    return _decode_edges(_TESSELATION_B64), _decode_edges(_CONTOURS_B64)


def render_mesh(landmarks: np.ndarray | None, size: int = FRAME_SIZE) -> np.ndarray:
    """Draw the face mesh (tesselation 1 px + contours 2 px, antialiased) as a 1-channel image.

    Args:
        landmarks: float32 (478, 2) pixel (x, y) in the frame, or None / any NaN for no face.
        size: output side in px.

    Returns:
        uint8 (size, size), 0 background, up to 255 on lines; zeros when there is no face.

    Raises:
        ValueError: wrong landmark shape.
    """
    image = np.zeros((size, size), np.uint8)
    if landmarks is None:
        return image
    landmarks = np.asarray(landmarks, np.float32)
    if landmarks.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks must be ({NUM_LANDMARKS}, 2), got {landmarks.shape}")
    if not np.isfinite(landmarks).all():
        return image
    scale = 1 << _SUBPIXEL_BITS
    # Clamp far-off points so the fixed-point coordinates cannot overflow.
    fixed = np.round(np.clip(landmarks, -4 * size, 5 * size) * scale).astype(np.int32)  # (478, 2)
    tesselation, contours = mesh_edges()
    for edges, thickness in ((tesselation, _MESH_LINE_PX), (contours, _CONTOUR_LINE_PX)):
        segments = np.ascontiguousarray(fixed[edges])  # (E, 2 endpoints, 2 xy)
        cv2.polylines(image, list(segments), False, 255, thickness, cv2.LINE_AA, _SUBPIXEL_BITS)
    return image


def five_channel(rgb: np.ndarray, mesh: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Network input: concat(RGB, mesh, mask) / 255.

    Args:
        rgb: uint8 (H, W, 3). mesh, mask: uint8 (H, W).

    Returns:
        float32 (5, H, W) in [0, 1], channels R, G, B, mesh, mask.
    """
    stacked = np.concatenate([rgb, mesh[..., None], mask[..., None]], axis=2)  # (H, W, 5)
    return np.ascontiguousarray(stacked.transpose(2, 0, 1), dtype=np.float32) * np.float32(1.0 / 255.0)


@dataclass(frozen=True)
class FramePriors:
    """Priors of one RGB frame.

    landmarks: float32 (478, 2) px, all NaN when no face; num_faces: faces mediapipe saw (0..2,
    the largest is kept); mesh, mask: uint8 (H, W) (mask is None when not requested).
    """

    landmarks: np.ndarray
    num_faces: int
    mesh: np.ndarray | None
    mask: np.ndarray | None

    @property
    def face_found(self) -> bool:
        return self.num_faces > 0


def _landmark_area(points: np.ndarray) -> float:
    """Area of the bounding box of (N, 2) points."""
    span = points.max(axis=0) - points.min(axis=0)
    return float(span[0] * span[1])


class PriorExtractor:
    """mediapipe face mesh (refined, 478 points, largest of up to 2 faces) + selfie segmentation.

    Each frame is processed independently (``static_image_mode=True``), so results do not depend
    on frame order. Not thread-safe: use one extractor per thread/process.

    Args:
        mesh: run the face mesh.
        mask: run selfie segmentation (model_selection=0).
        max_num_faces: faces the mesh looks for; the largest is kept, the count is reported.
        min_detection_confidence: mediapipe face detection threshold.
    """

    def __init__(
        self,
        mesh: bool = True,
        mask: bool = True,
        max_num_faces: int = 2,
        min_detection_confidence: float = 0.5,
    ) -> None:
        import mediapipe as mp  # lazy: not installed on every box

        self._face_mesh = (
            mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True,
                max_num_faces=max_num_faces,
                refine_landmarks=True,
                min_detection_confidence=min_detection_confidence,
            )
            if mesh
            else None
        )
        self._segmenter = (
            mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) if mask else None
        )

    def face_landmarks(self, rgb: np.ndarray) -> tuple[np.ndarray, int]:
        """Face mesh landmarks of the largest face.

        Args:
            rgb: uint8 (H, W, 3) RGB.

        Returns:
            (landmarks float32 (478, 2) pixel (x, y), NaN when no face; number of faces found).
        """
        if self._face_mesh is None:
            raise RuntimeError("PriorExtractor was built with mesh=False")
        height, width = rgb.shape[:2]
        result = self._face_mesh.process(np.ascontiguousarray(rgb))
        faces = result.multi_face_landmarks or []
        if not faces:
            return np.full((NUM_LANDMARKS, 2), np.nan, np.float32), 0
        candidates = [
            np.array([(p.x * width, p.y * height) for p in face.landmark], np.float32) for face in faces
        ]  # each (478, 2)
        largest = max(candidates, key=_landmark_area)
        return largest, len(candidates)

    def segmentation(self, rgb: np.ndarray) -> np.ndarray:
        """Selfie segmentation foreground mask.

        Args:
            rgb: uint8 (H, W, 3) RGB.

        Returns:
            uint8 (H, W), 255 = person.
        """
        if self._segmenter is None:
            raise RuntimeError("PriorExtractor was built with mask=False")
        prob = self._segmenter.process(np.ascontiguousarray(rgb)).segmentation_mask  # float32 (H, W)
        return np.clip(np.rint(prob * 255.0), 0, 255).astype(np.uint8)

    def __call__(self, rgb: np.ndarray) -> FramePriors:
        """All enabled priors of one frame (mesh is rendered at the frame's size; square frames)."""
        landmarks, num_faces, mesh = None, 0, None
        if self._face_mesh is not None:
            landmarks, num_faces = self.face_landmarks(rgb)
            mesh = render_mesh(landmarks if num_faces else None, size=rgb.shape[0])
        else:
            landmarks = np.full((NUM_LANDMARKS, 2), np.nan, np.float32)
        mask = self.segmentation(rgb) if self._segmenter is not None else None
        return FramePriors(landmarks=landmarks, num_faces=num_faces, mesh=mesh, mask=mask)

    def close(self) -> None:
        """Release the mediapipe graphs."""
        for graph in (self._face_mesh, self._segmenter):
            if graph is not None:
                graph.close()
        self._face_mesh = self._segmenter = None

    def __enter__(self) -> PriorExtractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FaceBoxDetector:
    """mediapipe face detection (full range), used to place the square crop of non-square video.

    Args:
        min_detection_confidence: detection threshold.
        max_side_px: frames are downscaled to at most this side before detection.
    """

    def __init__(self, min_detection_confidence: float = 0.5, max_side_px: int = 640) -> None:
        import mediapipe as mp  # lazy

        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_detection_confidence
        )
        self._max_side_px = max_side_px

    def largest_face(self, rgb: np.ndarray) -> tuple[np.ndarray | None, int]:
        """Box of the largest face.

        Args:
            rgb: uint8 (H, W, 3) RGB at any resolution.

        Returns:
            (float32 (4,) x0, y0, w, h in the input's pixels, or None; number of faces).
        """
        height, width = rgb.shape[:2]
        factor = min(1.0, self._max_side_px / max(height, width))
        small = rgb
        if factor < 1.0:
            small = cv2.resize(rgb, (max(1, round(width * factor)), max(1, round(height * factor))),
                               interpolation=cv2.INTER_AREA)
        result = self._detector.process(np.ascontiguousarray(small))
        boxes = [
            np.array([d.location_data.relative_bounding_box.xmin * width,
                      d.location_data.relative_bounding_box.ymin * height,
                      d.location_data.relative_bounding_box.width * width,
                      d.location_data.relative_bounding_box.height * height], np.float32)
            for d in (result.detections or [])
        ]
        if not boxes:
            return None, 0
        return max(boxes, key=lambda b: float(b[2] * b[3])), len(boxes)

    def close(self) -> None:
        """Release the mediapipe graph."""
        self._detector.close()

    def __enter__(self) -> FaceBoxDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
