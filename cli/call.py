"""``avfr-codec call | send | receive``: a video call with the codec over real WebRTC (aiortc).

- ``call``: both peers in this process over loopback (ICE host candidates 127.0.0.1 only, DTLS, SCTP).
- ``receive`` / ``send``: the two peers as two processes (or machines); the receiver runs a one-shot
  signaling server (127.0.0.1:8765 by default) that the sender connects to.

Nothing here talks to STUN or any host but the ones given: ICE servers are empty, and host candidates are
127.0.0.1 unless ``--host-ip`` names an address explicitly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import numpy as np

from avfr.benchmarks import CallRefusedError, loopback_call, stats_line, stats_loop
from avfr.cli import CliError

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``call``, ``send`` and ``receive`` to the ``avfr-codec`` parser."""
    call = subparsers.add_parser(
        "call", help="a two-peer call in this process over loopback WebRTC",
        description="Send a clip (or the camera) through the codec to a receiver in the same process over "
        "real aiortc (ICE host candidates on 127.0.0.1 only, DTLS, SCTP; no STUN).")
    _sender_args(call)
    _receiver_args(call)
    call.add_argument("--no-realtime", dest="realtime", action="store_false",
                      help="do not pace the sender at 25 fps; decide frames by arrival order only "
                      "(deterministic frame count; for slow machines and tests)")
    call.add_argument("--loss", type=float, default=0.0, help="drop this share of media packets (test)")
    call.add_argument("--jitter-ms", type=float, default=0.0, help="delay media packets by up to this (test)")
    call.set_defaults(func=_call)

    send = subparsers.add_parser("send", help="the calling peer (connects to `avfr-codec receive`, or serves "
                                 "a browser receiver with --web)")
    _sender_args(send)
    to = send.add_mutually_exclusive_group()
    to.add_argument("--connect", default="127.0.0.1:8765", metavar="HOST:PORT", help="receiver's signaling")
    to.add_argument("--web", default=None, metavar="HOST:PORT", help="serve the browser receiver's page here "
                    "(e.g. 127.0.0.1:8080) and call the first browser that opens it")
    send.add_argument("--host-ip", default=None, help="ICE host candidate address (default 127.0.0.1; "
                      "set it to this machine's LAN address to call another machine)")
    send.add_argument("--timeout-s", type=float, default=None, help="give up when no receiver answers "
                      "within this long (default 10; with --web 300)")
    send.set_defaults(func=_send)

    receive = subparsers.add_parser("receive", help="the answering peer (waits for `avfr-codec send`)")
    _receiver_args(receive)
    receive.add_argument("--listen", default="127.0.0.1:8765", metavar="HOST:PORT", help="signaling address")
    receive.add_argument("--host-ip", default=None, help="ICE host candidate address (default 127.0.0.1)")
    receive.add_argument("--timeout-s", type=float, default=None, help="give up when no sender comes")
    receive.set_defaults(func=_receive)


def _sender_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--video", type=Path, default=None, help="clip to send (default: camera + microphone)")
    p.add_argument("--audio", type=Path, default=None, help="speech for --video (default: <video>.wav or its track)")
    p.add_argument("--source", type=Path, default=None, help="source image (default: the first frame)")
    p.add_argument("--frames", type=int, default=None, help="send at most this many frames")
    p.add_argument("--causal", action="store_true", help="causal audio window (no 100 ms look-ahead)")
    p.add_argument("--audio-kbps", type=float, default=12.0, help="Opus bitrate, 6..16 (default 12)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads per graph")
    p.add_argument("--quiet", action="store_true", help="no live stats line")


def _receiver_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=None, help="write the received call to this mp4 (with audio)")
    p.add_argument("--show", action="store_true", help="show the received call in a window")
    p.add_argument("--source-timeout-s", type=float, default=10.0, help="end the call with an error when no "
                   "source image came this long after the sender's Hello (default 10; 0: wait forever)")
    p.add_argument("--silence-timeout-s", type=float, default=10.0, help="end the call with an error when the "
                   "sender sent nothing at all for this long (default 10; 0: wait forever)")
    if not any(a.dest == "threads" for a in p._actions):
        p.add_argument("--threads", type=int, default=1, help="onnxruntime threads per graph")
        p.add_argument("--quiet", action="store_true", help="no live stats line")


