"""Keep native libraries' start-up chatter off the terminal (``avfr-codec`` without ``-v``).

mediapipe's C++ graphs log through absl straight to file descriptor 2, from their own threads, whenever a
graph is created or first runs (``W0000 ... inference_feedback_manager.cc:114] ...``, ``WARNING: All log
messages before absl::InitializeLog() ...``), and TFLite adds ``INFO: Created TensorFlow Lite XNNPACK
delegate for CPU.``. No environment variable reaches absl's logging (GLOG_minloglevel and
TF_CPP_MIN_LOG_LEVEL change nothing), so the CLI points fd 2 at a pipe for the length of a command and drops
those lines there, forwarding everything else unchanged; Python's own ``sys.stderr`` (errors, the live stats
line) writes straight to the original stream. Only the CLI uses this: the library sets no global state.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import re
import select
import sys
import threading
from collections.abc import Iterator

__all__ = ["NOISE", "quiet_native_logs"]

# absl/glog info and warning lines ("I0000 00:00:1796418997.555279   27613 file.cc:114] ..."), absl's notice
# that it is not initialised, and TFLite's INFO lines. Native errors (E..., F...) still come through.
NOISE = re.compile(rb"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\] "
                   rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
                   rb"|INFO: (?:Created TensorFlow Lite|Initialized TensorFlow Lite))")
_PARTIAL_FLUSH_S = 0.2  # a line without its newline yet is forwarded after this long (progress output)


def _pump(read_fd: int, write_fd: int) -> None:
    """Copy read_fd to write_fd line by line without the NOISE lines, until EOF; closes both. When write_fd
    fails (the reader went away) it keeps draining read_fd, so writers to fd 2 never block on a full pipe."""
    pending = b""
    broken = False

    def forward(data: bytes) -> None:
        nonlocal broken
        while data and not broken:
            try:
                data = data[os.write(write_fd, data):]
            except OSError:
                broken = True

    try:
        while True:
            ready, _, _ = select.select([read_fd], [], [], _PARTIAL_FLUSH_S)
            if not ready:
                if pending:
                    forward(pending)
                    pending = b""
                continue
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            forward(b"".join(line + b"\n" for line in lines if not NOISE.match(line)))
        if pending and not NOISE.match(pending):
            forward(pending)
    finally:
        os.close(read_fd)
        os.close(write_fd)


@contextlib.contextmanager
def quiet_native_logs(enabled: bool = True) -> Iterator[None]:
    """While the block runs, drop native NOISE lines written to fd 2; Python's stderr is unaffected.

    Does nothing when not `enabled`, or when ``sys.stderr`` is not the process's own stderr (e.g. under
    pytest's capture), so in-process callers see exactly what they saw before.
    """
    try:
        own = enabled and os.name == "posix" and sys.stderr is sys.__stderr__ and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        own = False
    if not own:
        yield
        return
    original = sys.stderr
    original.flush()
    terminal = os.dup(2)  # where stderr really goes; stays open for the handlers that keep the wrapper below
    read_fd, write_fd = os.pipe()
    pump = threading.Thread(target=_pump, args=(read_fd, os.dup(terminal)), name="avfr-stderr", daemon=True)
    pump.start()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    sys.stderr = open(terminal, "w", buffering=1, encoding=original.encoding,  # left open: logging keeps it
                      errors=original.errors, closefd=False)
    crash_report = faulthandler.is_enabled()
    if crash_report:  # a crash kills the pump: report it straight to the terminal
        faulthandler.enable(file=sys.stderr)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(terminal, 2)  # the pipe's last write end in this process closes: the pump sees EOF
        pump.join(timeout=1.0)
        sys.stderr = original
        if crash_report:
            faulthandler.enable(file=original)
