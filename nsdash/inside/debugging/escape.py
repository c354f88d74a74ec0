"""One escape for everything the tracers print about a guest (until nsdash.system.text lands)."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def escape(text: str) -> str:
    """Control characters (C0 but tab, DEL, C1) as \\xNN: nothing the guest wrote reaches a terminal raw."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
