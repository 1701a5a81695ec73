"""Signaling (`serve_signaling` / `call_signaling`) against bad clients, over 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from loopback_helpers import free_port

from avfr.sender.peer import (
    LOOPBACK,
    call_signaling,
    create_channels,
    host_candidates,
    new_peer_connection,
    serve_signaling,
)


async def _raw_client(port: int, payload: bytes, timeout_s: float = 15.0) -> bytes:
    """Send `payload` to the signaling server, return its reply line (b"" when it just closed)."""
    for _ in range(100):
        try:
            reader, writer = await asyncio.open_connection(LOOPBACK, port, limit=1 << 20)
            break
        except OSError:
            await asyncio.sleep(0.05)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), timeout_s)
    finally:
        writer.close()


async def _offer() -> tuple[object, str]:
    pc = new_peer_connection()
    create_channels(pc)
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


def _line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def test_bad_clients_are_refused_and_the_receiver_keeps_listening(caplog):
    no_media = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"

    async def scenario() -> list[bytes]:
        with host_candidates([LOOPBACK]):
            pc_recv, pc_send = new_peer_connection(), new_peer_connection()
            create_channels(pc_send)
            port = free_port()
            serve = asyncio.ensure_future(serve_signaling(pc_recv, LOOPBACK, port, timeout_s=60))
            _, good_sdp = await _offer()
            bad = [
                b"hello, not JSON\n",
                b"x" * 100_000 + b"\n",  # over the line limit (asyncio's own 64 KiB limit used to raise)
                b"[" * 50_000 + b"\n",  # JSON nested past the recursion limit
                b"\x1b[2J\x1b]0;title\x07\xff\n",  # escape sequences for the log line
                _line({"sdp": 1, "type": "offer"}),
                _line({"sdp": good_sdp, "type": "answer"}),
                _line({"sdp": no_media, "type": "offer"}),  # aiortc answers this, then nothing ever connects
                _line({"sdp": "v=0\r\nm=video 9 RTP/AVP 0\r\n", "type": "offer"}),
            ]
            replies = []
            for payload in bad:
                replies.append(await _raw_client(port, payload))
                assert not serve.done(), payload[:40]
            try:
                await call_signaling(pc_send, LOOPBACK, port, retry_s=5)
                await asyncio.wait_for(serve, 30)  # returns once connected
                assert pc_recv.connectionState == "connected"
            finally:
                await pc_send.close()
                await pc_recv.close()
        return replies

    with caplog.at_level(logging.WARNING, logger="avfr.sender.peer"):
        replies = asyncio.run(scenario())
    assert all(set(json.loads(r)) == {"error"} for r in replies), replies
    refused = [r.getMessage() for r in caplog.records if "refused a client" in r.getMessage()]
    assert len(refused) == len(replies)
    assert all(m.isprintable() for m in refused)
    assert any("over 65536 bytes" in m for m in refused) and any("not JSON" in m for m in refused)
    assert any("not the avfr data channels" in m for m in refused)


def test_an_offer_that_never_connects_ends_within_the_timeout():
    async def scenario() -> None:
        with host_candidates([LOOPBACK]):
            pc_recv = new_peer_connection()
            port = free_port()
            serve = asyncio.ensure_future(serve_signaling(pc_recv, LOOPBACK, port, timeout_s=3.0))
            ghost, sdp = await _offer()
            await ghost.close()  # the offer is well formed, but nobody will answer ICE / DTLS
            reply = json.loads(await _raw_client(port, _line({"sdp": sdp, "type": "offer"})))
            assert reply["type"] == "answer"
            try:
                await asyncio.wait_for(serve, 10)
            finally:
                await pc_recv.close()

    t0 = time.monotonic()
    with pytest.raises((TimeoutError, ConnectionError)):
        asyncio.run(scenario())
    assert time.monotonic() - t0 < 8


def test_no_sender_times_out():
    async def scenario() -> None:
        pc = new_peer_connection()
        try:
            await serve_signaling(pc, LOOPBACK, free_port(), timeout_s=0.5)
        finally:
            await pc.close()

    with pytest.raises(TimeoutError, match="no sender"):
        asyncio.run(scenario())


def test_the_sender_reports_a_refusal_in_printable_text():
    async def scenario() -> None:
        async def refuse(reader, writer):
            await reader.readline()
            writer.write(_line({"error": "\x1b[31mgo away\x1b[0m"}))
            await writer.drain()
            writer.close()

        port = free_port()
        server = await asyncio.start_server(refuse, LOOPBACK, port)
        with host_candidates([LOOPBACK]):
            pc = new_peer_connection()
            create_channels(pc)
            try:
                await call_signaling(pc, LOOPBACK, port, retry_s=2)
            finally:
                await pc.close()
                server.close()

    with pytest.raises(ConnectionError, match=r"the peer refused: \\x1b\[31mgo away") as info:
        asyncio.run(scenario())
    assert str(info.value).isprintable()
