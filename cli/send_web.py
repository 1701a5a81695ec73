"""``avfr-codec send --web HOST:PORT``: serve the browser receiver's page and call the first browser that opens it.

The sender is the same as for a Python receiver (`Encoder` + `SendingPeer` on the two avfr data channels); only
the signaling differs: a `WebCallServer` hands over the connection of the page that answered its offer.
"""

from __future__ import annotations

import argparse
import sys

from avfr.cli import CliError

__all__ = ["send_web_async"]


async def send_web_async(frames, source_rgb, host: str, port: int, args: argparse.Namespace):
    """Serve the page on host:port, wait up to ``args.timeout_s`` for a browser, send the call to it.

    Returns:
        (SenderLinkStats, EncoderStats) of the call.

    Raises:
        CliError: no browser came, its connection failed, or it refused the call.
        FileNotFoundError: the page's npm packages are not installed.
    """
    from avfr.cli.call import _encoder_config, run_sending
    from avfr.codec.runtime import load_call_model
    from avfr.sender import Encoder
    from avfr.sender.peer import LOOPBACK, wait_connected
    from avfr.sender.track import SendingPeer
    from avfr.sender.web import WebCallServer

    host_ips = [args.host_ip or LOOPBACK]
    server = WebCallServer(load_call_model(), host_ips)
    try:
        url = await server.start(host, port)
    except OSError as exc:
        raise CliError(f"cannot serve the page on {host}:{port}: {exc.strerror or exc}") from exc
    encoder = Encoder(_encoder_config(args))
    call = None
    try:
        print(f"send: open {url} in a browser (Chromium) to receive the call; waiting up to "
              f"{args.timeout_s:g} s", file=sys.stderr, flush=True)
        try:
            call = await server.next_call(args.timeout_s)
            await wait_connected(call.pc, 20.0)
        except (TimeoutError, ConnectionError) as exc:
            raise CliError(str(exc)) from exc
        print(f"send: calling the browser at {call.peer}", file=sys.stderr, flush=True)
        sending = SendingPeer(encoder, call.control, call.media)
        try:
            stats = await run_sending(sending, encoder, frames, source_rgb, "browser")
        finally:
            sending.close()
    finally:
        if call is not None:
            await call.pc.close()
        server.call_ended()
        await server.close()
        encoder.close()
    return stats, encoder.stats
