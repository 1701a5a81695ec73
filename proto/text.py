"""`printable_text`: a peer-supplied string made safe to log or print (no escape sequences, bounded length)."""

from __future__ import annotations

__all__ = ["DEFAULT_PRINTABLE_CHARS", "printable_text"]

DEFAULT_PRINTABLE_CHARS = 200  # = MAX_ERROR_TEXT_CHARS: an Error's text fits unchanged when it is printable
_ELLIPSIS = "..."


def _escape(char: str) -> str:
    """One character as it may reach a terminal: itself when printable, else a Python-style escape."""
    if char == "\\":
        return "\\\\"  # so that an escape in the output always stands for an escaped character
    if char.isprintable():  # False for Cc (C0, DEL, C1), Cf (bidi overrides, ZWJ), Cs, Co, Cn, Zl, Zp, Zs but " "
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable_text(text: object, max_chars: int = DEFAULT_PRINTABLE_CHARS) -> str:
    """A peer's string (an Error text, a data-channel label, a signaling line) as safe terminal / log text.

    Printable characters (ASCII and Unicode letters, digits, punctuation, symbols, the plain space) stay as
    they are; everything else (control characters such as ESC, CR, LF, TAB, DEL and C1, bidi overrides and
    other format characters, unassigned, private-use and surrogate code points, other spaces) and the
    backslash itself become Python-style escapes (``\\x1b``, ``\\u202e``, ``\\\\``). Whatever the input's
    length, only its first characters are looked at.

    Args:
        text: a str; bytes are read as UTF-8 (invalid bytes become U+FFFD), anything else through ``str``.
        max_chars: longest result, >= 8; a longer one is cut at a character boundary and ends with "...".

    Returns:
        A str of at most `max_chars` characters, every one printable.

    Raises:
        ValueError: max_chars < 8.
    """
    if max_chars < 8:
        raise ValueError(f"max_chars must be >= 8, got {max_chars}")
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text[: 4 * (max_chars + 1)]).decode("utf-8", "replace")
    elif not isinstance(text, str):
        text = str(text)
    pieces: list[str] = []
    used = 0
    for char in text[: max_chars + 1]:  # each input character gives >= 1 output character
        piece = _escape(char)
        pieces.append(piece)
        used += len(piece)
        if used > max_chars:
            break
    else:
        return "".join(pieces)
    # too long: keep whole escapes that fit in front of the ellipsis
    kept: list[str] = []
    used = 0
    for piece in pieces:
        if used + len(piece) > max_chars - len(_ELLIPSIS):
            break
        kept.append(piece)
        used += len(piece)
    return "".join(kept) + _ELLIPSIS
