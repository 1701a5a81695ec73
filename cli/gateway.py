"""``avfr-codec gateway``: many avfr callers in, each republished as a plain WebRTC video + audio track.

Callers: ``avfr-codec send --connect HOST:PORT`` (or any avfr sender) on ``--listen``, the same one-line JSON
signaling as ``receive`` (`avfr.sender.peer.serve_offers`), one RTCPeerConnection each, at most
``--max-calls`` at once (one more is refused with {"error"}). All their frames are drawn by one batched
generator (`avfr.receiver.gateway.Gateway`).

Viewers (any WebRTC client, no model needed) on ``--publish``, the same signaling: one JSON line
``{"type": "offer", "sdp": ...}`` whose SDP offers to *receive* audio and/or video (m-lines ``recvonly``; aiortc:
``pc.addTransceiver("video", "recvonly")``), one pair per caller it wants to watch. The reply is one line
``{"type": "answer", "sdp": ..., "callers": [{"id": "caller-1", "video_mid": "0", "audio_mid": "1",
"video_track": "caller-1-video", "audio_track": "caller-1-audio"}, ...]}``: the callers present at that moment,
in arrival order, fill the offered video (and audio) m-lines in order; the list says which transceiver (mid)
carries whom. The SDP says it too: ``a=msid:<caller id> <caller id>-video`` (browsers: ``event.streams[0].id``;
aiortc: ``track.id``). Unfilled m-lines are answered inactive; a caller who comes later is not added (connect
again to watch them). Video: VP8 256x256 25 fps; audio: Opus (from 16 kHz mono speech, 20 ms frames). An aiortc
viewer of more than one caller needs ``RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)``: with its
default (balanced) policy aiortc 1.16 leaves every audio m-line after the first on a transport that BUNDLE
discarded, and receives nothing there (the gateway's own viewer connections are max-bundle for that reason).

A caller hanging up, refused (its Hello), timing out (no source image / silence, the Decoder's liveness) or
failing ends its tracks after their last frame, and the gateway stops their RTP senders (RTCP BYE: a viewer's
track ends too). A bad signaling client is refused and logged; nothing a peer does stops the gateway. ICE: no
servers, host candidates 127.0.0.1 or ``--host-ip`` only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

logger = logging.getLogger(__name__)

MAX_VIEWER_MLINES = 64  # m-lines of one viewer offer
CONNECT_TIMEOUT_S = 20.0  # ICE + DTLS of a peer after its answer


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``gateway`` to the ``avfr-codec`` parser."""
    p = subparsers.add_parser(
        "gateway", help="many avfr callers in, each out as a plain WebRTC video + audio track (VP8/Opus)",
        description="Accept avfr callers (`avfr-codec send --connect`) on --listen, draw all of them on one "
        "batched generator, and publish each as a standard video + audio track to WebRTC viewers on --publish "
        "(one JSON line each way; see `python -m pydoc avfr.cli.gateway`).")
    p.add_argument("--listen", default="127.0.0.1:8765", metavar="HOST:PORT", help="callers' signaling")
    p.add_argument("--publish", default="127.0.0.1:8766", metavar="HOST:PORT", help="viewers' signaling")
    p.add_argument("--publish-web", default=None, metavar="HOST:PORT", help="also serve a viewer page for "
                   "browsers here (e.g. 127.0.0.1:8080; `avfr.cli.gateway_web`)")
    p.add_argument("--max-calls", type=int, default=8, help="callers at once (default 8)")
    p.add_argument("--timeout-s", type=float, default=None, help="exit once no caller was connected for this "
                   "long (default: run until Ctrl-C)")
    p.add_argument("--host-ip", default=None, help="ICE host candidate address (default 127.0.0.1)")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"), help="generator: torch bf16 on "
                   "CUDA (auto: when present), else onnxruntime on CPU")
    p.add_argument("--render-budget-ms", type=float, default=100.0, help="a frame not drawn this long after "
                   "it was decided goes out as the last picture with its own speech (default 100)")
    p.add_argument("--source-timeout-s", type=float, default=10.0, help="drop a caller who sent no source "
                   "image this long after its Hello (0: never)")
    p.add_argument("--silence-timeout-s", type=float, default=10.0, help="drop a caller who sent nothing for "
                   "this long (0: never)")
    p.set_defaults(func=_gateway)


def check_viewer_offer(sdp: str, kind: str) -> None:
    """A viewer's offer: audio / video m-lines only (at most MAX_VIEWER_MLINES), ICE credentials, a host
    candidate and a DTLS fingerprint (raises ConnectionError, every message printable)."""
    from aiortc import sdp as aiortc_sdp

    from avfr.proto import printable_text

    try:
        desc = aiortc_sdp.SessionDescription.parse(sdp)
    except Exception as exc:  # noqa: BLE001 - aiortc's parser raises ValueError, IndexError, KeyError, ...
        raise ConnectionError(f"the {kind} is not SDP ({type(exc).__name__})") from exc
    kinds = [m.kind for m in desc.media]
    if not kinds or len(kinds) > MAX_VIEWER_MLINES or any(k not in ("audio", "video") for k in kinds):
        raise ConnectionError(f"a viewer's {kind} must have 1..{MAX_VIEWER_MLINES} audio / video m-lines "
                              f"(got: {printable_text(' '.join(kinds[:8]) or 'none', 60)})")
    first = desc.media[0]
    if first.ice is None or not first.ice.usernameFragment or not first.ice.password or not first.ice_candidates:
        raise ConnectionError(f"the {kind} has no ICE credentials or candidate")
    if first.dtls is None or not first.dtls.fingerprints:
        raise ConnectionError(f"the {kind} has no DTLS fingerprint")


