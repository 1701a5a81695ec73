"""WebRTC set-up shared by both peers: loopback-only ICE, the two avfr data channels, and signaling.

Network rule: every RTCPeerConnection here uses ``RTCConfiguration(iceServers=[])`` (no STUN, no TURN), and
ICE host candidates come only from the addresses given to `host_candidates` (127.0.0.1 for calls on one
machine; a LAN address only when the user passes one explicitly). aioice normally gathers every interface
address and deliberately drops loopback, so `host_candidates` replaces ``aioice.ice.get_host_addresses``
while it is active (process-wide, reference-counted, restored on exit) and candidate gathering happens
inside it (aiortc gathers in ``setLocalDescription``).

Signaling for two processes is one JSON line each way over TCP: the receiver listens (127.0.0.1:8765 by
default), the sender connects and writes its offer, the receiver answers. The line is untrusted: at most
64 KiB, within 10 s, JSON {"sdp", "type"} whose SDP offers the avfr data channels (checked before aiortc
sees it); a client that fails gets {"error": reason} back and the receiver keeps listening until its timeout,
which also covers the connection coming up after the answer. `serve_offers` is the same exchange for a server
that answers every client (``avfr-codec gateway``: many callers, many viewers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator

from avfr.proto import printable_text

__all__ = [
    "LOOPBACK",
    "DEFAULT_SIGNALING_PORT",
    "host_candidates",
    "new_peer_connection",
    "create_channels",
    "connect_in_process",
    "serve_signaling",
    "serve_offers",
    "call_signaling",
    "wait_connected",
    "parse_host_port",
    "check_sdp",
]

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
DEFAULT_SIGNALING_PORT = 8765
_MAX_SIGNALING_BYTES = 64 * 1024  # one JSON line (aiortc's offer is ~1.5 kB); the StreamReader's limit too
_READ_TIMEOUT_S = 10.0  # a signaling client gets this long to send its line

_patch_depth = 0
_patch_original = None


@contextlib.contextmanager
def host_candidates(addresses: list[str]) -> Iterator[None]:
    """Restrict aioice host candidates to `addresses` while the block runs.

    Args:
        addresses: IPv4/IPv6 literals, e.g. ["127.0.0.1"].
    """
    import aioice.ice

    global _patch_depth, _patch_original
    if _patch_depth == 0:
        _patch_original = aioice.ice.get_host_addresses
    previous = aioice.ice.get_host_addresses
    fixed = list(addresses)
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(fixed)
    _patch_depth += 1
    try:
        yield
    finally:
        _patch_depth -= 1
        aioice.ice.get_host_addresses = previous if _patch_depth else _patch_original


def new_peer_connection():  # -> aiortc.RTCPeerConnection
    """An RTCPeerConnection with no ICE servers (create it inside `host_candidates`)."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def create_channels(pc) -> tuple[object, object]:
    """Open the two avfr channels on the offering side (proto/SPEC.md): (control, media)."""
    from avfr.proto import CONTROL_CHANNEL_LABEL, DATA_CHANNEL_PROTOCOL, MEDIA_CHANNEL_LABEL

    control = pc.createDataChannel(CONTROL_CHANNEL_LABEL, protocol=DATA_CHANNEL_PROTOCOL)
    media = pc.createDataChannel(MEDIA_CHANNEL_LABEL, ordered=False, maxRetransmits=0,
                                 protocol=DATA_CHANNEL_PROTOCOL)
    return control, media


async def connect_in_process(offerer, answerer) -> None:
    """Offer/answer between two peer connections of this process (no signaling server needed)."""
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


def parse_host_port(text: str, default_port: int = DEFAULT_SIGNALING_PORT) -> tuple[str, int]:
    """'host:port', 'host' or ':port' -> (host, port); host defaults to 127.0.0.1.

    Raises:
        ValueError: a port that is not an int in 1..65535.
    """
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    try:
        port_n = int(port) if port else default_port
    except ValueError as exc:
        raise ValueError(f"bad port in {text!r}") from exc
    if not 1 <= port_n <= 65535:
        raise ValueError(f"port {port_n} out of range")
    return host or LOOPBACK, port_n


def _foreign(exc: BaseException) -> str:
    """An exception about the peer's bytes, as printable text (its message may quote them)."""
    return f"{type(exc).__name__}: {printable_text(str(exc), 120)}"


