"""Adaptive binary arithmetic coder used by keypoint delta packets (SPEC.md, "Entropy coder").

A 32-bit integer arithmetic coder with bit-wise renormalisation (E1/E2/E3 scaling) over binary decisions
("bins"). Each context holds P(bin = 0) as a 16-bit integer that adapts after every bin; contexts start from
a fixed table at every packet, so each packet decodes on its own. The stream ends with a single 1 bit and
zero padding to the byte; the decoder reads zeros past the end and checks this termination exactly, so
every bin sequence has exactly one valid encoding: trailing bytes are refused, and a truncated payload is
refused or decodes to other values. Pure Python: about a microsecond per bin.
"""

from __future__ import annotations

from avfr.proto.errors import ProtocolError

__all__ = ["PROB_ONE", "BinEncoder", "BinDecoder"]

PROB_BITS = 16
PROB_ONE = 1 << PROB_BITS  # probabilities are P(bin = 0) * 2**16
PROB_HALF = PROB_ONE >> 1  # bypass bins: fixed 1/2, no adaptation
PROB_MIN = 32
PROB_MAX = PROB_ONE - 32
ADAPT_SHIFT = 4  # p += (target - p) >> 4 after each bin
MAX_EG_PREFIX = 20  # Exp-Golomb prefixes longer than this are malformed (values < 2**21 - 1)

_TOP = 0xFFFFFFFF
_HALF = 0x80000000
_QUARTER = 0x40000000
_THREE_QUARTERS = 0xC0000000


