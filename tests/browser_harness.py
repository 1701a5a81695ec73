"""What the browser tests share: the page's server on its own event loop thread, and headless Chromium.

Chromium is Debian's (`/usr/bin/chromium`, installed by `.ci/run`), driven by Playwright with
`executable_path` (nothing downloaded) and `avfr.sender.web.HEADLESS_CHROMIUM_ARGS`.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from avfr.sender.web import HEADLESS_CHROMIUM_ARGS as CHROMIUM_ARGS
from avfr.sender.web import WEB_ROOT, find_chromium, missing_web_packages

CHROMIUM = find_chromium()


def browser_skip_reason() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if CHROMIUM is None:
        return "chromium is not installed (`apt-get install chromium`; .ci/run does it)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    missing = missing_web_packages()
    if missing:
        return f"the page's npm packages are missing ({', '.join(missing)}): npm ci --prefix {WEB_ROOT}"
    return None


class LoopThread:
    """An asyncio event loop on a daemon thread (the page's server runs there while a test drives Chromium)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro, timeout_s: float = 120.0):
        """Run a coroutine on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def submit(self, coro):
        """Start a coroutine on the loop; returns its concurrent.futures.Future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def launch_chromium(playwright):
    """Headless Chromium with the loopback WebRTC flags."""
    if not CHROMIUM:
        pytest.skip("chromium is not installed")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def static_test_pages() -> dict[str, Path]:
    """The test pages' URL prefix -> folder, for WebCallServer(extra_static=...)."""
    return {"/test/": WEB_ROOT / "test" / "browser"}


def psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays of one shape (pictures or single planes; peak 255; inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