def check_sdp(sdp: str, kind: str) -> None:
    """An SDP offer / answer must be what `create_channels` negotiates: one data-channel m-line with ICE
    credentials, a host candidate and a DTLS fingerprint (aiortc refuses less, and then waits forever)."""
    from aiortc import sdp as aiortc_sdp

    try:
        desc = aiortc_sdp.SessionDescription.parse(sdp)
    except Exception as exc:  # noqa: BLE001 - aiortc's parser raises ValueError, IndexError, KeyError, ...
        raise ConnectionError(f"the {kind} is not SDP ({_foreign(exc)})") from exc
    if len(desc.media) != 1 or desc.media[0].kind != "application":
        raise ConnectionError(f"the {kind} is not the avfr data channels "
                              f"(m-lines: {printable_text(' '.join(m.kind for m in desc.media) or 'none', 60)})")
    media = desc.media[0]
    if media.profile != "UDP/DTLS/SCTP" or media.sctp_port is None:
        raise ConnectionError(f"the {kind}'s data channel is not UDP/DTLS/SCTP with an sctp-port")
    if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
        raise ConnectionError(f"the {kind} has no ICE credentials")
    if not media.ice_candidates:
        raise ConnectionError(f"the {kind} has no ICE candidate")
    if media.dtls is None or not media.dtls.fingerprints:
        raise ConnectionError(f"the {kind} has no DTLS fingerprint")


async def _read_description(reader: asyncio.StreamReader, kind: str, timeout_s: float, check=check_sdp):
    """One JSON line {"sdp", "type": kind} from the peer -> RTCSessionDescription.

    Raises:
        ConnectionError: no line within timeout_s, a line over _MAX_SIGNALING_BYTES, not JSON, not an SDP
            `kind` of the avfr data channels, or the peer's {"error": ...} (every message printable).
    """
    from aiortc import RTCSessionDescription

    try:
        line = await asyncio.wait_for(reader.readline(), timeout_s)
    except (asyncio.TimeoutError, TimeoutError) as exc:
        raise ConnectionError(f"no signaling line within {timeout_s:g} s") from exc
    except ValueError as exc:  # StreamReader.readline: a line over its limit (LimitOverrunError)
        raise ConnectionError(f"signaling line over {_MAX_SIGNALING_BYTES} bytes") from exc
    if not line.endswith(b"\n"):
        raise ConnectionError("the signaling peer closed the connection before a full line")
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ConnectionError(f"signaling line is not JSON: {printable_text(line, 60)}") from exc
    if isinstance(obj, dict) and isinstance(obj.get("error"), str):
        raise ConnectionError(f"the peer refused: {printable_text(obj['error'])}")
    if not isinstance(obj, dict) or obj.get("type") != kind or not isinstance(obj.get("sdp"), str):
        raise ConnectionError(f"signaling message is not an SDP {kind}: {printable_text(line, 60)}")
    check(obj["sdp"], kind)
    return RTCSessionDescription(sdp=obj["sdp"], type=kind)


def _write_line(writer: asyncio.StreamWriter, obj: dict) -> None:
    writer.write(json.dumps(obj).encode() + b"\n")


def _write_description(writer: asyncio.StreamWriter, desc) -> None:
    _write_line(writer, {"sdp": desc.sdp, "type": desc.type})


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())


async def wait_connected(pc, timeout_s: float | None = None) -> None:
    """Until `pc` is connected (ICE + DTLS).

    Raises:
        TimeoutError: not connected within timeout_s.
        ConnectionError: the connection failed or was closed.
    """
    done: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_state() -> None:
        if pc.connectionState in ("connected", "failed", "closed") and not done.done():
            done.set_result(pc.connectionState)

    pc.on("connectionstatechange", on_state)
    on_state()
    try:
        state = await asyncio.wait_for(done, timeout_s)
    except (asyncio.TimeoutError, TimeoutError) as exc:
        raise TimeoutError(f"the peer connection did not come up within {timeout_s:g} s") from exc
    finally:
        pc.remove_listener("connectionstatechange", on_state)
    if state != "connected":
        raise ConnectionError(f"the peer connection {state} before it was up (ICE / DTLS)")


