"""avfr.codec.data.priors: mesh drawing, mesh + mask on real faces, two faces, no face, import hygiene."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
from codec_data_helpers import SHORT_CLIP, read_frames, require_shared_data

from avfr.codec.data import NUM_LANDMARKS, PriorExtractor, five_channel, mesh_edges, render_mesh


@pytest.fixture(scope="module")
def extractor():
    with PriorExtractor() as ex:
        yield ex


@pytest.fixture(scope="module")
def face_frame() -> np.ndarray:
    return read_frames(require_shared_data() / "clips" / f"{SHORT_CLIP}.mp4", 1)[0]


def test_priors_module_imports_only_numpy_and_cv2() -> None:
    """render_mesh, the mel functions and ClipArrays import without av or mediapipe (GPU trainer box)."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import avfr.codec.data.priors, avfr.codec.data.audio, avfr.codec.data.cache, avfr.codec.data.video\n"
        "from avfr.codec.data.cache import ClipArrays\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "bad = new & {'av', 'mediapipe', 'torch', 'tqdm'}\n"
        "assert not bad, bad\n"
        "import avfr.codec.data.priors as p\n"
        "mods = [v for v in vars(p).values() if type(v) is type(sys)]\n"
        "third = {v.__name__.split('.')[0] for v in mods}\n"
        "assert third <= {'cv2', 'np', 'numpy', 'base64', 'functools', 'logging', 'zlib'}, third\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_mesh_topology_matches_mediapipe() -> None:
    connections = pytest.importorskip("mediapipe.python.solutions.face_mesh_connections")
    tesselation, contours = mesh_edges()

    def undirected(edges) -> set:
        return {tuple(sorted(e)) for e in edges}

    assert undirected(tesselation.tolist()) == undirected(connections.FACEMESH_TESSELATION)
    contour_edges = connections.FACEMESH_CONTOURS | connections.FACEMESH_IRISES
    assert undirected(contours.tolist()) == undirected(contour_edges)
    assert tesselation.max() < NUM_LANDMARKS and contours.max() < NUM_LANDMARKS


def test_render_mesh_without_face() -> None:
    assert render_mesh(None).shape == (256, 256)
    assert render_mesh(None).dtype == np.uint8 and not render_mesh(None).any()
    assert not render_mesh(np.full((478, 2), np.nan, np.float32)).any()
    with pytest.raises(ValueError):
        render_mesh(np.zeros((468, 2), np.float32))
    # Landmarks far outside the frame neither crash nor draw garbage.
    assert not render_mesh(np.full((478, 2), 1e9, np.float32)).any()


def test_mesh_and_mask_on_a_real_face(extractor, face_frame) -> None:
    priors = extractor(face_frame)
    assert priors.num_faces == 1 and priors.face_found
    assert priors.landmarks.shape == (478, 2) and priors.landmarks.dtype == np.float32
    assert priors.mesh.shape == priors.mask.shape == (256, 256)
    assert priors.mesh.dtype == priors.mask.dtype == np.uint8
    np.testing.assert_array_equal(priors.mesh, render_mesh(priors.landmarks))
    (x0, y0), (x1, y1) = priors.landmarks.min(0), priors.landmarks.max(0)
    assert 20 < x0 < x1 < 236 and 20 < y0 < y1 < 236  # a centred face of plausible size
    assert 80 < x1 - x0 < 200
    inside = np.zeros((256, 256), bool)
    inside[int(y0) : int(np.ceil(y1)) + 1, int(x0) : int(np.ceil(x1)) + 1] = True
    mesh = priors.mesh.astype(float)
    assert mesh[inside].sum() > 0.98 * mesh.sum()  # the mesh is drawn on the face
    assert 0.05 < (priors.mesh > 0).mean() < inside.mean()  # lines, not a filled blob
    mask = priors.mask.astype(float)
    assert mask[inside].mean() > 240  # the face is foreground
    assert mask[:32, :32].mean() < 30 and mask[:32, -32:].mean() < 30  # the background corners are not


def test_mask_inside_face_box_much_higher_than_outside(extractor) -> None:
    frame = read_frames(require_shared_data() / "clips" / "edtalk_expr.mp4", 1)[0]
    priors = extractor(frame)
    (x0, y0), (x1, y1) = priors.landmarks.min(0).astype(int), priors.landmarks.max(0).astype(int)
    inside = np.zeros((256, 256), bool)
    inside[y0:y1, x0:x1] = True
    mask = priors.mask.astype(float)
    assert mask[inside].mean() > 200 and mask[inside].mean() > 1.8 * mask[~inside].mean()


def test_no_face(extractor) -> None:
    gray = np.full((256, 256, 3), 128, np.uint8)
    priors = extractor(gray)
    assert priors.num_faces == 0 and not priors.face_found
    assert np.isnan(priors.landmarks).all() and priors.landmarks.shape == (478, 2)
    assert not priors.mesh.any()
    assert priors.mask.mean() < 30


def test_two_faces_keep_the_largest(extractor, face_frame) -> None:
    small = cv2.resize(face_frame, (160, 160), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((256, 512, 3), np.uint8)
    canvas[:, :256] = face_frame
    canvas[48:208, 304:464] = small
    landmarks, num_faces = extractor.face_landmarks(canvas)
    assert num_faces == 2
    assert landmarks[:, 0].max() < 256  # the larger, left face
    side_by_side = np.concatenate([face_frame, face_frame[:, ::-1]], axis=1)
    assert extractor.face_landmarks(side_by_side)[1] == 2


def test_five_channel(face_frame) -> None:
    mesh = np.zeros((256, 256), np.uint8)
    mask = np.full((256, 256), 255, np.uint8)
    x = five_channel(face_frame, mesh, mask)
    assert x.shape == (5, 256, 256) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], face_frame[..., 0] / 255.0, atol=1e-7)
    assert x[3].max() == 0.0 and x[4].min() == 1.0
