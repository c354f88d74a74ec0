"""A systemd scope's limits as its unit files say them: no D-Bus round trip.

systemd writes what a transient unit was made with to /run/systemd/transient/UNIT and
what `set-property` changes to drop-ins under /run/systemd/system.control/UNIT.d/
(/etc/systemd/system.control/ without --runtime).  Those files are the host's (root-only,
written by the host's systemd), and they are what systemd itself loads the unit from on a
daemon-reload, so the limits it holds follow from them by its own rules: the unit file,
then every drop-in by file name (a higher-priority directory's file hides a lower one's of
the same name), the later assignment wins and an empty one resets to the default.

Where a value does not follow exactly, `scope_limits` answers None and the caller asks
systemd over D-Bus (limits.unit_limits):
- CPUQuota= set: systemd writes the quota rounded down (whole percents before v255,
  hundredths of a percent since) while it holds the microseconds it was given;
- a percentage (MemoryMax=50%, TasksMax=10%): systemd scales it by the physical memory or
  the kernel's task limit as it sees them;
- TasksMax= never set or reset: the manager's DefaultTasksMax= applies;
- a fraction of a size (1.5G), 0 (systemd ignores it), anything else it may parse otherwise,
  a line continued with a backslash or a file too big or unreadable.
"""

from __future__ import annotations

import os
import stat

from nsdash.launcher import properties as props

# The system manager's unit directories, highest priority first (systemd.unit(5), "Unit File Load Path").
UNIT_DIRS = ("/etc/systemd/system.control", "/run/systemd/system.control", "/run/systemd/transient",
             "/run/systemd/generator.early", "/etc/systemd/system", "/etc/systemd/system.attached",
             "/run/systemd/system", "/run/systemd/system.attached", "/run/systemd/generator",
             "/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system",
             "/run/systemd/generator.late")
TRANSIENT = "/run/systemd/transient"
LIMIT = 256 * 1024  # a transient scope's file is a few hundred bytes; more is not systemd's
_SUFFIX = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50, "E": 1 << 60}


class Inexact(Exception):
    """The files do not say the value exactly: ask systemd."""


def read_bounded(path: str) -> str | None:
    """PATH's text, None where it does not exist; '' for a drop-in masked with /dev/null.  Never
    blocks (a FIFO is refused) and never reads more than LIMIT (Inexact beyond)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise Inexact(f"{path}: {e.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISCHR(mode) and os.path.realpath(path) == "/dev/null":
            return ""
        if not stat.S_ISREG(mode):
            raise Inexact(f"{path}: not a regular file")
        data = os.read(fd, LIMIT + 1)
    finally:
        os.close(fd)
    if len(data) > LIMIT:
        raise Inexact(f"{path}: larger than {LIMIT} bytes")
    return data.decode("utf-8", "replace")


def assignments(text: str, section: str) -> list[tuple[str, str]]:
    """(key, value) of each assignment in SECTION of a unit file's TEXT, in order."""
    out: list[tuple[str, str]] = []
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            raise Inexact("a continued line")  # never in what systemd writes
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            continue
        key, eq, value = line.partition("=")
        if eq and current == section:
            out.append((key.strip(), value.strip()))
    return out


def dropin_dirs(unit: str) -> list[str]:
    """UNIT's drop-in directory names, most specific first: machine-a-b.scope.d, then the
    dash prefixes' machine-a-.scope.d, machine-.scope.d, then the type's scope.d."""
    stem, dot, suffix = unit.rpartition(".")
    names = [unit + ".d"]
    cut = stem.rfind("-")
    while cut > 0:
        stem = stem[:cut]
        names.append(f"{stem}-.{suffix}.d")
        cut = stem.rfind("-")
    names.append(f"{suffix}.d")
    return names


def dropins(unit: str) -> list[str]:
    """UNIT's drop-in files (*.conf) in the order systemd applies them: by file name, the
    first directory (by priority, then specific before general) holding a name owning it."""
    chosen: dict[str, str] = {}
    for base in UNIT_DIRS:
        for name in dropin_dirs(unit):
            d = f"{base}/{name}"
            try:
                entries = os.listdir(d)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as e:
                raise Inexact(f"{d}: {e.strerror}") from None
            for entry in entries:
                if entry.endswith(".conf"):
                    chosen.setdefault(entry, f"{d}/{entry}")
    return [chosen[k] for k in sorted(chosen)]


def _bytes(value: str) -> int:
    """A size systemd holds exactly as written: N with an optional K, M, ... (base 1024)."""
    if value in ("", "infinity"):
        return props.UINT64_MAX
    digits, unit = (value[:-1], value[-1]) if value[-1:].isalpha() else (value, "")
    if not digits.isdigit() or not digits.isascii() or unit not in _SUFFIX:
        raise Inexact(f"size {value!r}")
    n = int(digits) * _SUFFIX[unit]
    if not 0 < n < props.UINT64_MAX:
        raise Inexact(f"size {value!r} out of range")
    return n


def _tasks(value: str) -> int:
    if value == "infinity":
        return props.UINT64_MAX
    if not value.isdigit() or not value.isascii() or not 0 < int(value) < props.UINT64_MAX:
        raise Inexact(f"TasksMax={value!r}")  # '' is the manager's DefaultTasksMax=, N% a share
    return int(value)


def limits_of(texts: list[str], section: str = "Scope") -> dict[str, str]:
    """The limits (as limits.unit_limits gives them) that unit file texts, the unit file
    first then its drop-ins in order, set; Inexact where systemd's value does not follow."""
    values: dict[str, str] = {}
    for text in texts:
        for key, value in assignments(text, section):
            if key in ("CPUQuota", "MemoryMax", "MemoryHigh", "TasksMax"):
                values[key] = value
    out: dict[str, str] = {}
    if values.get("CPUQuota"):
        raise Inexact("CPUQuota= is written rounded")
    for name in ("MemoryMax", "MemoryHigh"):
        n = _bytes(values.get(name, ""))
        if n != props.UINT64_MAX:
            out[name] = str(n)
    if "TasksMax" not in values:
        raise Inexact("TasksMax= unset: the manager's default")
    n = _tasks(values["TasksMax"])
    if n != props.UINT64_MAX:
        out["TasksMax"] = str(n)
    return out


def scope_limits(unit: str) -> dict[str, str] | None:
    """UNIT's (a transient scope's) limits from its files, or None where only systemd knows them
    exactly (or the unit has no transient file)."""
    try:
        main = read_bounded(f"{TRANSIENT}/{unit}")
        if main is None:
            return None
        texts = [main]
        for path in dropins(unit):
            text = read_bounded(path)
            texts.append(text or "")
        return limits_of(texts)
    except Inexact:
        return None
