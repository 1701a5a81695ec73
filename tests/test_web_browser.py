"""The browser receiver's picture path in real headless Chromium against the Python receiver.

The same source image bytes (a real dev clip's first frame, WebP as the sender sends it) and the same
keypoints (the shipped sender graph on the clip's frames) go through the Python receiver (cv2 decode, mediapipe
priors, onnxruntime) and through the page's modules (the browser's WebP decoder, mediapipe's npm solutions,
opencv.js mesh drawing, onnxruntime-web): the frames must agree within 40 dB PSNR.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest
from browser_harness import LoopThread, browser_skip_reason, launch_chromium, psnr_u8, static_test_pages
from codec_data_helpers import SHORT_CLIP, read_frames, require_shared_data

pytestmark = pytest.mark.skipif(browser_skip_reason() is not None, reason=browser_skip_reason() or "")


@pytest.fixture(scope="module")
def page_server():
    from avfr.codec.runtime import load_call_model
    from avfr.sender.web import WebCallServer

    loop = LoopThread()
    server = loop.run(_make_server(WebCallServer, load_call_model()))
    yield server
    loop.run(server.close())
    loop.close()


async def _make_server(cls, model):
    server = cls(model, extra_static=static_test_pages())
    await server.start("127.0.0.1", 0)
    return server


@pytest.fixture(scope="module")
def python_side():
    """Source bytes, per-frame inputs and the Python receiver's frames on a real dev clip."""
    from avfr.codec.data import PriorExtractor, crop_and_resize, five_channel
    from avfr.codec.runtime import decode_source_image, encode_source_image, load_call_model, source_input
    from avfr.codec.runtime.sessions import ReceiverModel, SenderModel

    data = require_shared_data()
    frames = [crop_and_resize(f, None) for f in read_frames(data / "clips" / f"{SHORT_CLIP}.mp4", 60)]  # 256 px
    model = load_call_model()
    sender = SenderModel(model.manifest.sender)
    receiver = ReceiverModel.from_manifest(model.manifest, threads=1)
    rng = np.random.default_rng(0)
    out = {}
    with PriorExtractor() as extractor:
        for name, source_rgb, quality in (("full", frames[0], 90), ("refresh96", frames[0], 30)):
            if name == "refresh96":
                import cv2

                source_rgb = cv2.resize(source_rgb, (96, 96), interpolation=cv2.INTER_AREA)
            webp = encode_source_image(source_rgb, quality)
            rgb = decode_source_image(webp, image_format="webp")
            source5, _ = source_input(rgb, extractor)
            receiver.set_source(source5)
            inputs, rendered = [], []
            for i in (0, 12, 30, 55):
                p = extractor(frames[i])
                kp, jac = sender.keypoints(five_channel(frames[i], p.mesh, p.mask))
                mel = rng.normal(-4.0, 2.0, (80, 19)).astype(np.float32)
                inputs.append({"kp": kp.reshape(-1).tolist(), "jac": jac.reshape(-1).tolist(),
                               "mel": mel.reshape(-1).tolist()})
                rendered.append(receiver.frame(kp, jac, mel))
            out[name] = (webp, rgb, source5, inputs, rendered)
    return model, out


@pytest.mark.parametrize("name", ["full", "refresh96"])
def test_browser_frames_match_python(page_server, python_side, name):
    from playwright.sync_api import sync_playwright

    model, cases = python_side
    webp, rgb, source5, inputs, rendered = cases[name]
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            logs: list[str] = []
            page.on("console", lambda m: logs.append(m.text))
            page.goto(page_server.url + "test/parity.html")
            page.wait_for_function("window.parityReady === true", timeout=30_000)
            result = page.evaluate("(args) => window.runParity(args)",
                                   {"source": base64.b64encode(webp).decode(), "format": "webp",
                                    "frames": inputs, "threads": 1})
        finally:
            browser.close()
    assert result["manifestSha256"] == model.manifest_sha256
    js_rgb = np.frombuffer(base64.b64decode(result["rgb"]), np.uint8).reshape(256, 256, 3)
    decode_psnr = psnr_u8(js_rgb, rgb)
    js_mesh = np.frombuffer(base64.b64decode(result["mesh"]), np.uint8).reshape(256, 256)
    js_mask = np.frombuffer(base64.b64decode(result["mask"]), np.uint8).reshape(256, 256)
    mesh_psnr = psnr_u8(js_mesh, np.round(source5[3] * 255))
    mask_psnr = psnr_u8(js_mask, np.round(source5[4] * 255))
    psnrs = []
    for b64, py in zip(result["frames"], rendered, strict=True):
        chw = np.frombuffer(base64.b64decode(b64), np.float32).reshape(3, 256, 256)
        js = np.clip(chw.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        psnrs.append(psnr_u8(js, py))
    print(f"{name}: decode {decode_psnr:.1f} dB, mesh {mesh_psnr:.1f} dB, mask {mask_psnr:.1f} dB, frames "
          f"{', '.join(f'{v:.1f}' for v in psnrs)} dB; priors {result['priorsMs']:.0f} ms (again "
          f"{result['priorsAgainMs']:.0f} ms), identity encoder {result['sourceMs']:.0f} ms, frame "
          f"{np.median(result['frameMs']):.0f} ms")
    assert result["numFaces"] == 1
    assert min(psnrs) >= 40.0, (psnrs, decode_psnr, mesh_psnr, mask_psnr, logs[-10:])


def test_browser_refuses_a_broken_source_image(page_server):
    """Header fine, body broken: the page's decoder rejects it (the player then sends REFRESH want_source)."""
    from playwright.sync_api import sync_playwright

    from avfr.codec.runtime import encode_source_image

    good = encode_source_image(np.full((256, 256, 3), 128, np.uint8))
    broken = good[:40] + bytes(len(good) - 40)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            page.goto(page_server.url + "test/parity.html")
            page.wait_for_function("window.parityReady === true", timeout=30_000)
            verdicts = [page.evaluate("(a) => window.decodeBroken(a)", {"source": base64.b64encode(b).decode(),
                                                                         "format": "webp"}) for b in (good, broken)]
        finally:
            browser.close()
    assert verdicts[0] == "decoded" and verdicts[1].startswith("rejected"), verdicts
