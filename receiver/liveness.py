"""`Liveness`: when a receiver gives up on a sender that stopped, and `CallTimeoutError`, the error it raises.

The jitter buffer waits for a late sender on purpose (it declares media lost only once newer media arrived),
so without these clocks a dead sender would leave the call open forever:

- silence: no message at all on either channel for `DecoderConfig.silence_timeout_s` while the call is up
  (from the first data channel or message on, until the stream ended or the call closed);
- no source image: none complete `DecoderConfig.source_timeout_s` after the Hello arrived, or none at all
  when the call closed (no frame can be drawn without one).

Both use the clock of `Decoder.receive`'s ``now_s`` (time.monotonic by default). A value <= 0 turns one off.
"""

from __future__ import annotations

import math

from avfr.receiver.config import DecoderConfig

__all__ = ["CallTimeoutError", "Liveness"]


class CallTimeoutError(TimeoutError):
    """The sender stopped: no source image in time, or no message at all for too long (the call is over)."""


class Liveness:
    """The two clocks of one incoming call.

    Args:
        config: `silence_timeout_s` and `source_timeout_s`.
    """

    def __init__(self, config: DecoderConfig) -> None:
        self._config = config
        self._last_s: float | None = None  # the latest message (or the call coming up)
        self._hello_s: float | None = None

    def up(self, now_s: float) -> None:
        """The call is up (a data channel opened): the silence clock starts, if no message started it."""
        if self._last_s is None and math.isfinite(now_s):
            self._last_s = now_s

    def message(self, now_s: float) -> None:
        """Any message arrived on either channel (valid or not)."""
        if math.isfinite(now_s):
            self._last_s = now_s if self._last_s is None else max(self._last_s, now_s)

    def hello(self, now_s: float) -> None:
        """The Hello was accepted: the source image clock starts."""
        if math.isfinite(now_s):
            self._hello_s = now_s

    def check(self, now_s: float, *, has_source: bool, closed: bool, over: bool) -> None:
        """Raise `CallTimeoutError` when the sender stopped.

        Args:
            now_s: the time now.
            has_source: a source image arrived.
            closed: the call closed (`Decoder.finish`).
            over: the stream ended (every frame decided) or the call was refused: nothing more is awaited.
        """
        c = self._config
        if over:
            return
        if self._hello_s is not None and not has_source:
            if closed:
                raise CallTimeoutError("the call ended before the sender sent a source image")
            if c.source_timeout_s > 0 and now_s - self._hello_s >= c.source_timeout_s:
                raise CallTimeoutError(f"no source image within {c.source_timeout_s:g} s of the Hello: the sender "
                                       "never sent one (source timeout)")
        if closed or self._last_s is None or c.silence_timeout_s <= 0:
            return
        if now_s - self._last_s >= c.silence_timeout_s:
            raise CallTimeoutError(f"the sender fell silent: no message for {now_s - self._last_s:.1f} s "
                                   f"(silence timeout {c.silence_timeout_s:g} s)")
