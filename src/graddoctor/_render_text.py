"""Untrusted text (module names, file contents) made inert before a terminal shows it.

Terminal escape sequences (ANSI CSI, OSC such as hyperlinks or window titles) are removed
whole, other control characters and bidirectional overrides become ``?``; the result is
wrapped in a rich ``Text``, so ``[`` in a name is never read as markup.
"""

from __future__ import annotations

import re

_ESCAPE_SEQUENCES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor movement
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: titles, hyperlinks, clipboard
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]?"  # any other escape
    r"|\x9b[0-?]*[ -/]*[@-~]|\x9d[^\x07\x9c]*[\x07\x9c]?"  # 8-bit CSI and OSC
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = re.compile(r"[\t\n]")


def inert(text: object, newlines: bool = False) -> str:
    """``str(text)`` without escape sequences; control characters as ``?``.

    Args:
        text: anything; untrusted.
        newlines: keep line breaks and tabs (else they become spaces).
    """
    text = _CONTROLS.sub("?", _ESCAPE_SEQUENCES.sub("", str(text)))
    return text if newlines else _LINE_BREAKS.sub(" ", text)


def inert_text(text: object, style: str = "", newlines: bool = False):
    """A rich ``Text`` of :func:`inert` ``text`` (never parsed as markup)."""
    from rich.text import Text

    return Text(inert(text, newlines), style=style)
