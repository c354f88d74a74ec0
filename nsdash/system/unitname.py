"""systemd unit names: escaping both ways, slices and their cgroup paths, a machine's scope.

One place for these facts (systemd.unit(5), "String Escaping"): a machine's
scope is `machine-ESCAPED.scope`, where '-' and every character outside
[A-Za-z0-9:_.] (and a leading '.') becomes `\\xNN`, as machined names it; a
slice `a-b.slice` lives at cgroup `/a.slice/a-b.slice`.
"""

from __future__ import annotations

DEFAULT_SLICE = "machine.slice"
UNIT_NAME_MAX = 255
# The characters of an unescaped unit name (a set, not a pattern: re is off the spawn path)
_VALID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789:_.\\-")


def escape(name: str) -> str:
    r"""systemd's unit-name escaping of one string: 'my-box' -> 'my\x2dbox'."""
    out = []
    for i, ch in enumerate(name):
        if ch == "/":
            out.append("-")
        elif (ch.isascii() and ch.isalnum()) or ch in ":_" or (ch == "." and i > 0):
            out.append(ch)
        else:
            out.append("".join(f"\\x{b:02x}" for b in ch.encode()))
    return "".join(out)


def unescape(name: str) -> str:
    r"""systemd's unit_name_unescape(): '\xNN' back to its byte, 'my\x2dbox' -> 'my-box'
    ('-' is kept: unit_name_to_path's '-' -> '/' applies to path units, not to names)."""
    data = bytearray()
    i = 0
    while i < len(name):
        if name.startswith("\\x", i) and i + 4 <= len(name):
            try:
                data.append(int(name[i + 2:i + 4], 16))
                i += 4
                continue
            except ValueError:
                pass
        data += name[i].encode()
        i += 1
    return data.decode(errors="replace")


UNIT_PATH = "/org/freedesktop/systemd1/unit"  # where systemd serves its units on the bus


def bus_path(unit: str) -> str:
    """UNIT's object path on systemd's bus, as sd_bus_path_encode() makes it (what GetUnit
    answers): every byte but [A-Za-z] (and [0-9] after the first) as _xx in lower-case hex,
    so 'machine-web.scope' is .../unit/machine_2dweb_2escope."""
    out = []
    for i, byte in enumerate(unit.encode()):
        ch = chr(byte)
        if (ch.isascii() and ch.isalpha()) or (i > 0 and ch in "0123456789"):
            out.append(ch)
        else:
            out.append(f"_{byte:02x}")
    return f"{UNIT_PATH}/{''.join(out) or '_'}"


def machine_scope(machine: str) -> str:
    """The scope unit of a machine, as systemd-machined names it."""
    return f"machine-{escape(machine)}.scope"


def supervisor_service(machine: str) -> str:
    """The transient service a detached supervisor runs in on a host booted with systemd:
    an instance named after the machine, as systemd-nspawn@NAME.service is for nspawn."""
    return f"nsdash@{escape(machine)}.service"


def is_valid_slice(name: str) -> bool:
    """A slice name systemd accepts: NAME.slice, '-' separating parents ('a-b.slice' is
    inside 'a.slice'), so it may not lead, trail or double; '-.slice' is the root."""
    if not name.endswith(".slice") or len(name) > UNIT_NAME_MAX:
        return False
    prefix = name[:-len(".slice")]
    if prefix == "-":
        return True
    return (bool(prefix) and _VALID_CHARS.issuperset(prefix) and not prefix.startswith("-")
            and not prefix.endswith("-") and "--" not in prefix)


def slice_path(slice_name: str) -> str:
    """The cgroup path of a slice: 'a-b.slice' -> '/a.slice/a-b.slice'; '-.slice' -> ''."""
    prefix = slice_name[:-len(".slice")]
    if prefix == "-":
        return ""
    parts = prefix.split("-")
    return "".join("/" + "-".join(parts[:i + 1]) + ".slice" for i in range(len(parts)))
