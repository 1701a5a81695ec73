"""`avfr-codec call | send | receive` round trips in a temporary directory (loopback only)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from loopback_helpers import free_port

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = DATA / "clips" / "retalking_2.mp4"


# mediapipe's (absl) and TFLite's start-up lines, as they reach the terminal without the CLI's filter
NATIVE_LOG = re.compile(r"^(INFO: Created TensorFlow Lite|WARNING: All log messages before absl|[IW]\d{4} \d\d:\d\d:)",
                        re.MULTILINE)


def _cli(*args: str, timeout_s: float = 180, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avfr.cli", *args], capture_output=True, text=True,
                          timeout=timeout_s, env=env)


def _one_clear_error(proc: subprocess.CompletedProcess, text: str, returncode: int = 1) -> None:
    """The command failed with `returncode` and one `avfr-codec: error:` line holding `text`, no traceback."""
    assert proc.returncode == returncode, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("avfr-codec: error:")]
    assert len(errors) == 1 and text in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def _mp4_streams(path: Path) -> dict[str, int]:
    import av

    counts: dict[str, int] = {}
    with av.open(str(path)) as container:
        for frame in container.decode(*container.streams):
            kind = "video" if isinstance(frame, av.VideoFrame) else "audio"
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def _need_clip() -> None:
    if not CLIP.exists():
        pytest.skip(f"../shared/data not found: {CLIP}")


def test_call_writes_an_mp4_with_audio(tmp_path):
    _need_clip()
    out = tmp_path / "received.mp4"
    proc = _cli("call", "--video", str(CLIP), "--frames", "10", "--no-realtime", "--quiet", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "call: 10 frames (10 rendered)" in proc.stdout
    streams = _mp4_streams(out)
    assert streams["video"] == 10 and streams["audio"] > 0


def test_call_without_camera_is_a_clear_error():
    import cv2

    cap = cv2.VideoCapture(0)
    present = cap.isOpened()
    cap.release()
    if present:
        pytest.skip("this machine has a camera")
    proc = _cli("call", "--quiet")
    assert proc.returncode == 2
    assert "no camera" in proc.stderr and "Traceback" not in proc.stderr


def test_send_and_receive_as_two_processes(tmp_path):
    _need_clip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "received.mp4"
    receiver = subprocess.Popen(
        [sys.executable, "-m", "avfr.cli", "receive", "--listen", f"127.0.0.1:{port}", "--out", str(out),
         "--timeout-s", "120", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sender = _cli("send", "--connect", f"127.0.0.1:{port}", "--video", str(CLIP), "--frames", "25", "--quiet")
        assert sender.returncode == 0, sender.stderr[-2000:]
        assert "send: 25 frames" in sender.stdout
        stdout, stderr = receiver.communicate(timeout=120)
    finally:
        if receiver.poll() is None:
            receiver.kill()
    assert receiver.returncode == 0, stderr[-2000:]
    assert "receive:" in stdout
    streams = _mp4_streams(out)
    assert streams["video"] >= 1 and streams["audio"] > 0


# --- failures end the command with one clear line (issue items 9 and 10) --------------------------------


def test_out_in_a_missing_folder_is_one_clear_error(tmp_path):
    _need_clip()
    proc = _cli("call", "--video", str(CLIP), "--frames", "10", "--no-realtime", "--quiet",
                "--out", str(tmp_path / "absent" / "x.mp4"), timeout_s=60)
    _one_clear_error(proc, "output folder not found")


def test_a_full_disk_ends_the_call_with_one_clear_error(tmp_path):
    _need_clip()
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full to stand in for a full disk")
    out = tmp_path / "full.mp4"
    out.symlink_to("/dev/full")  # every write fails with ENOSPC
    proc = _cli("call", "--video", str(CLIP), "--frames", "10", "--no-realtime", "--quiet", "--out", str(out),
                timeout_s=60)
    _one_clear_error(proc, "No space left on device")
    assert "call:" not in proc.stdout


def test_send_without_a_receiver_is_one_clear_error():
    _need_clip()
    port = free_port()
    proc = _cli("send", "--connect", f"127.0.0.1:{port}", "--timeout-s", "1", "--video", str(CLIP), "--frames", "10",
                "--quiet", timeout_s=60)
    assert f"calling 127.0.0.1:{port}" in proc.stderr  # says what it waits for
    _one_clear_error(proc, f"no avfr receiver at 127.0.0.1:{port}")


def test_receive_says_it_waits_and_times_out_with_one_clear_error():
    port = free_port()
    proc = _cli("receive", "--listen", f"127.0.0.1:{port}", "--timeout-s", "1", "--quiet", timeout_s=60)
    assert f"waiting for a sender on 127.0.0.1:{port}" in proc.stderr
    _one_clear_error(proc, f"no sender called 127.0.0.1:{port} within 1 s")


def test_show_without_a_display_is_refused_before_the_gui_aborts():
    _need_clip()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = _cli("call", "--video", str(CLIP), "--frames", "10", "--no-realtime", "--quiet", "--show", env=env,
                timeout_s=60)
    _one_clear_error(proc, "no display", returncode=2)


def test_a_missing_audio_file_is_an_error():
    _need_clip()
    proc = _cli("call", "--video", str(CLIP), "--audio", "missing.wav", "--frames", "10", "--no-realtime", "--quiet",
                timeout_s=60)
    _one_clear_error(proc, "audio not found: missing.wav")


def test_a_clip_without_face_or_audio_is_sent_with_a_warning_each(tmp_path):
    import av
    import numpy as np

    clip = tmp_path / "wall.mp4"  # a grey wall, no audio track
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 256
        stream.pix_fmt = "yuv420p"
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(np.full((256, 256, 3), 90 + 5 * i, np.uint8), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    proc = _cli("call", "--video", str(clip), "--frames", "10", "--no-realtime", "--quiet", timeout_s=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("avfr-codec: warning:")]
    assert any("no audio in" in w for w in warnings), proc.stderr[-3000:]
    assert any("no face found in 10 of 10 frames" in w for w in warnings), proc.stderr[-3000:]


# --- mediapipe's start-up log lines stay off the terminal unless -v (issue item 12) ----------------------


def test_native_log_lines_are_silenced_unless_verbose():
    _need_clip()
    quiet = _cli("call", "--video", str(CLIP), "--frames", "10", "--no-realtime", "--quiet", timeout_s=120)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert not NATIVE_LOG.findall(quiet.stderr), quiet.stderr[-3000:]
    assert "fps" in quiet.stderr  # Python's own stderr still comes through
    verbose = _cli("-v", "call", "--video", str(CLIP), "--frames", "10", "--no-realtime", "--quiet", timeout_s=120)
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert NATIVE_LOG.findall(verbose.stderr)  # -v shows them (and proves the pattern above matches them)


def test_native_log_filter_keeps_everything_else():
    from avfr.cli.native_logs import NOISE

    noise = [b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
             b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
             b"W0000 00:00:1796418997.555279   27613 inference_feedback_manager.cc:114] Feedback manager requires",
             b"I0000 00:00:1796418997.881683   27614 gl_context.cc:357] GL version: 3.2"]
    kept = [b"E0000 00:00:1796418997.881683   27614 calculator_graph.cc:887] a real error",
            b"Traceback (most recent call last):", b"fps  10.6 | keypoints 2.66 kbit/s",
            b"qt.qpa.plugin: Could not load the Qt platform plugin", b"INFO: something else"]
    assert all(NOISE.match(line) for line in noise)
    assert not any(NOISE.match(line) for line in kept)


def _signaling_client(port: int, payload: bytes, wait_s: float = 60.0) -> bytes:
    """Send one line to a receiver's signaling (once it listens); its reply line."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with sock:
        sock.sendall(payload)
        return sock.makefile("rb").readline()


def test_receive_refuses_bad_signaling_clients_and_keeps_listening():
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "avfr.cli", "receive", "--listen", f"127.0.0.1:{port}", "--timeout-s", "6",
         "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        replies = [_signaling_client(port, b"not json\n"), _signaling_client(port, b"x" * 100_000 + b"\n"),
                   _signaling_client(port, b'{"sdp": "v=0\\r\\n", "type": "offer"}\n')]
        t0 = time.monotonic()
        _, stderr = receiver.communicate(timeout=60)
    finally:
        if receiver.poll() is None:
            receiver.kill()
    assert all(b'"error"' in r for r in replies), replies
    assert time.monotonic() - t0 < 8  # ends at --timeout-s, not later
    assert stderr.count("refused a client") == 3, stderr[-3000:]
    _one_clear_error(subprocess.CompletedProcess([], receiver.returncode, "", stderr), "no sender called")
