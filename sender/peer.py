"""WebRTC set-up shared by both peers: loopback-only ICE, the two avfr data channels, and signaling.

Network rule: every RTCPeerConnection here uses ``RTCConfiguration(iceServers=[])`` (no STUN, no TURN), and
ICE host candidates come only from the addresses given to `host_candidates` (127.0.0.1 for calls on one
machine; a LAN address only when the user passes one explicitly). aioice normally gathers every interface
address and deliberately drops loopback, so `host_candidates` replaces ``aioice.ice.get_host_addresses``
while it is active (process-wide, reference-counted, restored on exit) and candidate gathering happens
inside it (aiortc gathers in ``setLocalDescription``).

Signaling for two processes is one JSON line each way over TCP: the receiver listens (127.0.0.1:8765 by
default), the sender connects and writes its offer, the receiver answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator

__all__ = [
    "LOOPBACK",
    "DEFAULT_SIGNALING_PORT",
    "host_candidates",
    "new_peer_connection",
    "create_channels",
    "connect_in_process",
    "serve_signaling",
    "call_signaling",
    "parse_host_port",
]

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
DEFAULT_SIGNALING_PORT = 8765
_MAX_SIGNALING_BYTES = 1 << 20

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


async def _read_description(reader: asyncio.StreamReader):
    from aiortc import RTCSessionDescription

    line = await reader.readline()
    if not line or len(line) > _MAX_SIGNALING_BYTES:
        raise ConnectionError("signaling peer closed the connection or sent too much")
    try:
        obj = json.loads(line)
        return RTCSessionDescription(sdp=str(obj["sdp"]), type=str(obj["type"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConnectionError(f"bad signaling message: {exc}") from exc


def _write_description(writer: asyncio.StreamWriter, desc) -> None:
    writer.write(json.dumps({"sdp": desc.sdp, "type": desc.type}).encode() + b"\n")


async def serve_signaling(pc, host: str = LOOPBACK, port: int = DEFAULT_SIGNALING_PORT,
                          timeout_s: float | None = None) -> None:
    """Receiver side: wait for one sender's offer on host:port, answer it, close the server.

    Raises:
        OSError: the address cannot be bound.
        ConnectionError: a bad offer.
        TimeoutError: no sender within timeout_s.
    """
    got: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if got.done():
            writer.close()
            return
        try:
            offer = await _read_description(reader)
            await pc.setRemoteDescription(offer)
            await pc.setLocalDescription(await pc.createAnswer())
            _write_description(writer, pc.localDescription)
            await writer.drain()
            got.set_result(None)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting caller
            if not got.done():
                got.set_exception(exc)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    logger.info("signaling on %s:%d, waiting for the sender", host, port)
    try:
        await asyncio.wait_for(got, timeout_s)
    finally:
        server.close()


async def call_signaling(pc, host: str = LOOPBACK, port: int = DEFAULT_SIGNALING_PORT,
                         retry_s: float = 10.0) -> None:
    """Sender side: connect to the receiver's signaling (retrying for `retry_s`), offer, apply the answer.

    Raises:
        ConnectionError: no receiver listening, or a bad answer.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_s
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            break
        except OSError as exc:
            if loop.time() > deadline:
                raise ConnectionError(f"no avfr receiver at {host}:{port} ({exc})") from exc
            await asyncio.sleep(0.2)
    try:
        await pc.setLocalDescription(await pc.createOffer())
        _write_description(writer, pc.localDescription)
        await writer.drain()
        await pc.setRemoteDescription(await _read_description(reader))
    finally:
        writer.close()
