"""A browser watches an avfr caller through the gateway: `avfr-codec gateway --publish-web` and `avfr-codec send`
in their own processes, headless Chromium on the viewer page (plain WebRTC, no model in the page): the page gets
the caller's stream (VP8 video + Opus audio) and shows its frames. Everything on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from browser_harness import browser_skip_reason, launch_chromium
from codec_data_helpers import require_shared_data
from loopback_helpers import free_port

pytestmark = pytest.mark.skipif(browser_skip_reason() is not None, reason=browser_skip_reason() or "")


def test_a_browser_watches_a_caller_through_the_gateway():
    from playwright.sync_api import sync_playwright

    clip = require_shared_data() / "clips" / "retalking_2.mp4"
    callers, viewers, page_port = free_port(), free_port(), free_port()
    cli = [sys.executable, "-m", "avfr.cli"]
    # --timeout-s 25: the gateway exits once no caller has been connected that long, and a cold sender (first
    # imports, models loading) on a loaded machine can take more than 10 s to connect
    gateway = subprocess.Popen([*cli, "gateway", "--listen", f"127.0.0.1:{callers}", "--publish",
                                f"127.0.0.1:{viewers}", "--publish-web", f"127.0.0.1:{page_port}", "--timeout-s",
                                "25"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sender = None
    try:
        sender = subprocess.Popen([*cli, "send", "--video", str(clip), "--connect", f"127.0.0.1:{callers}",
                                   "--quiet", "--timeout-s", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        with sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                page = browser.new_page()
                deadline = time.monotonic() + 60
                state = {}
                while time.monotonic() < deadline:  # until the gateway is up and the caller is in
                    try:
                        page.goto(f"http://127.0.0.1:{page_port}/?callers=2")
                        page.wait_for_function("['watching', 'failed'].includes(window.viewer.state)",
                                               timeout=20_000)
                        state = page.evaluate("window.viewer")
                        if state["callers"]:
                            break
                    except Exception:  # noqa: BLE001 - the gateway's page is not up yet
                        pass
                    time.sleep(0.5)
                assert state.get("callers"), state
                page.wait_for_function("Object.values(window.viewer.frames).some((n) => n >= 5)", timeout=30_000)
                state = page.evaluate("window.viewer")
            finally:
                browser.close()
        sender.wait(90)
        out, err = gateway.communicate(timeout=90)
    finally:
        for proc in (sender, gateway):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert state["state"] == "watching" and state["error"] == ""
    assert [c["id"] for c in state["callers"]] == ["caller-1"]
    assert state["callers"][0]["video_track"] == "caller-1-video" and "audio_mid" in state["callers"][0]
    assert state["frames"]["caller-1"] >= 5  # the caller's video plays in the page
    assert sender.returncode == 0 and gateway.returncode == 0, err[-2000:]
    assert "1 callers served" in err
