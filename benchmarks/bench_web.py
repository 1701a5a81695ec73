"""The browser receiver's per-frame time in headless Chromium: one JSON line per setting.

Per frame: the log-mel window (mel.mjs), the `receiver_frame` graph in onnxruntime-web (WASM, SIMD) and the
canvas pixels, on a source set once; with 1 and 2 threads, on the page's main thread and in the render worker
the page uses. The page is served by the same `WebCallServer` as `avfr-codec send --web` (cross-origin isolated,
so onnxruntime-web can use threads). Nothing but 127.0.0.1 is contacted.

    python benchmarks/bench_web.py --frames 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import threading

import numpy as np


def _serve(ready: dict, stop: threading.Event) -> None:
    """Run the page's server on its own loop until `stop`."""
    from avfr.codec.runtime import load_call_model
    from avfr.sender.web import WEB_ROOT, WebCallServer

    async def run() -> None:
        server = WebCallServer(load_call_model(), extra_static={"/bench/": WEB_ROOT / "bench"})
        ready["url"] = await server.start("127.0.0.1", 0)
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await server.close()

    asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60, help="frames timed per setting (after 5 warm-up)")
    parser.add_argument("--threads", default="1,2", help="onnxruntime-web thread counts")
    parser.add_argument("--where", default="worker,main", help="worker (what the page uses) and/or main")
    parser.add_argument("--webgpu", action="store_true", help="also the WebGPU provider in the worker (headless "
                        "Chromium gets SwiftShader's software adapter: a check that the path runs, not a speed)")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from avfr.sender.web import HEADLESS_CHROMIUM_ARGS, find_chromium, missing_web_packages

    chromium = find_chromium()
    if chromium is None or missing_web_packages():
        print("bench_web: needs Debian's chromium and `npm ci --prefix web`", file=sys.stderr)
        return 2
    ready: dict = {}
    stop = threading.Event()
    server = threading.Thread(target=_serve, args=(ready, stop), daemon=True)
    server.start()
    while "url" not in ready:
        if not server.is_alive():
            return 2
        threading.Event().wait(0.05)
    try:
        with sync_playwright() as p:
            extra = ["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader"] if args.webgpu else []
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=HEADLESS_CHROMIUM_ARGS + extra)
            version = browser.version
            settings = [(w, int(t), ["wasm"]) for w in args.where.split(",") for t in args.threads.split(",")]
            if args.webgpu:
                settings.append(("worker", 2, ["webgpu", "webgpu-fallback", "wasm"]))
            for where, threads, providers in settings:
                page = browser.new_page()
                page.goto(ready["url"] + "bench/bench.html")
                page.wait_for_function("window.benchReady === true", timeout=30_000)
                r = page.evaluate("(a) => window.runBench(a)",
                                  {"threads": threads, "frames": args.frames + 5, "worker": where == "worker",
                                   "providers": providers})
                page.close()
                frame = np.array(r["frameMs"][5:])
                print(json.dumps({
                    "bench": "web_receiver_frame", "where": where, "threads": threads,
                    "providers": r["providers"],
                    "frames": len(frame), "frame_ms_median": round(float(np.median(frame)), 1),
                    "frame_ms_p95": round(float(np.percentile(frame, 95)), 1),
                    "fps": round(1000.0 / float(np.median(frame)), 1),
                    "mel_ms_median": round(float(np.median(r["melMs"][5:])), 2),
                    "rgba_ms_median": round(float(np.median(r["rgbaMs"][5:])), 2),
                    "source_ms": round(r["sourceMs"], 1), "load_ms": round(r["loadMs"], 1),
                    "cross_origin_isolated": r["isolated"], "chromium": version,
                    "cpu_count": os.cpu_count(), "machine": platform.machine(),
                }), flush=True)
            browser.close()
    finally:
        stop.set()
        server.join(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
