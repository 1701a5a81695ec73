"""The gateway's browser viewers: ``avfr-codec gateway --publish-web HOST:PORT`` serves a viewer page.

The page (``web/viewer.html``, ``web/src/viewer.mjs``) offers to receive one video + audio pair per caller it
wants (``?callers=N``, default 4) and sends its offer on a WebSocket at ``/signal``; the gateway answers exactly as
for a viewer on ``--publish`` (`GatewayServer.answer_viewer`): the same tracks, VP8 / Opus. The offer is
untrusted: one text message within 10 s, at most 64 KiB, an SDP of audio / video m-lines
(`check_viewer_offer`), its ICE candidates cut to the gateway's host address before aiortc sees them.
"""

from __future__ import annotations

import asyncio
import logging

from avfr.sender.web import WEB_ROOT, file_response, parse_browser_description

__all__ = ["serve_viewer_page"]

logger = logging.getLogger(__name__)

_MAX_SIGNALING_BYTES = 64 * 1024
_OFFER_TIMEOUT_S = 10.0
_PAGE_FILES = {"/": "viewer.html", "/src/viewer.mjs": "src/viewer.mjs"}


async def serve_viewer_page(server, host: str, port: int):
    """Start the viewer page's HTTP + WebSocket server for a `GatewayServer`; returns (aiohttp runner, port).

    Raises:
        OSError: the address cannot be bound.
    """
    from aiohttp import WSMsgType, web

    from avfr.cli.gateway import check_viewer_offer

    async def page(request):
        return file_response(WEB_ROOT / _PAGE_FILES[request.path])

    async def signal(request):
        from aiortc import RTCSessionDescription

        ws = web.WebSocketResponse(max_msg_size=_MAX_SIGNALING_BYTES, heartbeat=None)
        await ws.prepare(request)
        try:
            msg = await asyncio.wait_for(ws.receive(), _OFFER_TIMEOUT_S)
            if msg.type != WSMsgType.TEXT:
                raise ConnectionError("expected the SDP offer as a text message")
            sdp = parse_browser_description(msg.data, "offer", {server.host_ip}, check=check_viewer_offer)
            reply = await server.answer_viewer(RTCSessionDescription(sdp=sdp, type="offer"))
            await ws.send_json({"type": "answer", **reply})
            logger.info("a browser viewer at %s is watching %d callers", request.remote, len(reply["callers"]))
        except (ConnectionError, asyncio.TimeoutError, TimeoutError) as exc:
            text = str(exc) or "no SDP offer within 10 s"
            logger.warning("viewer page: refused %s: %s", request.remote, text)
            await ws.send_json({"type": "error", "error": text})
        finally:
            await ws.close()
        return ws

    app = web.Application(client_max_size=_MAX_SIGNALING_BYTES)
    for path in _PAGE_FILES:
        app.router.add_get(path, page)
    app.router.add_get("/signal", signal)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, runner.addresses[0][1]
