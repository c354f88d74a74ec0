"""systemd's booleans (parse_boolean), alone: cgls and cgtop take --xattr, --recursive...

Kept apart from launcher/validate (which re-exports it) so the read-only verbs
import one small module, not the launcher's validators.
"""

from __future__ import annotations

from nsdash.errors import UsageError

_TRUE = frozenset({"1", "yes", "y", "true", "t", "on"})
_FALSE = frozenset({"0", "no", "n", "false", "f", "off"})


def parse_boolean(value: str, option: str) -> bool:
    """systemd's parse_boolean(): 1/yes/y/true/t/on and 0/no/n/false/f/off, any case."""
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise UsageError(f"invalid {option} value {value!r}", "use yes or no (or true/false, on/off, 1/0)")
