"""`JitterBuffer`: the packets of an incoming stream on the media clock, and when each frame is due.

Media is indexed on the media clock: keypoint frame n has seq ``seq0 + n`` and ts ``ts0 + 3600 n``; audio
packet a has ts ``ts0 + 1800 a`` (mod 2**16 and 2**32: both wrap); (seq0, ts0) come from the stream's start
anchor (the first KEY packet, which the sender also sends on the reliable channel). A packet's index is the
one nearest the packet the buffer expects next (extended seq / ts, as RTP receivers do): frame
``next_frame + seq_diff(seq, seq of next_frame)``, audio packet ``a + ts_diff(ts, ts of a) / 1800`` with a the
next audio packet, so indexes grow without limit and a call may outlast both wraps (the seq wraps every
65536 frames, 43 min 41 s at 25 fps). Frame n is due when its keypoint packet is there or
declared lost; its audio (up to the end of its mel window and of its own 40 ms, `needed_samples`) is then
taken in packet order, each packet there or declared lost. A packet is declared lost when packets
`reorder_frames` frames (`reorder_audio_packets` packets) newer arrived, when the end anchor arrived, or,
with `realtime=True`, when its playout deadline passed and a packet sent after it (later on the media clock,
either stream) arrived: the deadline is ``base + media time + delay``, where base is the earliest arrival
relative to media time and the delay adapts to the measured interarrival jitter (RFC 3550 estimate) and to
late packets: ``clip(min_delay + 3 jitter + late, min_delay, max_delay)``, where each late packet adds 20 ms
to ``late`` and every decided frame takes 0.5 ms off again. When nothing newer arrived the sender has not
got that far (it runs late, or the stream ends): playout waits instead of concealing media that is still
coming, so the receiver never decides frames the sender did not send, and never drops speech that comes
late as a whole. Without `realtime` the decisions depend only on the order in which messages arrive, so a
recorded call decodes offline to the same frames.

In realtime mode one packet cannot move the timeline far: a packet whose transit is more than `max_delay_ms`
below the base (it came that much earlier, relative to its media time, than any before: a forged or corrupted
seq / ts far ahead) is buffered but held as a suspect: it moves neither the base nor the "newer media arrived"
marks (nor the jitter estimate) until `CONFIRM_PACKETS` held packets of distinct media positions agree on that
transit (within half the threshold), as they do when a real queue drains or a sender jumps ahead. Moving the
base by more than `max_delay_ms` at once would make every packet in flight late; legitimate drops come in
steps of one packet (20-40 ms) as a backlog drains, and are confirmed by the next few packets. A held
packet is used normally if its frame comes due, and a packet for the same slot that is not suspect replaces it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np

from avfr.codec.data import SAMPLE_RATE, SAMPLES_PER_FRAME, window_bounds
from avfr.codec.runtime import OPUS_FRAME_SAMPLES
from avfr.proto import (
    TS_STEP_AUDIO_90K,
    Audio,
    ErrorCode,
    KeypointsDelta,
    KeypointsKey,
    ProtocolError,
    Session,
    seq_diff,
)
from avfr.receiver.config import DecoderConfig, DecoderStats

__all__ = ["LATE_STEP_S", "LATE_DECAY_S", "CONFIRM_PACKETS", "AudioGap", "DueFrame",
           "JitterBuffer", "needed_samples", "ts_diff"]

U32 = 1 << 32
LATE_STEP_S = 0.02  # realtime playout delay added per late packet
LATE_DECAY_S = 0.0005  # ... and taken off per frame decided (20 ms back in 1.6 s)
CONFIRM_PACKETS = 3  # held packets (distinct media positions) with a similar transit that move the timeline
MAX_HELD = 32  # suspect packets remembered (the oldest are forgotten; they stay buffered)


def ts_diff(a: int, b: int) -> int:
    """a - b of two uint32 timestamps, in [-2**31, 2**31)."""
    return ((a - b + (1 << 31)) % U32) - (1 << 31)


def needed_samples(n: int, causal: bool) -> int:
    """Samples (16 kHz, from the stream start) that frame n needs: its mel window and its own 40 ms."""
    stop = window_bounds(n, causal)[1]
    return max(stop, SAMPLES_PER_FRAME * (n + 1))


class AudioGap(Enum):
    """What `JitterBuffer.next_audio` gives in place of a packet."""

    WAIT = "wait"  # not there and not lost yet: decide later
    LOST = "lost"  # declared lost: conceal it
    PAST_END = "past_end"  # after the stream's last audio packet: silence


@dataclass(frozen=True)
class DueFrame:
    """The next frame, which can be decided now.

    Attributes:
        index: frame number from the stream start.
        have_kp: its keypoint packet is buffered (False: declared lost).
        need_samples: its audio must reach this sample of the timeline (`needed_samples`).
        ended: the stream ended: missing audio is declared lost (past its last packet: silence) at once.
        late: its playout deadline passed: missing audio that newer media overtook is declared lost.
    """

    index: int
    have_kp: bool
    need_samples: int
    ended: bool
    late: bool = False


class JitterBuffer:
    """Keypoint and audio packets of one stream, by index on the media clock, until their frame is decided.

    Counts the packets it refuses (`dropped_late`, `duplicates`) and the frames decided without keypoints (`lost`,
    moved to `late_frames` when their packet comes after all) into `stats`, and keeps `stats.jitter_ms`
    and `stats.delay_ms` up to date.

    Args:
        config: receiver settings (reorder depths, max_buffer_frames, realtime, delay bounds).
        stats: the decoder's counters.
    """

    def __init__(self, config: DecoderConfig, stats: DecoderStats) -> None:
        self._config = config
        self._stats = stats
        self.anchor: tuple[int, int] | None = None  # seq0, ts0 of the start anchor
        self._session: Session | None = None
        self.end_index: int | None = None  # the stream's last frame, once known
        self.next_frame = 0  # the frame to decide next
        self._kp_buf: dict[int, KeypointsKey | KeypointsDelta] = {}
        self._kp_high = -1
        self._audio_buf: dict[int, bytes] = {}
        self._audio_high = -1
        self._audio_next = 0
        self._media_high = -1  # start (16 kHz samples) of the latest packet on the media clock, either stream
        self._base_s: float | None = None
        self._prev_transit: float | None = None
        self._jitter_s = 0.0
        self._late_delay_s = 0.0  # added after late packets, decays while none come late (realtime)
        self._lost_kp: set[int] = set()  # frames decided without keypoints, recent ones (`lost`)
        self._held: dict[tuple[bool, int], float] = {}  # (is_audio, index) -> transit of suspect packets

    # --- stream start and end ----------------------------------------------------------------------

    def start(self, seq0: int, ts0_90k: int, session: Session) -> None:
        """The start anchor arrived: frame 0 has seq `seq0` and ts `ts0_90k` (90 kHz)."""
        self.anchor = (seq0, ts0_90k)
        self._session = session

    def end_at(self, seq: int) -> bool:
        """The end anchor (the last frame's KEY packet, seq `seq`) arrived; True: that frame is still open.

        Raises:
            ProtocolError: it is before the start or too far ahead.
        """
        index = self._frame_index(seq)
        if index < 0 or index > self.next_frame + self._config.max_buffer_frames:
            raise ProtocolError(f"end anchor at frame {index} is out of range", ErrorCode.UNEXPECTED_MESSAGE)
        self.end_index = max(index, self.next_frame - 1)  # realtime playout may already be past it
        return index >= self.next_frame

    def close(self) -> None:
        """The call ended: no frame after those buffered or decided is coming."""
        if self.end_index is None:
            self.end_index = max(self._kp_high, self.next_frame - 1)

    @property
    def ended(self) -> bool:
        """True once every frame up to the end anchor was decided."""
        return self.end_index is not None and self.next_frame > self.end_index

    def ts_90k(self, n: int) -> int:
        """Media timestamp (uint32, 90 kHz) of frame n."""
        return (self.anchor[1] + n * self._session.ts_step_90k) % U32

    def _frame_index(self, seq: int) -> int:
        """Frame index of a keypoint seq: the one nearest `next_frame` (the extended seq; unbounded)."""
        n = self.next_frame
        return n + seq_diff(seq, (self.anchor[0] + n) & 0xFFFF)

    def expected_seq(self) -> int:
        """uint16 seq a DELTA's 7 seq bits are extended next to (`avfr.proto.extend_seq`).

        The frame after the newest media that arrived (keypoints, or audio on the same clock, which carries
        its whole ts), or the next frame to decide if that is later (a call that resumes after a silence).
        """
        n = max(self.next_frame, self._kp_high + 1, self._media_high // SAMPLES_PER_FRAME)
        return (self.anchor[0] + n) & 0xFFFF

    def _audio_index(self, ts_90k: int) -> int:
        """Audio packet index of a ts: the one nearest the next audio packet (the extended ts; unbounded).

        Raises:
            ProtocolError: the ts is off the 20 ms grid.
        """
        a = self._audio_next
        offset = ts_diff(ts_90k, (self.anchor[1] + a * TS_STEP_AUDIO_90K) % U32)
        if offset % TS_STEP_AUDIO_90K:
            raise ProtocolError(f"audio ts {ts_90k} is off the 20 ms grid")
        return a + offset // TS_STEP_AUDIO_90K

    # --- packets in ----------------------------------------------------------------------------------

    def put_keypoints(self, packet: KeypointsKey | KeypointsDelta, now_s: float) -> int | None:
        """Buffer a keypoint packet that arrived at `now_s` (s); returns its frame index.

        Returns None for a late packet, a duplicate or the end anchor's copy of a frame already decided.

        Raises:
            ProtocolError: more than `max_buffer_frames` ahead.
        """
        index = self._frame_index(packet.seq)
        if index < self.next_frame:
            if index >= 0 and self.end_index is not None and index == self.end_index:
                return None  # the end anchor's copy of a frame already shown
            self._late()
            if index in self._lost_kp:  # it was not lost but late: count it so
                self._lost_kp.discard(index)
                self._stats.lost -= 1
                self._stats.late_frames += 1
            return None
        if index > self.next_frame + self._config.max_buffer_frames:
            raise ProtocolError(f"keypoint packet {index} frames ahead is refused")
        if index in self._kp_buf and not self._replaces_held((False, index), now_s, index / self._session.fps):
            self._stats.duplicates += 1
            return None
        self._kp_buf[index] = packet
        if self._admit((False, index), now_s, index / self._session.fps):
            self._mark((False, index))
        return index

    def put_audio(self, audio: Audio, now_s: float) -> bool:
        """Buffer an audio packet that arrived at `now_s` (s); False: late or a duplicate.

        Raises:
            ProtocolError: its ts is off the 20 ms grid or too far ahead.
        """
        index = self._audio_index(audio.ts_90k)
        if index < self._audio_next:
            self._late()
            return False
        if index > self._audio_next + 5 * self._config.max_buffer_frames:
            raise ProtocolError(f"audio packet {index} is too far ahead")
        media_s = index * OPUS_FRAME_SAMPLES / SAMPLE_RATE
        if index in self._audio_buf and not self._replaces_held((True, index), now_s, media_s):
            self._stats.duplicates += 1
            return False
        self._audio_buf[index] = audio.payload
        if self._admit((True, index), now_s, media_s):
            self._mark((True, index))
        return True

    def _mark(self, key: tuple[bool, int]) -> None:
        """Raise the "newer media arrived" marks to a trusted packet (is_audio, index)."""
        is_audio, index = key
        if is_audio:
            self._audio_high = max(self._audio_high, index)
            self._media_high = max(self._media_high, index * OPUS_FRAME_SAMPLES)
        else:
            self._kp_high = max(self._kp_high, index)
            self._media_high = max(self._media_high, index * SAMPLES_PER_FRAME)

    def _suspect(self, now_s: float, media_s: float) -> bool:
        """Realtime: a packet that came more than max_delay earlier (for its media time) than any before."""
        if not self._config.realtime or self._base_s is None or not math.isfinite(now_s):
            return False
        return now_s - media_s < self._base_s - self._config.max_delay_ms / 1000

    def _replaces_held(self, key: tuple[bool, int], now_s: float, media_s: float) -> bool:
        """A packet for the slot of a held (suspect) one that is not suspect itself takes its place."""
        if key not in self._held or self._suspect(now_s, media_s):
            return False
        del self._held[key]
        self._stats.duplicates += 1
        return True

    def _admit(self, key: tuple[bool, int], now_s: float, media_s: float) -> bool:
        """Take a buffered packet's arrival into the timeline; False: held as a suspect (see module doc)."""
        if not self._suspect(now_s, media_s):
            self._arrival(now_s, media_s)
            return True
        transit = now_s - media_s
        self._held[key] = transit
        if len(self._held) > MAX_HELD:
            del self._held[next(iter(self._held))]
        tolerance = self._config.max_delay_ms / 2000
        agree = [k for k, t in self._held.items() if abs(t - transit) <= tolerance]
        if len(agree) < CONFIRM_PACKETS:
            return False
        self._base_s = min(self._held[k] for k in agree)  # confirmed: the timeline moved
        threshold = self._base_s - self._config.max_delay_ms / 1000
        for k in [k for k, t in self._held.items() if t >= threshold]:
            del self._held[k]
            if k != key:
                self._mark(k)
        self._arrival(now_s, media_s)
        return True

    def _late(self) -> None:
        """A packet missed its playout: count it and, in realtime mode, play out later from now on."""
        self._stats.dropped_late += 1
        if self._config.realtime:
            self._late_delay_s = min(self._late_delay_s + LATE_STEP_S, self._config.max_delay_ms / 1000)
            self._stats.delay_ms = 1000 * self.delay_s

    def _arrival(self, now_s: float, media_s: float) -> None:
        """Update the playout base and the interarrival jitter (RFC 3550)."""
        if not math.isfinite(now_s):
            return
        transit = now_s - media_s
        if self._base_s is None or transit < self._base_s:
            self._base_s = transit
        if self._prev_transit is not None:
            self._jitter_s += (abs(transit - self._prev_transit) - self._jitter_s) / 16.0
        self._prev_transit = transit
        self._stats.jitter_ms = 1000 * self._jitter_s
        self._stats.delay_ms = 1000 * self.delay_s

    # --- playout -------------------------------------------------------------------------------------

    @property
    def delay_s(self) -> float:
        """Current adaptive playout delay (realtime mode)."""
        c = self._config
        return float(np.clip(c.min_delay_ms / 1000 + 3.0 * self._jitter_s + self._late_delay_s,
                             c.min_delay_ms / 1000, c.max_delay_ms / 1000))

    def _deadline_passed(self, need_samples: int, now_s: float) -> bool:
        if now_s == math.inf:
            return True
        if not self._config.realtime or self._base_s is None:
            return False
        return now_s >= self._base_s + need_samples / SAMPLE_RATE + 0.02 + self.delay_s

    def due(self, now_s: float) -> DueFrame | None:
        """The next frame if it can be decided at `now_s` (s; math.inf: the call ended), else None."""
        n = self.next_frame
        if self.end_index is not None and n > self.end_index:
            return None
        need = needed_samples(n, self._session.causal_window)
        late = self._deadline_passed(need, now_s)
        ended = self.end_index is not None
        have_kp = n in self._kp_buf
        lost = not have_kp and (self._kp_high >= n + self._config.reorder_frames or ended
                                or (late and self._overtaken(n * SAMPLES_PER_FRAME)))
        if not (have_kp or lost):
            return None
        return DueFrame(n, have_kp, need, ended, late)

    def _overtaken(self, start_sample: int) -> bool:
        """A packet that starts later on the media clock (16 kHz samples) than `start_sample` arrived."""
        return self._media_high > start_sample

    def next_audio(self, ended: bool, late: bool = False) -> bytes | AudioGap:
        """The next audio packet's payload in packet order, or why there is none (WAIT: ask again later).

        Args:
            ended: the stream ended: a missing packet is lost, or past the end (`DueFrame.ended`).
            late: its deadline passed: a missing packet that newer media overtook is lost (`DueFrame.late`).
        """
        a = self._audio_next
        if a in self._audio_buf:
            out = self._audio_buf.pop(a)
        elif ended:
            out = AudioGap.LOST if a <= self._audio_high else AudioGap.PAST_END
        elif self._audio_high >= a + self._config.reorder_audio_packets or (
                late and self._overtaken(a * OPUS_FRAME_SAMPLES)):
            out = AudioGap.LOST
        else:
            return AudioGap.WAIT
        self._audio_next += 1
        return out

    def lost(self, n: int) -> None:
        """Frame n is decided without its keypoint packet: count it lost until (unless) that packet comes late."""
        self._stats.lost += 1
        self._lost_kp.add(n)

    def pop_keypoints(self, n: int) -> KeypointsKey | KeypointsDelta:
        """Frame n's keypoint packet (`DueFrame.have_kp`), out of the buffer."""
        return self._kp_buf.pop(n)

    def decided(self, n: int) -> None:
        """Frame n was decided: drop what is left of it and before, and let the late delay decay."""
        for stale in [i for i in self._kp_buf if i <= n]:
            del self._kp_buf[stale]
        if len(self._lost_kp) > self._config.max_buffer_frames:  # bounded: a packet this old is lost for good
            self._lost_kp = {i for i in self._lost_kp if i > n - self._config.max_buffer_frames}
        self.next_frame = n + 1
        if self._held:
            self._held = {k: t for k, t in self._held.items() if k[1] >= (self._audio_next if k[0] else n + 1)}
        self._late_delay_s = max(0.0, self._late_delay_s - LATE_DECAY_S)
