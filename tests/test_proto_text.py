"""`printable_text`: peer-supplied strings reach the terminal and the logs without escape sequences."""

from __future__ import annotations

import pytest

from avfr.proto import MAX_ERROR_TEXT_CHARS, printable_text


def test_printable_text_is_kept():
    text = "UNKNOWN_MODEL: model 'avfr-x' (this receiver holds: avfr-small) — héllo 日本 🙂"
    assert printable_text(text) == text


@pytest.mark.parametrize("raw, shown", [
    ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),  # clear screen, colour
    ("a\r\nb\tc\x00\x7f\x9b", "a\\x0d\\x0ab\\x09c\\x00\\x7f\\x9b"),  # CR LF TAB NUL DEL C1-CSI
    ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),  # OSC: set the window title
    ("abc\u202edef\u200b", "abc\\u202edef\\u200b"),  # bidi override, zero-width space
    ("\U000e0041\ud800", "\\U000e0041\\ud800"),  # tag character, lone surrogate
    ("back\\x1b", "back\\\\x1b"),  # a literal backslash cannot fake an escape
])
def test_control_and_format_characters_are_escaped(raw, shown):
    out = printable_text(raw)
    assert out == shown
    assert out.isprintable()


def test_length_is_bounded_and_escapes_are_not_cut():
    assert len(printable_text("a" * 10_000)) == MAX_ERROR_TEXT_CHARS
    assert printable_text("a" * 10_000).endswith("...")
    out = printable_text("\x1b" * 100, max_chars=30)
    assert len(out) <= 30 and out.endswith("...") and out[:-3] == "\\x1b" * 6
    assert printable_text("x" * 30, max_chars=30) == "x" * 30  # exactly at the limit: unchanged


def test_bytes_and_other_objects():
    assert printable_text(b"\x1b[31mhi\xff\n") == "\\x1b[31mhi\ufffd\\x0a"
    assert printable_text(12) == "12"
    with pytest.raises(ValueError):
        printable_text("x", max_chars=2)