class GatewayServer:
    """The gateway's networking: callers' and viewers' signaling and peer connections (module doc).

    Args:
        gateway: the `Gateway` (the caller closes it after `close`).
        max_calls: callers at once.
        host_ip: ICE host candidate address (None: 127.0.0.1).
        connect_timeout_s: ICE + DTLS of a peer after its answer.
    """

    def __init__(self, gateway, max_calls: int = 8, host_ip: str | None = None,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        from avfr.sender.peer import LOOPBACK

        if max_calls < 1:
            raise ValueError(f"--max-calls must be >= 1, got {max_calls}")
        self.gateway = gateway
        self.max_calls = max_calls
        self.host_ip = host_ip or LOOPBACK
        self.connect_timeout_s = connect_timeout_s
        self.servers: list = []
        self.viewers: dict = {}  # viewer pc -> [(call id, transceiver, track)]
        self.tasks: set[asyncio.Task] = set()
        self.callers_served = 0
        self.closing = False
        self.last_busy_s = time.monotonic()

    async def start(self, listen: tuple[str, int], publish: tuple[str, int]) -> tuple[int, int]:
        """Listen for callers and viewers; returns the two ports (0 given: the ones picked)."""
        from avfr.sender.peer import check_sdp, serve_offers

        callers = await serve_offers(self.answer_caller, *listen, check=check_sdp)
        self.servers.append(callers)
        viewers = await serve_offers(self.answer_viewer, *publish, check=check_viewer_offer)
        self.servers.append(viewers)
        return callers.sockets[0].getsockname()[1], viewers.sockets[0].getsockname()[1]

    @property
    def busy(self) -> bool:
        return bool(self.gateway.calls)

    def _peer_connection(self, viewer: bool = False):
        from avfr.sender.peer import host_candidates, new_peer_connection

        with host_candidates([self.host_ip]):
            if not viewer:
                return new_peer_connection()
            from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection

            # max-bundle: aiortc's default (balanced) gives a second audio m-line the first one's transport
            # and never moves it onto the BUNDLE transport: that m-line would send nothing
            return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))

    async def _answer(self, pc, offer) -> dict:
        from avfr.sender.peer import host_candidates

        with host_candidates([self.host_ip]):  # aiortc gathers candidates here
            await pc.setRemoteDescription(offer)
            await pc.setLocalDescription(await pc.createAnswer())
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- callers ---------------------------------------------------------------------------------------

    async def answer_caller(self, offer) -> dict:
        """A caller's (checked) offer -> the answer line; ConnectionError: refused (full, or aiortc said no)."""
        if len(self.gateway.calls) >= self.max_calls:
            raise ConnectionError(f"the gateway is full ({self.max_calls} calls)")
        pc = self._peer_connection()
        call = self.gateway.add_call(pc)  # before the offer: the peer must see the data channels
        try:
            reply = await self._answer(pc, offer)
        except Exception as exc:  # noqa: BLE001 - aiortc refused the (checked) offer
            self.gateway.end_call(call)
            await pc.close()
            raise ConnectionError(f"aiortc refused the offer ({type(exc).__name__})") from exc
        self.callers_served += 1
        logger.info("%s answered", call.id)
        self._spawn(self._run_caller(call, pc))
        return reply

    async def _run_caller(self, call, pc) -> None:
        from avfr.sender.peer import wait_connected

        try:
            try:
                await wait_connected(pc, self.connect_timeout_s)
            except (TimeoutError, ConnectionError) as exc:
                logger.warning("%s never connected: %s", call.id, exc)
                self.gateway.end_call(call)
            else:
                await self.gateway.run_call(call)
        finally:
            self.last_busy_s = time.monotonic()
            s = call.decoder.stats
            print(f"gateway: {call.id} ended: {s.frames_decided} frames, {s.frames_out} drawn, {s.render_skipped} "
                  "repeated", file=sys.stderr, flush=True)
            await pc.close()
            await asyncio.gather(*(self._end_sender(transceiver, track) for entries in list(self.viewers.values())
                                   for cid, transceiver, track in entries if cid == call.id))

    async def _end_sender(self, transceiver, track, wait_s: float = 10.0) -> None:
        """Once a caller's track ended and its sender read the last frame: stop the sender (RTCP BYE)."""
        deadline = time.monotonic() + wait_s
        while track.readyState != "ended" and time.monotonic() < deadline and not self.closing:
            await asyncio.sleep(0.05)
        try:
            await transceiver.sender.stop()
        except Exception as exc:  # noqa: BLE001 - the viewer's connection may be closing
            logger.debug("stopping a viewer's sender: %s", exc)

    # --- viewers ---------------------------------------------------------------------------------------

    async def answer_viewer(self, offer) -> dict:
        """A viewer's (checked) offer -> the answer line with the callers it carries (module doc)."""
        pc = self._peer_connection(viewer=True)
        entries: list = []  # (call id, transceiver, track)
        listed: list[dict] = []
        try:
            await pc.setRemoteDescription(offer)
            slots = {kind: [t for t in pc.getTransceivers() if t.kind == kind] for kind in ("video", "audio")}
            wanted = max(len(s) for s in slots.values())
            for i, call in enumerate(list(self.gateway.calls.values())[:wanted]):
                listed.append({"id": call.id})
                for kind, make in (("video", call.video_track), ("audio", call.audio_track)):
                    if i < len(slots[kind]):
                        track = make()
                        sender = pc.addTrack(track)  # the first offered m-line of its kind still free
                        sender._stream_id = call.id  # msid "<caller id> <track id>" (aiortc has no setter)
                        entries.append((call.id, next(t for t in slots[kind] if t.sender is sender), track))
            reply = await self._answer(pc, offer)
        except Exception as exc:  # noqa: BLE001 - aiortc refused the (checked) offer
            for _, _, track in entries:
                track.stop()
            await pc.close()
            raise ConnectionError(f"aiortc refused the offer ({type(exc).__name__})") from exc
        for item in listed:
            for cid, transceiver, track in entries:
                if cid == item["id"]:
                    item[f"{track.kind}_mid"] = transceiver.mid
                    item[f"{track.kind}_track"] = track.id
        self.viewers[pc] = entries
        logger.info("a viewer answered with %d callers", len(listed))
        self._spawn(self._run_viewer(pc))
        return {**reply, "callers": listed}

    async def _run_viewer(self, pc) -> None:
        from avfr.sender.peer import wait_connected

        gone = asyncio.Event()

        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                gone.set()

        pc.on("connectionstatechange", on_state)
        try:
            await wait_connected(pc, self.connect_timeout_s)
            await gone.wait()
        except (TimeoutError, ConnectionError) as exc:
            logger.warning("a viewer never connected: %s", exc)
        finally:
            for _, _, track in self.viewers.pop(pc, []):
                track.stop()  # its caller stops feeding it
            await pc.close()

    async def close(self) -> None:
        """Stop listening, end every call and viewer connection."""
        self.closing = True
        for server in self.servers:
            server.close()
        for call in list(self.gateway.calls.values()):
            self.gateway.end_call(call)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for pc in list(self.viewers):
            await pc.close()


