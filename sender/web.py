"""The browser receiver's server: the page, its engines and graphs over HTTP, and the call's signaling.

`avfr-codec send --web HOST:PORT` runs a `WebCallServer` (aiohttp). Opening its page in a browser makes the
browser the receiving peer: the page opens a WebSocket at ``/signal``; the server makes a fresh
RTCPeerConnection with the two avfr data channels (`create_channels`), sends its offer, and takes the page's
answer. One call at a time: a second page is told the sender is busy.

What the server sends is fixed: the page (``web/index.html``, ``web/src/*.mjs``), the npm engines it runs on
(``web/node_modules``: onnxruntime-web, mediapipe's face mesh and selfie segmentation, opencv.js), and the ONNX
manifest with its two receiver graphs, nothing else. Every response is cross-origin isolated (COOP + COEP),
which onnxruntime-web's threads need. Signaling bytes are untrusted: one JSON message within 10 s, at most
64 KiB, an SDP answer of the avfr data channels (`check_sdp`), whose ICE candidates are cut to the host
addresses this sender uses (127.0.0.1 by default) before aiortc sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from avfr.codec.runtime import CallModel
from avfr.proto import printable_text
from avfr.sender.peer import LOOPBACK, check_sdp, create_channels, host_candidates, new_peer_connection

__all__ = ["WEB_ROOT", "VENDOR_PACKAGES", "HEADLESS_CHROMIUM_ARGS", "find_chromium", "WebCall", "WebCallServer",
           "missing_web_packages", "keep_candidates", "parse_browser_description", "file_response"]

logger = logging.getLogger(__name__)

WEB_ROOT = Path(__file__).resolve().parents[1] / "web"
# URL folder under /vendor/ -> folder under web/node_modules (versions pinned in web/package-lock.json)
VENDOR_PACKAGES = {
    "ort": "onnxruntime-web/dist",
    "mediapipe/face_mesh": "@mediapipe/face_mesh",
    "mediapipe/selfie_segmentation": "@mediapipe/selfie_segmentation",
    "opencv": "@techstark/opencv-js/dist",
}
_MAX_SIGNALING_BYTES = 64 * 1024
_ANSWER_TIMEOUT_S = 10.0
_CONTENT_TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
                  ".json": "application/json", ".html": "text/html", ".onnx": "application/octet-stream",
                  ".data": "application/octet-stream", ".binarypb": "application/octet-stream",
                  ".tflite": "application/octet-stream", ".png": "image/png", ".css": "text/css"}
# Headless Chromium as a receiving peer over 127.0.0.1 (tests, benchmarks): WebRTC over loopback needs
# --allow-loopback-in-peer-connection and mDNS host-name hiding off; Chromium reads only the last
# --disable-features and Playwright passes its own, so this one repeats the entries of Playwright's that matter.
_DISABLED_FEATURES = [
    "WebRtcHideLocalIpsWithMdns",  # host candidates as 127.0.0.1, not name.local
    # Playwright's own (its --disable-features is replaced by this one)
    "AvoidUnnecessaryBeforeUnloadCheckSync", "DestroyProfileOnBrowserClose", "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable", "LensOverlay", "MediaRouter", "PaintHolding", "ThirdPartyStoragePartitioning",
    "OptimizationHints", "NetworkTimeServiceQuerying", "AimEnabled", "PreconnectToSearch",
]
HEADLESS_CHROMIUM_ARGS = [
    "--allow-loopback-in-peer-connection",
    f"--disable-features={','.join(_DISABLED_FEATURES)}",
    "--autoplay-policy=no-user-gesture-required",
    # A machine with a LAN interface: Chromium gathers only the default route's address (not 127.0.0.1) for a
    # page without media permission; the fake media UI grants it, so 127.0.0.1 is gathered too.
    "--use-fake-ui-for-media-stream",
    "--use-angle=swiftshader",  # mediapipe's solutions draw with WebGL: software GL, headless
    "--enable-unsafe-swiftshader",
]


def find_chromium() -> str | None:
    """Path of the system Chromium (Debian's `chromium`), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


_SAFE_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,128}$")
_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ \S+")


def missing_web_packages(root: Path = WEB_ROOT) -> list[str]:
    """The npm packages the page needs that are not installed (``npm ci --prefix web`` installs them)."""
    return [name for name in VENDOR_PACKAGES.values() if not (root / "node_modules" / name).is_dir()]


