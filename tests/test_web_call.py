"""A real call to the browser: `avfr-codec send --web` (its own process) and headless Chromium on its page.

Everything stays on 127.0.0.1: the page's HTTP + WebSocket signaling, and WebRTC with host candidates on
127.0.0.1 only and no ICE servers. Checked: the call ends by itself with every frame decided, the speech played
(all of it scheduled, at the sent level), pictures were drawn, and the drawn canvas pixels agree with the Python
receiver's frames of the same messages (within 40 dB PSNR). Set AVFR_WEB_SCREENSHOT=path to keep a screenshot.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from browser_harness import browser_skip_reason, launch_chromium, psnr_u8
from codec_data_helpers import SHORT_CLIP, require_shared_data
from loopback_helpers import free_port

pytestmark = pytest.mark.skipif(browser_skip_reason() is not None, reason=browser_skip_reason() or "")


def _python_frames(messages: list[tuple[str, bytes]]) -> dict[int, np.ndarray]:
    """The Python receiver's frames of the messages the page received (in its arrival order, offline):
    index -> uint8 (256, 256, 3)."""
    from avfr.receiver import Decoder, DecoderConfig

    frames = []
    with Decoder(DecoderConfig(realtime=False)) as dec:
        for label, data in messages:
            frames += dec.push(label, data)
        dec.finish()
        frames += dec.drain()
    return {f.index: f.rgb for f in frames}


def test_browser_receives_a_call(tmp_path):
    from playwright.sync_api import sync_playwright

    clip = require_shared_data() / "clips" / f"{SHORT_CLIP}.mp4"
    port = free_port()
    sender = subprocess.Popen([sys.executable, "-m", "avfr.cli", "send", "--video", str(clip), "--web",
                               f"127.0.0.1:{port}", "--quiet", "--timeout-s", "120"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                page = browser.new_page()
                logs: list[str] = []
                page.on("console", lambda m: logs.append(f"{m.type}: {m.text}"))
                deadline = time.monotonic() + 60
                while True:  # the sender's server comes up after its model loads
                    try:
                        page.goto(f"http://127.0.0.1:{port}/?autojoin=1&capture=1")
                        break
                    except Exception:  # noqa: BLE001 - connection refused until it listens
                        if time.monotonic() > deadline or sender.poll() is not None:
                            raise
                        time.sleep(0.5)
                page.wait_for_function("['ended', 'failed', 'refused'].includes(window.avfr.phase)", timeout=180_000)
                state = page.evaluate("({phase: avfr.phase, error: avfr.error, live: avfr.live, "
                                      "heard: avfr.heardLevelMax, gap: avfr.maxTickGapMs, "
                                      "player: {...avfr.player.stats}, "
                                      "stats: {...avfr.decoder.stats}})")
                shot = tmp_path / "web-receiver.png"
                page.screenshot(path=str(shot))
                if os.environ.get("AVFR_WEB_SCREENSHOT"):
                    shutil.copy(shot, os.environ["AVFR_WEB_SCREENSHOT"])
                messages = page.evaluate("() => avfr.messages.map(([label, b]) => "
                                         "[label, btoa(Array.from(b, (v) => String.fromCharCode(v)).join(''))])")
                captured = page.evaluate("""() => Array.from(avfr.player.capture.entries()).slice(-12).map(
                    ([i, px]) => [i, btoa(Array.from(px, (v) => String.fromCharCode(v)).join(''))])""")
            finally:
                browser.close()
        out, err = sender.communicate(timeout=60)
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    assert state["phase"] == "ended", (state, logs[-20:], err[-2000:])
    assert sender.returncode == 0, err[-2000:]
    python_frames = _python_frames([(label, base64.b64decode(b)) for label, b in messages])
    n = len(python_frames)
    player = state["player"]
    assert player["framesDecided"] == n  # every frame of the clip, up to the end anchor
    assert abs(player["audioScheduledS"] - n * 0.04) < 1e-6  # the speech of every frame was scheduled
    print(f"main thread: longest stall {state['gap']:.0f} ms; audio re-syncs {player['audioResyncs']} "
          f"(decided up to {player['resyncLateMs']:.0f} ms after the slot, {player['insertedS']:.2f} s of "
          "silence inserted; none drops speech)")
    assert player["audioPeak"] > 0.1
    assert player["insertedS"] < 0.2 * n * 0.04  # re-syncs (a slow page) stretch the call a little at most
    assert state["heard"] > 0.01  # the audio graph played it (RMS at its output's analyser)
    assert state["stats"]["droppedMalformed"] == 0
    assert player["framesDrawn"] >= 3 and captured
    sync_mean_ms = player["syncSumMs"] / player["framesDrawn"]
    assert abs(sync_mean_ms) < 40 and player["syncMaxMs"] <= 85  # drawn when its speech is heard (late < 80 ms)
    psnrs = []
    for index, b64 in captured:
        rgba = np.frombuffer(base64.b64decode(b64), np.uint8).reshape(256, 256, 4)
        psnrs.append(psnr_u8(rgba[..., :3], python_frames[index]))
    print(f"browser call: {player['framesDrawn']} of {n} frames drawn, PSNR vs the Python receiver "
          f"{', '.join(f'{v:.1f}' for v in psnrs)} dB; loudest heard RMS {state['heard']:.3f}; picture after its "
          f"speech: mean {sync_mean_ms:.1f} ms, max {player['syncMaxMs']:.1f} ms; live {state['live']}")
    assert min(psnrs) >= 40.0, psnrs
