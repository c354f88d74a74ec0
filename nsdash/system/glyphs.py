"""Output for a terminal whose locale is not UTF-8: nsdash's non-ASCII glyphs in ASCII.

The verbs draw trees and marks with a few characters outside ASCII (cgls' and status'
"├─", "└─", "│", systemctl's "●", "…" where a field is cut, "→").  Where standard output
cannot encode them (LANG=C without Python's UTF-8 mode, PYTHONIOENCODING=ascii, a Latin-1
locale) each write of them was a UnicodeEncodeError, a traceback for `nsdash cgls`.
systemd's special_glyph() draws the same shapes in ASCII there; `use_on(stream)` makes a
text stream do so, and spell anything else it cannot encode as a backslash escape.
"""

from __future__ import annotations

import codecs

# systemd's ASCII spellings (special_glyph(), glyph-util.c) where it has them
ASCII = {
    "├": "|", "└": "`", "│": "|", "─": "-",
    "●": "*", "…": "...", "→": "->", "←": "<-", "↑": "^", "↓": "v", "✓": "+", "✗": "x",
}
ERRORS = "nsdash-ascii"


def _fallback(e: UnicodeError) -> tuple[str, int]:
    if not isinstance(e, UnicodeEncodeError):
        raise e
    text = e.object[e.start:e.end]
    return "".join(ASCII.get(c) or c.encode("ascii", "backslashreplace").decode("ascii") for c in text), e.end


def use_on(stream: object) -> None:
    """STREAM (sys.stdout, sys.stderr) writes what its encoding lacks as ASCII, not an error."""
    try:
        codecs.lookup_error(ERRORS)
    except LookupError:
        codecs.register_error(ERRORS, _fallback)
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors=ERRORS)


def utf8(stream: object) -> bool:
    """Whether STREAM encodes as UTF-8 (or has no encoding of its own to fail with)."""
    encoding = getattr(stream, "encoding", None)
    return encoding is None or codecs.lookup(encoding).name == "utf-8"