class BinEncoder:
    """Encodes bins into bytes; `finish()` returns the canonical payload."""

    __slots__ = ("_low", "_high", "_pending", "_bits")

    def __init__(self) -> None:
        self._low = 0
        self._high = _TOP
        self._pending = 0
        self._bits: list[int] = []

    def put(self, bit: int, probs: list[int], ctx: int) -> None:
        """Encode `bit` (0/1) with adaptive context `probs[ctx]` and update it."""
        p0 = probs[ctx]
        low, high = self._low, self._high
        split = low + (((high - low + 1) * p0) >> PROB_BITS)
        if bit:
            low = split
            p0 -= p0 >> ADAPT_SHIFT
            probs[ctx] = p0 if p0 > PROB_MIN else PROB_MIN
        else:
            high = split - 1
            p0 += (PROB_ONE - p0) >> ADAPT_SHIFT
            probs[ctx] = p0 if p0 < PROB_MAX else PROB_MAX
        self._renorm(low, high)

    def put_bypass(self, bit: int) -> None:
        """Encode `bit` with probability 1/2 (no context)."""
        low, high = self._low, self._high
        split = low + ((high - low + 1) >> 1)
        if bit:
            low = split
        else:
            high = split - 1
        self._renorm(low, high)

    def _renorm(self, low: int, high: int) -> None:
        bits = self._bits
        pending = self._pending
        while True:
            if high < _HALF:
                bits.append(0)
                if pending:
                    bits.extend([1] * pending)
                    pending = 0
            elif low >= _HALF:
                bits.append(1)
                if pending:
                    bits.extend([0] * pending)
                    pending = 0
                low -= _HALF
                high -= _HALF
            elif low >= _QUARTER and high < _THREE_QUARTERS:
                pending += 1
                low -= _QUARTER
                high -= _QUARTER
            else:
                break
            low <<= 1
            high = (high << 1) | 1
        self._low, self._high, self._pending = low, high, pending

    def put_ueg(self, value: int, probs: list[int], ctx0: int, nctx: int) -> None:
        """Unsigned Exp-Golomb (order 0) of `value` >= 0: adaptive prefix bins, bypass suffix bits.

        Prefix bin i (a 1 for "more", a 0 to stop) uses context ``ctx0 + min(i, nctx - 1)``.
        """
        v1 = value + 1
        n = v1.bit_length() - 1
        if n > MAX_EG_PREFIX:
            raise ValueError(f"value {value} too large for the Exp-Golomb binarisation")
        last = nctx - 1
        for i in range(n):
            self.put(1, probs, ctx0 + (i if i < last else last))
        self.put(0, probs, ctx0 + (n if n < last else last))
        for i in range(n - 1, -1, -1):
            self.put_bypass((v1 >> i) & 1)

    def put_signed(self, value: int, probs: list[int], ctx_zero: int, ctx_sign: int, ctx_mag: int,
                   nmag: int) -> None:
        """Signed value: zero flag (1 = nonzero), sign (1 = negative), then UEG of |value| - 1."""
        if value == 0:
            self.put(0, probs, ctx_zero)
            return
        self.put(1, probs, ctx_zero)
        self.put(1 if value < 0 else 0, probs, ctx_sign)
        self.put_ueg(abs(value) - 1, probs, ctx_mag, nmag)

    def finish(self) -> bytes:
        """Terminate (one 1 bit, then zero padding) and return the payload; the encoder is then spent."""
        bits = self._bits
        bits.append(1)  # selects the point HALF, always inside [low, high] after renormalisation
        # the pending bits would be 0s: trailing zeros are implicit, the decoder pads with zeros
        bits.extend([0] * (-len(bits) % 8))
        out = bytearray(len(bits) // 8)
        for i in range(len(out)):
            byte = 0
            for b in bits[8 * i : 8 * i + 8]:
                byte = (byte << 1) | b
            out[i] = byte
        return bytes(out)


class BinDecoder:
    """Decodes bins from a payload made by `BinEncoder`; call `finish()` to check the termination."""

    __slots__ = ("_data", "_nbits", "_pos", "_low", "_high", "_value", "_pending", "_shifts", "_what")

    def __init__(self, data: bytes, what: str = "entropy-coded payload") -> None:
        self._data = bytes(data)
        self._nbits = 8 * len(self._data)
        self._what = what
        value = 0
        for i in range(4):
            value = (value << 8) | (self._data[i] if i < len(self._data) else 0)
        self._value = value
        self._pos = 32
        self._low = 0
        self._high = _TOP
        self._pending = 0
        self._shifts = 0

    def get(self, probs: list[int], ctx: int) -> int:
        """Decode one bin with adaptive context `probs[ctx]` and update it."""
        p0 = probs[ctx]
        low, high = self._low, self._high
        split = low + (((high - low + 1) * p0) >> PROB_BITS)
        if self._value >= split:
            bit = 1
            low = split
            p0 -= p0 >> ADAPT_SHIFT
            probs[ctx] = p0 if p0 > PROB_MIN else PROB_MIN
        else:
            bit = 0
            high = split - 1
            p0 += (PROB_ONE - p0) >> ADAPT_SHIFT
            probs[ctx] = p0 if p0 < PROB_MAX else PROB_MAX
        self._renorm(low, high)
        return bit

    def get_bypass(self) -> int:
        """Decode one bin of probability 1/2."""
        low, high = self._low, self._high
        split = low + ((high - low + 1) >> 1)
        if self._value >= split:
            bit = 1
            low = split
        else:
            bit = 0
            high = split - 1
        self._renorm(low, high)
        return bit

    def _renorm(self, low: int, high: int) -> None:
        value = self._value
        pending = self._pending
        shifts = self._shifts
        pos = self._pos
        data = self._data
        nbits = self._nbits
        while True:
            if high < _HALF:
                pending = 0
            elif low >= _HALF:
                pending = 0
                low -= _HALF
                high -= _HALF
                value -= _HALF
            elif low >= _QUARTER and high < _THREE_QUARTERS:
                pending += 1
                low -= _QUARTER
                high -= _QUARTER
                value -= _QUARTER
            else:
                break
            low <<= 1
            high = (high << 1) | 1
            bit = (data[pos >> 3] >> (7 - (pos & 7))) & 1 if pos < nbits else 0
            value = (value << 1) | bit
            pos += 1
            shifts += 1
        self._low, self._high, self._value = low, high, value
        self._pending, self._shifts, self._pos = pending, shifts, pos

    def get_ueg(self, probs: list[int], ctx0: int, nctx: int) -> int:
        """Inverse of `BinEncoder.put_ueg`; raises ProtocolError on a prefix longer than MAX_EG_PREFIX."""
        last = nctx - 1
        n = 0
        while self.get(probs, ctx0 + (n if n < last else last)):
            n += 1
            if n > MAX_EG_PREFIX:
                raise ProtocolError(f"{self._what}: Exp-Golomb prefix longer than {MAX_EG_PREFIX} bins")
        v1 = 1
        for _ in range(n):
            v1 = (v1 << 1) | self.get_bypass()
        return v1 - 1

    def get_signed(self, probs: list[int], ctx_zero: int, ctx_sign: int, ctx_mag: int, nmag: int) -> int:
        """Inverse of `BinEncoder.put_signed`."""
        if not self.get(probs, ctx_zero):
            return 0
        negative = self.get(probs, ctx_sign)
        magnitude = self.get_ueg(probs, ctx_mag, nmag) + 1
        return -magnitude if negative else magnitude

    def finish(self) -> None:
        """Check the payload ends exactly with the canonical termination (a 1 bit, then zero padding).

        Raises:
            ProtocolError: the payload is truncated, carries trailing bytes, or ends in other bits.
        """
        t = self._shifts - self._pending  # bit position of the terminating 1
        expected = t // 8 + 1
        if len(self._data) != expected:
            raise ProtocolError(f"{self._what} is {len(self._data)} bytes, its bins end in byte {expected}")
        last = self._data[t >> 3]
        shift = 7 - (t & 7)
        if not (last >> shift) & 1 or last & ((1 << shift) - 1):
            raise ProtocolError(f"{self._what} does not end with its termination bit and zero padding")