async def run_gateway(args: argparse.Namespace) -> int:
    """What ``avfr-codec gateway`` runs; returns the number of callers served."""
    from avfr.receiver import DecoderConfig
    from avfr.receiver.batch_backends import default_backend
    from avfr.receiver.gateway import Gateway
    from avfr.receiver.many_calls import BatchRenderer
    from avfr.sender.peer import parse_host_port

    listen, publish = parse_host_port(args.listen), parse_host_port(args.publish, 8766)
    if args.timeout_s is not None and not args.timeout_s > 0:
        raise ValueError(f"--timeout-s must be > 0, got {args.timeout_s}")
    config = DecoderConfig(realtime=True, source_timeout_s=args.source_timeout_s,
                           silence_timeout_s=args.silence_timeout_s)
    renderer = BatchRenderer(default_backend(args.device), skip_late=True)
    gateway = Gateway(renderer, decoder_config=config, render_budget_s=args.render_budget_ms / 1000)
    server = GatewayServer(gateway, args.max_calls, args.host_ip)
    page = None
    try:
        ports = await server.start(listen, publish)
        if args.publish_web:
            from avfr.cli.gateway_web import serve_viewer_page

            web_host, _ = parse_host_port(args.publish_web, 8080)
            page, web_port = await serve_viewer_page(server, *parse_host_port(args.publish_web, 8080))
            print(f"gateway: viewer page at http://{web_host}:{web_port}/", file=sys.stderr, flush=True)
        limit = f"exits after {args.timeout_s:g} s without callers" if args.timeout_s else "Ctrl-C to stop"
        print(f"gateway: callers on {listen[0]}:{ports[0]} (up to {args.max_calls}), viewers on "
              f"{publish[0]}:{ports[1]}, generator {renderer.backend.name} ({limit})", file=sys.stderr, flush=True)
        while args.timeout_s is None or server.busy or time.monotonic() - server.last_busy_s < args.timeout_s:
            if server.busy:
                server.last_busy_s = time.monotonic()
            await asyncio.sleep(0.5)
    finally:
        if page is not None:
            await page.cleanup()
        await server.close()
        gateway.close()
        renderer.close()
        renderer.backend.close()
    return server.callers_served


def _gateway(args: argparse.Namespace) -> int:
    served = asyncio.run(run_gateway(args))
    print(f"gateway: {served} callers served", file=sys.stderr)
    return 0