# --- the call as a library function (tests and benchmarks use it) ------------------------------------


def _load_source(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    from avfr.codec.runtime import decode_source_image

    if not path.exists():
        raise FileNotFoundError(f"source image not found: {path}")
    return decode_source_image(path.read_bytes())


def _open_source(args: argparse.Namespace):
    from avfr.sender.track import CameraSource, DeviceError, FileSource

    if args.video is not None:
        if not args.video.exists():
            raise FileNotFoundError(f"video not found: {args.video}")
        source = FileSource(args.video, args.audio, args.frames)
        if source.audio_path is None:
            _warn(f"no audio in {args.video} (nor a {args.video.with_suffix('.wav').name} next to it): "
                  "sending silence; pass --audio FILE")
        return source
    if args.audio is not None:
        raise CliError("--audio needs --video (the camera call uses the microphone)")
    try:
        return CameraSource()
    except DeviceError as exc:
        raise CliError(str(exc)) from exc


def _warn(text: str) -> None:
    print(f"avfr-codec: warning: {text}", file=sys.stderr, flush=True)


def _warn_no_face(encoder_stats) -> None:
    missing, frames = encoder_stats.no_face_frames, encoder_stats.frames
    if missing:
        _warn(f"no face found in {missing} of {frames} frames: the keypoints were held there, so the far end's "
              "picture did not follow" + (" (is there a face in the video?)" if missing >= frames else ""))


def _close_source(frames) -> None:
    close = getattr(frames, "close", None)
    if close is not None:
        close()


class _Outputs:
    """Where ``--out`` / ``--show`` frames go. The first failure (a missing folder, a full disk, ...) stops the
    writing and, through `guard`, ends the call with that error instead of leaving it running."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.writer = self.window = None
        self.error: Exception | None = None
        self._failed: asyncio.Event | None = None
        if args.show:  # first: Window refuses a machine without a display before OpenCV's GUI aborts
            from avfr.receiver.output import Window

            try:
                self.window = Window()
            except RuntimeError as exc:
                raise CliError(str(exc)) from exc
        if args.out is not None:
            from avfr.receiver.output import Mp4Writer

            try:
                self.writer = Mp4Writer(args.out)
            except BaseException:
                self.close(None, failing=True)
                raise

    def on_frame(self, frame) -> None:
        """The receiver's frame callback (on the event loop)."""
        if self.error is not None:
            return
        try:
            if self.writer is not None:
                self.writer.write(frame)
            if self.window is not None:
                self.window.show(frame)
        except Exception as exc:  # noqa: BLE001 - raised from guard(), which ends the call
            self.error = exc
            if self._failed is not None:
                self._failed.set()

    async def guard(self, coro):
        """Await `coro`; when an output fails first, cancel it (its clean-up runs) and raise that error."""
        self._failed = asyncio.Event()
        task = asyncio.ensure_future(coro)
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            await asyncio.wait({task, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            failed.cancel()
            if not task.done():
                task.cancel()
        try:
            result = await task
        except BaseException:
            if self.error is None:
                raise
        if self.error is not None:
            raise self.error
        return result

    def close(self, total_frames: int | None, failing: bool = False) -> None:
        """Finish the mp4 (padded to `total_frames`) and the window, each once; after a failure (`failing`, or
        an output error) only release them, else raise the first error after closing both."""
        failing = failing or self.error is not None
        parts = ((self.writer, lambda w: w.close(total_frames)), (self.window, lambda w: w.close()))
        self.writer = self.window = None
        first: Exception | None = None
        for part, finish in parts:
            if part is None:
                continue
            try:
                finish(part)
            except Exception as exc:  # noqa: BLE001 - the first error is the one reported
                if failing or first is not None:
                    logger.debug("closing %s after a failure: %s", type(part).__name__, exc)
                else:
                    first = exc
        if first is not None:
            raise first


def _encoder_config(args: argparse.Namespace):
    from avfr.sender import EncoderConfig

    if not 6.0 <= args.audio_kbps <= 16.0:
        raise ValueError(f"--audio-kbps must be in 6..16, got {args.audio_kbps}")
    return EncoderConfig(causal_window=args.causal, audio_bitrate_bps=int(args.audio_kbps * 1000),
                         threads=args.threads)


def _decoder_config(args: argparse.Namespace, realtime: bool):
    from avfr.receiver import DecoderConfig

    return DecoderConfig(threads=args.threads, realtime=realtime, source_timeout_s=args.source_timeout_s,
                         silence_timeout_s=args.silence_timeout_s)


def _call(args: argparse.Namespace) -> int:
    from avfr.sender.track import Impairment

    source_rgb = _load_source(args.source)
    outputs = _Outputs(args)
    frames = result = None
    try:
        frames = _open_source(args)
        result = _run_call(outputs.guard(loopback_call(
            frames, source_rgb, encoder_config=_encoder_config(args),
            decoder_config=_decoder_config(args, realtime=args.realtime),
            impairment=Impairment(loss=args.loss, jitter_ms=args.jitter_ms), realtime=args.realtime,
            keep_frames=False, on_frame=outputs.on_frame, stats_every_s=0.0 if args.quiet else 1.0)))
        outputs.close(result.decoder.frames_decided)
    except BaseException:
        _end_status_line(args)
        outputs.close(None, failing=True)
        raise
    finally:
        _close_source(frames)
    line = stats_line(result.encoder, result.decoder, result.link, result.frame_times, result.wall_s,
                      realtime=args.realtime)
    print(("\r" if not args.quiet else "") + line, file=sys.stderr)
    _warn_no_face(result.encoder)
    print(f"call: {result.decoder.frames_decided} frames ({result.decoder.frames_out} rendered) in "
          f"{result.wall_s:.1f} s, connected in "
          f"{1000 * result.setup_s:.0f} ms (offer/answer)" + (f", written to {args.out}" if args.out else ""))
    return 0


def _end_status_line(args: argparse.Namespace) -> None:
    """Before an error: end the live stats line (it has no newline of its own)."""
    if not args.quiet:
        print(file=sys.stderr, flush=True)


def _run_call(coro):
    """asyncio.run, with a refused call as a user-facing error."""
    try:
        return asyncio.run(coro)
    except CallRefusedError as exc:
        raise CliError(str(exc)) from exc


def _send(args: argparse.Namespace) -> int:
    source_rgb = _load_source(args.source)
    if args.timeout_s is None:
        args.timeout_s = 300.0 if args.web else 10.0
    if not args.timeout_s > 0:
        raise ValueError(f"--timeout-s must be > 0, got {args.timeout_s}")
    if args.web:
        from avfr.cli.send_web import send_web_async

        host, port = _parse(args.web)
        send_async = send_web_async
    else:
        host, port = _parse(args.connect)
        send_async = _send_async
    frames = _open_source(args)
    try:
        stats, encoder_stats = asyncio.run(send_async(frames, source_rgb, host, port, args))
    except BaseException:
        _end_status_line(args)
        raise
    finally:
        _close_source(frames)
    _warn_no_face(encoder_stats)
    print(f"send: {stats.frames} frames, {stats.media_bytes} media bytes, {stats.control_bytes} control bytes")
    return 0


def _parse(text: str) -> tuple[str, int]:
    from avfr.sender.peer import parse_host_port

    return parse_host_port(text)


async def _send_async(frames, source_rgb, host: str, port: int, args: argparse.Namespace):
    from avfr.sender import Encoder
    from avfr.sender.peer import LOOPBACK, call_signaling, create_channels, host_candidates, new_peer_connection
    from avfr.sender.track import SendingPeer

    encoder = Encoder(_encoder_config(args))
    with host_candidates([args.host_ip or LOOPBACK]):
        pc = new_peer_connection()
        control, media = create_channels(pc)
        sending = SendingPeer(encoder, control, media)
        try:
            print(f"send: calling {host}:{port} (up to {args.timeout_s:g} s for a receiver)", file=sys.stderr,
                  flush=True)
            try:
                await call_signaling(pc, host, port, retry_s=args.timeout_s)
            except ConnectionError as exc:
                if not str(exc).startswith("no avfr receiver"):
                    raise
                raise ConnectionError(f"{exc} within {args.timeout_s:g} s: start `avfr-codec receive` there first "
                                      "(or raise --timeout-s)") from exc
            stats = await run_sending(sending, encoder, frames, source_rgb, "receiver")
        finally:
            sending.close()
            await pc.close()
            encoder.close()  # mediapipe (the encoder thread has stopped)
    return stats, encoder.stats


async def run_sending(sending, encoder, frames, source_rgb, peer: str):
    """Send the call over `sending`'s connected channels (paced at 25 fps) -> SenderLinkStats.

    Raises:
        CliError: the peer (named `peer` in the message) refused the call.
    """
    stats = await sending.run(frames, source_rgb, realtime=True)
    if encoder.stopped:
        raise CliError(f"the {peer} refused the call: {encoder.stats.refused}")
    await asyncio.sleep(0.5)  # let the end anchor reach the peer
    return stats


def _receive(args: argparse.Namespace) -> int:
    host, port = _parse(args.listen)
    if args.timeout_s is not None and not args.timeout_s > 0:
        raise ValueError(f"--timeout-s must be > 0, got {args.timeout_s}")
    outputs = _Outputs(args)
    try:
        stats = asyncio.run(outputs.guard(_receive_async(host, port, args, outputs.on_frame)))
        outputs.close(stats.frames_decided)
    except BaseException:
        _end_status_line(args)
        outputs.close(None, failing=True)
        raise
    print(f"\nreceive: {stats.frames_decided} frames ({stats.frames_out} rendered)"
          + (f", written to {args.out}" if args.out else ""))
    return 0


async def _receive_async(host: str, port: int, args: argparse.Namespace, on_frame):
    from avfr.receiver import Decoder
    from avfr.receiver.track import ReceivingPeer
    from avfr.sender.peer import LOOPBACK, host_candidates, new_peer_connection, serve_signaling

    decoder = Decoder(_decoder_config(args, realtime=True))
    with host_candidates([args.host_ip or LOOPBACK]):
        pc = new_peer_connection()
        receiving = ReceivingPeer(decoder, pc)
        receiving.frames_out.append(on_frame)
        stats_task = None
        try:
            limit = f"gives up after {args.timeout_s:g} s" if args.timeout_s else "Ctrl-C to stop"
            print(f"receive: waiting for a sender on {host}:{port} ({limit})", file=sys.stderr, flush=True)
            try:
                await serve_signaling(pc, host, port, args.timeout_s)
            except (asyncio.TimeoutError, TimeoutError) as exc:
                if pc.remoteDescription is None:  # no offer
                    raise TimeoutError(f"no sender called {host}:{port} within {args.timeout_s:g} s "
                                       "(--timeout-s)") from exc
                raise TimeoutError(f"{exc or 'timed out'} (--timeout-s)") from exc  # no connection in time
            if not args.quiet:
                stats_task = asyncio.get_running_loop().create_task(
                    stats_loop(1.0, None, decoder, None, receiving))
            await receiving.wait()
            if decoder.refused:
                raise CliError(f"refused the call: {decoder.refused}")
        finally:
            if stats_task is not None:
                stats_task.cancel()
            receiving.close()
            await pc.close()
            decoder.close()  # mediapipe (the generator thread has stopped)
    return decoder.stats
