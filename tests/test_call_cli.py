"""`avfr-codec call | send | receive` round trips in a temporary directory (loopback only)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = DATA / "clips" / "retalking_2.mp4"


def _cli(*args: str, timeout_s: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avfr.cli", *args], capture_output=True, text=True,
                          timeout=timeout_s)


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