def keep_candidates(sdp: str, addresses: set[str]) -> str:
    """The SDP with only the ICE candidates on `addresses` (a browser also offers mDNS names and LAN addresses:
    aioice would resolve the names by multicast and send checks to the LAN address)."""
    lines = []
    for line in sdp.splitlines():
        match = _CANDIDATE.match(line)
        if match and match.group(1) not in addresses:
            continue
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"


@dataclass
class WebCall:
    """A browser that answered: its connection and the two channels to hand to `SendingPeer`."""

    pc: object  # aiortc.RTCPeerConnection
    control: object  # RTCDataChannel "avfr-control"
    media: object  # RTCDataChannel "avfr-media"
    peer: str  # the browser's address, for logs


class WebCallServer:
    """HTTP + WebSocket server of the browser receiver.

    Args:
        model: the call's model; its manifest (/models/manifest.json) and two receiver graphs are served.
        host_ips: ICE host candidate addresses of this sender (and of the browsers it accepts).
        root: the web folder (page, scripts, node_modules).
        extra_static: more URL prefix -> folder mappings (tests serve their pages this way).

    Raises:
        FileNotFoundError: the page or its npm packages are missing (the message says how to install them).
    """

    def __init__(self, model: CallModel, host_ips: list[str] | None = None, root: Path = WEB_ROOT,
                 extra_static: dict[str, Path] | None = None) -> None:
        missing = missing_web_packages(root)
        if not (root / "index.html").is_file():
            raise FileNotFoundError(f"no browser receiver page at {root / 'index.html'}")
        if missing:
            raise FileNotFoundError(f"the browser receiver needs its npm packages ({', '.join(missing)}): run "
                                    f"`npm ci --prefix {root}`")
        self.model = model
        self.host_ips = list(host_ips or [LOOPBACK])
        self.root = root
        self._files = self._model_files()
        self._static = {"/src/": root / "src", **(extra_static or {})}
        self._static.update({f"/vendor/{url}/": root / "node_modules" / folder
                             for url, folder in VENDOR_PACKAGES.items()})
        self._calls: asyncio.Queue[WebCall] = asyncio.Queue()
        self._busy = False
        self._runner = None
        self.url = ""

    def _model_files(self) -> dict[str, Path]:
        """/models/ names -> files: the manifest and the two receiver graphs only."""
        m = self.model.manifest
        if self.model.path is None:
            raise FileNotFoundError("the call model was not loaded from a manifest file: nothing to serve")
        files = {"manifest.json": self.model.path}
        for path in (Path(m.receiver_source), Path(m.receiver_frame)):
            files[path.name] = path
        return files

    async def start(self, host: str = LOOPBACK, port: int = 8080) -> str:
        """Listen on host:port; returns the page's URL.

        Raises:
            OSError: the address cannot be bound.
        """
        from aiohttp import web

        app = web.Application(middlewares=[_isolation_middleware()], client_max_size=_MAX_SIGNALING_BYTES)
        app.router.add_get("/", self._index)
        app.router.add_get("/signal", self._signal)
        app.router.add_get("/models/{name}", self._model)
        app.router.add_get(r"/{path:[A-Za-z0-9_-]+/.+}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        self.url = f"http://{host}:{bound[1]}/"
        logger.info("browser receiver page at %s", self.url)
        return self.url

    async def close(self) -> None:
        """Stop serving (idempotent)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def next_call(self, timeout_s: float | None = None) -> WebCall:
        """The next browser that answered the offer (its connection may still be coming up).

        Raises:
            TimeoutError: no browser within timeout_s.
        """
        try:
            return await asyncio.wait_for(self._calls.get(), timeout_s)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise TimeoutError(f"no browser opened {self.url} within {timeout_s:g} s") from exc

    def call_ended(self) -> None:
        """The current call is over: the next page may connect."""
        self._busy = False

    # --- handlers -----------------------------------------------------------------------------------

    async def _index(self, request):
        return file_response(self.root / "index.html")

    async def _model(self, request):
        from aiohttp import web

        path = self._files.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return file_response(path)

    async def _file(self, request):
        from aiohttp import web

        rel = request.match_info["path"]
        for prefix, folder in self._static.items():
            if ("/" + rel).startswith(prefix):
                parts = ("/" + rel)[len(prefix):].split("/")
                if parts and all(_SAFE_NAME.match(p) and p not in (".", "..") for p in parts):
                    path = folder.joinpath(*parts)
                    if path.is_file():
                        return file_response(path)
        raise web.HTTPNotFound()

    async def _signal(self, request):
        """One browser's signaling: our offer out, its answer in, over a WebSocket."""
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse(max_msg_size=_MAX_SIGNALING_BYTES, heartbeat=None)
        await ws.prepare(request)
        peer = str(request.remote)
        if self._busy:
            await ws.send_json({"type": "error", "error": "this sender is already in a call"})
            await ws.close()
            return ws
        self._busy = True
        pc = None
        try:
            with host_candidates(self.host_ips):
                pc = new_peer_connection()
                control, media = create_channels(pc)
                await pc.setLocalDescription(await pc.createOffer())
            await ws.send_json({"type": "offer", "sdp": pc.localDescription.sdp,
                                "model": {"name": self.model.model_id, "weights_sha256": self.model.weights_sha256}})
            msg = await asyncio.wait_for(ws.receive(), _ANSWER_TIMEOUT_S)
            if msg.type != WSMsgType.TEXT:
                raise ConnectionError(f"expected the SDP answer as a text message, got {msg.type.name}")
            answer = parse_browser_description(msg.data, "answer", set(self.host_ips))
            from aiortc import RTCSessionDescription

            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            except Exception as exc:  # noqa: BLE001 - aiortc refused the (checked) answer
                raise ConnectionError(f"aiortc refused the answer ({type(exc).__name__})") from exc
            logger.info("signaling: browser at %s answered", peer)
            await self._calls.put(WebCall(pc, control, media, peer))
            pc = None  # the call owns it now
            async for _ in ws:  # keep the socket until the page goes (its close is the page's hang-up)
                pass
        except (ConnectionError, asyncio.TimeoutError, TimeoutError) as exc:
            text = str(exc) or "no SDP answer within 10 s"
            logger.warning("signaling: refused the browser at %s: %s", peer, text)
            with contextlib.suppress(Exception):
                await ws.send_json({"type": "error", "error": text})
            self._busy = False
        finally:
            if pc is not None:
                await pc.close()
            await ws.close()
        return ws


def parse_browser_description(text: str, kind: str, addresses: set[str], check=check_sdp) -> str:
    """A page's signaling message {"type": kind, "sdp"} -> a checked SDP with only the candidates on `addresses`.

    Args:
        text: the WebSocket text message (untrusted).
        kind: "answer" (the receiver page) or "offer" (the gateway's viewer page).
        addresses: this side's ICE host addresses: the only ones aiortc may send checks to.
        check: what the SDP must describe (default: the avfr data channels); raises ConnectionError.

    Raises:
        ConnectionError: not JSON, not an SDP `kind`, no candidate on `addresses`, or `check` refused it
            (every message printable).
    """
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConnectionError(f"signaling message is not JSON: {printable_text(text, 60)}") from exc
    if not isinstance(obj, dict) or obj.get("type") != kind or not isinstance(obj.get("sdp"), str):
        raise ConnectionError(f"signaling message is not an SDP {kind}: {printable_text(text, 60)}")
    sdp = keep_candidates(obj["sdp"], addresses)
    if "\na=candidate:" not in "\n" + sdp:
        offered = sorted({m.group(1) for line in obj["sdp"].splitlines() if (m := _CANDIDATE.match(line))})
        raise ConnectionError(
            f"the browser offered no ICE candidate on {', '.join(sorted(addresses))} (it offered "
            f"{printable_text(', '.join(offered) or 'none', 120)}): give this side one of those with --host-ip, "
            "or start Chromium with --allow-loopback-in-peer-connection (on a machine with a network interface, "
            "Chromium gathers 127.0.0.1 only for a page allowed to use the camera)")
    check(sdp, kind)
    return sdp


def file_response(path: Path):
    """aiohttp's FileResponse with the content type the page needs (by suffix) and no caching."""
    from aiohttp import web

    ctype = _CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    return web.FileResponse(path, headers={"Content-Type": ctype, "Cache-Control": "no-cache"})


def _isolation_middleware():
    from aiohttp import web

    @web.middleware
    async def middleware(request, handler):
        response = await handler(request)
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        response.headers["Cross-Origin-Embedder-Policy"] = "require-corp"
        response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
        return response

    return middleware

