"""Machine names and the unit names built from them: the one rule, both ways.

A machine name is a hostname (systemd's hostname_is_valid(), which
systemd-nspawn -M, machinectl and systemd-machined all apply): dot-separated
labels of ASCII letters, digits and '-', no label empty or starting or ending
with '-', at most 64 characters.  So `my_box`, `a..b` and `x-` are refused by
every nsdash route (spawn, start, the dashboard's form, the registry).

A machine's scope is `machine.slice/machine-ESCAPED.scope` with ESCAPED made
by systemd's unit_name_escape() (nsdash.system.unitname; so `web-1` lives in
`machine-web\\x2d1.scope`, exactly where systemd-machined would put it);
machine_from_unit() and machine_from_scope() read it back.  Standard library only: the launcher's
hot path imports this.
"""

from __future__ import annotations

from nsdash.errors import UsageError
from nsdash.system import unitname

HOST_NAME_MAX = 64
SLICE = unitname.DEFAULT_SLICE
SCOPE_PREFIX = "machine-"
SCOPE_SUFFIX = ".scope"
NAME_HINT = "use letters, digits, '-' and '.' (a hostname of at most 64 characters, no '_')"


def is_valid_hostname(name: str) -> bool:
    """systemd's hostname_is_valid(name, 0): dot-separated labels of ASCII
    letters, digits and '-' (RFC 5890's LDH), no label starting or ending with
    '-', no empty label, no trailing dot, at most 64 characters."""
    if not name or len(name) > HOST_NAME_MAX:
        return False
    for label in name.split("."):
        if not label or label.startswith("-") or label.endswith("-"):
            return False
        if not all(c.isascii() and (c.isalnum() or c == "-") for c in label):
            return False
    return True


def printable(text: object) -> str:
    """TEXT with control characters escaped (the one sanitiser, system.text), so an error
    about a user's value stays one harmless line.  Imported only when needed: the spawn
    path never pays for it with printable input."""
    s = str(text)
    if s.isprintable():
        return s
    from nsdash.system.text import escape

    return escape(s)


def check_machine_name(name: str, what: str = "machine name") -> str:
    """NAME if it is a valid machine name (the one rule), else UsageError naming WHAT."""
    if not is_valid_hostname(name):
        # quoted, not repr()'d: repr would double the backslashes printable() escaped with
        raise UsageError(f"invalid {what} '{printable(name)}'", NAME_HINT)
    return name


def hostname_cleanup(name: str) -> str:
    """systemd's hostname_cleanup(): drop characters a hostname cannot hold,
    leading/doubled dots and hyphens after dots, a trailing '-' or '.', and
    anything past 64 characters.  nspawn applies it to a directory name before
    using it as the machine name."""
    out: list[str] = []
    dot, hyphen = True, True
    for c in name:
        if len(out) >= HOST_NAME_MAX:
            break
        if c == ".":
            if dot or hyphen:
                continue
            out.append(c)
            dot, hyphen = True, False
        elif c == "-":
            if dot:
                continue
            out.append(c)
            dot, hyphen = False, True
        elif c.isascii() and c.isalnum():
            out.append(c)
            dot, hyphen = False, False
    if out and out[-1] in "-.":
        out.pop()
    return "".join(out)


# ------------------------------------------------------------------ unit names
# systemd's escaping itself lives in nsdash.system.unitname; these apply it to machines.

def scope_name(machine: str) -> str:
    """'web-1' -> 'machine-web\\x2d1.scope' (systemd-machined's unit for the machine)."""
    return unitname.machine_scope(machine)


def scope_path(machine: str, slice_name: str | None = None) -> str:
    """The machine's cgroup path, relative to each hierarchy's root (in SLICE_NAME, default machine.slice)."""
    return f"{unitname.slice_path(slice_name or SLICE)}/{scope_name(machine)}"


def machine_from_unit(unit: str) -> str | None:
    """'machine-web\\x2d1.scope' -> 'web-1'; None for any other unit name."""
    if not (unit.startswith(SCOPE_PREFIX) and unit.endswith(SCOPE_SUFFIX)) or \
            len(unit) <= len(SCOPE_PREFIX) + len(SCOPE_SUFFIX):
        return None
    return unitname.unescape(unit[len(SCOPE_PREFIX):-len(SCOPE_SUFFIX)])


def machine_from_scope(path: str) -> str | None:
    """'/machine.slice/machine-foo.scope/...' -> 'foo' (the scope and everything below it).
    A machine put in another slice with --slice is known by the cgroup its state records."""
    parts = path.split("/")
    for i, part in enumerate(parts[:-1]):
        if part == SLICE:
            name = machine_from_unit(parts[i + 1])
            if name is not None:
                return name
    return None