async def serve_signaling(pc, host: str = LOOPBACK, port: int = DEFAULT_SIGNALING_PORT,
                          timeout_s: float | None = None) -> None:
    """Receiver side: answer the first good sender's offer on host:port, then wait until `pc` is connected.

    A bad client (no JSON line within `_READ_TIMEOUT_S`, a line over `_MAX_SIGNALING_BYTES`, anything but an
    SDP offer of the avfr data channels, an offer aiortc refuses) gets {"error": reason} back, is closed and
    logged with one warning line, and the server keeps listening. The server closes after the answer.

    Args:
        pc: the answering RTCPeerConnection (only a checked offer reaches it, one at a time).
        host, port: where to listen.
        timeout_s: for the whole set-up: a good offer and the connection (None: no limit).

    Raises:
        OSError: the address cannot be bound.
        TimeoutError: no good sender connected within timeout_s.
        ConnectionError: the answered sender's connection failed (ICE / DTLS).
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout_s is None else loop.time() + timeout_s
    answered: asyncio.Future = loop.create_future()  # result: the client task that was answered
    one_offer = asyncio.Lock()
    clients: set[asyncio.Task] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        clients.add(task)
        peer = writer.get_extra_info("peername")
        mine = False
        try:
            if answered.done():
                return
            offer = await _read_description(reader, "offer", _READ_TIMEOUT_S)
            async with one_offer:
                if answered.done():
                    raise ConnectionError("another sender was answered")
                try:
                    await pc.setRemoteDescription(offer)
                    await pc.setLocalDescription(await pc.createAnswer())
                except Exception as exc:  # noqa: BLE001 - aiortc refused the (checked) offer
                    raise ConnectionError(f"aiortc refused the offer ({_foreign(exc)})") from exc
                mine = True
                answered.set_result(task)  # pc holds this offer now, whatever becomes of the write below
            _write_description(writer, pc.localDescription)
            await writer.drain()
            logger.info("signaling: answered the sender at %s", peer)
        except ConnectionError as exc:
            if mine:  # the connection then fails or times out in wait_connected
                logger.warning("signaling: could not send the answer to %s: %s", peer, exc)
                return
            logger.warning("signaling: refused a client at %s: %s", peer, exc)
            with contextlib.suppress(Exception):
                _write_line(writer, {"error": str(exc)})
                await asyncio.wait_for(writer.drain(), 1.0)
        finally:
            clients.discard(task)
            writer.close()

    server = await asyncio.start_server(handle, host, port, limit=_MAX_SIGNALING_BYTES)
    logger.info("signaling on %s:%d, waiting for the sender", host, port)
    try:
        try:
            await asyncio.wait_for(answered, _remaining(deadline))
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise TimeoutError(f"no sender's offer within {timeout_s:g} s") from exc
    finally:
        server.close()
        winner = answered.result() if answered.done() and not answered.cancelled() else None
        for task in list(clients):  # clients still reading or applying an offer; the answer still goes out
            if task is not winner:
                task.cancel()
    await wait_connected(pc, _remaining(deadline))


async def serve_offers(answer, host: str = LOOPBACK, port: int = DEFAULT_SIGNALING_PORT, check=check_sdp):
    """Answer every client's offer on host:port (one JSON line each way, as `serve_signaling`), until closed.

    Args:
        answer: ``async answer(offer: RTCSessionDescription) -> dict``, the reply line (e.g. {"sdp", "type":
            "answer", ...}); a ConnectionError it raises is the client's refusal.
        host, port: where to listen (port 0: any free port, see ``server.sockets[0].getsockname()``).
        check: ``check(sdp, "offer")`` raises ConnectionError for an offer to refuse (default `check_sdp`: the
            avfr data channels).

    A bad client (as `serve_signaling`), or one `answer` refuses, gets {"error": reason} back and one warning
    line in the log; an `answer` that fails otherwise is logged with its traceback and the client gets
    {"error": "internal error"}. Nothing a client does stops the server.

    Returns:
        the asyncio.Server (``close()`` it to stop listening).

    Raises:
        OSError: the address cannot be bound.
    """
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        error = None
        try:
            offer = await _read_description(reader, "offer", _READ_TIMEOUT_S, check)
            _write_line(writer, await answer(offer))
            await writer.drain()
        except ConnectionError as exc:
            logger.warning("signaling: refused a client at %s: %s", peer, exc)
            error = str(exc)
        except Exception:  # noqa: BLE001 - a bug answering one client must not stop the server
            logger.exception("signaling: answering the client at %s failed", peer)
            error = "internal error"
        finally:
            if error is not None:
                with contextlib.suppress(Exception):
                    _write_line(writer, {"error": error})
                    await asyncio.wait_for(writer.drain(), 1.0)
            writer.close()

    return await asyncio.start_server(handle, host, port, limit=_MAX_SIGNALING_BYTES)


async def call_signaling(pc, host: str = LOOPBACK, port: int = DEFAULT_SIGNALING_PORT,
                         retry_s: float = 10.0, answer_timeout_s: float = 30.0) -> None:
    """Sender side: connect to the receiver's signaling (retrying for `retry_s`), offer, apply the answer.

    Raises:
        ConnectionError: no receiver listening, no answer within answer_timeout_s, the receiver's refusal,
            or a bad answer (every message printable).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_s
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port, limit=_MAX_SIGNALING_BYTES)
            break
        except OSError as exc:
            if loop.time() > deadline:
                raise ConnectionError(f"no avfr receiver at {host}:{port} ({exc})") from exc
            await asyncio.sleep(0.2)
    try:
        await pc.setLocalDescription(await pc.createOffer())
        _write_description(writer, pc.localDescription)
        await writer.drain()
        answer = await _read_description(reader, "answer", answer_timeout_s)
        try:
            await pc.setRemoteDescription(answer)
        except Exception as exc:  # noqa: BLE001 - aiortc refused the (checked) answer
            raise ConnectionError(f"aiortc refused the answer ({_foreign(exc)})") from exc
    finally:
        writer.close()
