"""Pure validators for systemd-nspawn-style option values.

Each parse_* function returns the normalised value or raises UsageError with
one line naming the problem and the fix.  The rules follow systemd's own
(hostname_is_valid, id128 parsing, signal_from_string, capability_from_name,
extract_first_word's backslash escapes) so values accepted by systemd-nspawn
are accepted here and vice versa.
"""

from __future__ import annotations

import os

from nsdash.errors import UsageError
from nsdash.launcher.booleans import parse_boolean  # noqa: F401  (re-exported: it lives apart for cgls)
from nsdash.launcher.names import (  # noqa: F401  (re-exported: the one rule lives there)
    HOST_NAME_MAX,
    check_machine_name,
    hostname_cleanup,
    is_valid_hostname,
    printable,
)

TYPE_CHECKING = False  # mypy reads this as True; typing stays off the spawn path
if TYPE_CHECKING:
    from collections.abc import Mapping

    from nsdash.launcher.modes import Ownership

# capability number -> name, as in linux/capability.h (0 .. CAP_LAST_CAP).
CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
_CAP_BY_NAME = {name: name for name in CAPABILITIES}



def parse_machine_name(name: str, option: str = "--machine") -> str:
    """The one machine-name rule (nsdash.launcher.names), with OPTION in the error."""
    return check_machine_name(name, f"{option} name")


def parse_uuid(value: str, option: str = "--uuid") -> str:
    """An id128 as 32 hex digits or in 8-4-4-4-12 form; returned as 32 lowercase hex digits."""
    v = value.strip()
    hexdigits = v.replace("-", "") if len(v) == 36 else v
    dashed_ok = len(v) != 36 or all(v[i] == "-" for i in (8, 13, 18, 23))
    if not dashed_ok or len(hexdigits) != 32 or not all(c in "0123456789abcdefABCDEF" for c in hexdigits):
        raise UsageError(f"invalid {option} {value!r}",
                         "give 32 hex digits, or a UUID like 01234567-89ab-cdef-0123-456789abcdef")
    if int(hexdigits, 16) == 0:
        raise UsageError(f"{option} may not be all zeroes", "give a random UUID (e.g. from uuidgen)")
    return hexdigits.lower()


def parse_signal(value: str, option: str = "--kill-signal") -> int:
    """systemd's signal_from_string(): SIGTERM, TERM, RTMIN+3, SIGRTMAX-1 or a
    number; names are case-sensitive there, so 'sigterm' is refused here too."""
    import signal  # here: it brings enum, and most users of this module never parse a signal

    hint = "use a signal name like SIGTERM or SIGRTMIN+3, or its number"
    name = value[3:] if value.startswith("SIG") else value
    number: int | None = None
    if name.isascii() and name.isdigit():
        number = int(name)
    elif name.startswith(("RTMIN", "RTMAX")):
        base = int(signal.SIGRTMIN if name.startswith("RTMIN") else signal.SIGRTMAX)
        rest = name[5:]
        offset = 0
        if rest:
            sign, digits = rest[0], rest[1:]
            if sign not in "+-" or not (digits.isascii() and digits.isdigit()):
                raise UsageError(f"invalid {option} {value!r}", hint)
            offset = int(digits) if sign == "+" else -int(digits)
        number = base + offset
        if not signal.SIGRTMIN <= number <= signal.SIGRTMAX:
            raise UsageError(f"invalid {option} {value!r}: outside SIGRTMIN..SIGRTMAX", hint)
    elif name.isascii() and name.isalnum() and name.isupper():
        member = signal.Signals.__members__.get("SIG" + name)
        number = int(member) if member is not None else None
    if number is None or not 1 <= number <= int(signal.SIGRTMAX):
        raise UsageError(f"invalid {option} {value!r}", hint)
    return number


def parse_capabilities(value: str, option: str) -> frozenset[str]:
    """A comma-separated list of capability names (CAP_SYS_ADMIN, cap_sys_admin, or a number), or 'all'."""
    names: set[str] = set()
    # empty items are skipped, as systemd's extract_first_word() does; an empty list is an error
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise UsageError(f"invalid {option} {value!r}: empty capability name",
                         f"use {option}=CAP_NAME[,CAP_NAME...] or {option}=all")
    for item in items:
        if item.lower() == "all":
            names.update(CAPABILITIES)
            continue
        name = _CAP_BY_NAME.get(item.upper())
        if name is None and item.isascii() and item.isdigit() and int(item) < len(CAPABILITIES):
            name = CAPABILITIES[int(item)]
        if name is None:
            raise UsageError(f"unknown capability {item!r} in {option}",
                             "use names like CAP_NET_ADMIN (see capabilities(7)) or 'all'")
        names.add(name)
    return frozenset(names)


def split_escaped(value: str, sep: str = ":") -> list[str]:
    """Split VALUE at unescaped SEP; a backslash escapes the next character
    (so '\\:' is a literal colon), as systemd's extract_first_word() does."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(value)
    for c in chars:
        if c == "\\":
            nxt = next(chars, None)
            if nxt is None:
                raise UsageError(f"{value!r} ends in a lone backslash", "escape a colon as '\\:' and a backslash as '\\\\'")
            current.append(nxt)
        elif c == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
    parts.append("".join(current))
    return parts


def is_absolute_path(path: str) -> bool:
    return path.startswith("/") and "\0" not in path


def normalize_path(path: str) -> str:
    """Collapse '//' and '/./' (not '..': a target may not climb out; checked elsewhere)."""
    return os.path.normpath(path) if not path.startswith("//") else os.path.normpath("/" + path.lstrip("/"))


def is_host_root(path: str | os.PathLike[str], host_root: str = "/") -> bool:
    """True if PATH is the host's root directory however spelled: `//`, `/./`, `/usr/..`,
    a symlink to /, or a bind mount of it (the same directory, not the same string)."""
    try:
        a, b = os.stat(path), os.stat(host_root)
    except OSError:
        return os.path.normpath(os.fspath(path)) in ("/", "//")
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def is_valid_env_name(name: str) -> bool:
    """systemd's env_name_is_valid(): letters, digits and '_', not starting with a digit."""
    return bool(name) and not name[0].isdigit() and all(c.isascii() and (c.isalnum() or c == "_") for c in name)


def parse_setenv(value: str, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """-E NAME=VALUE, or NAME alone to pass on the caller's value."""
    name, eq, val = value.partition("=")
    if not is_valid_env_name(name):
        raise UsageError(f"invalid --setenv {value!r}: {name!r} is not a variable name",
                         "use --setenv=NAME=VALUE with NAME made of letters, digits and '_'")
    if "\0" in val:
        raise UsageError(f"invalid --setenv {name!r}: the value contains a NUL byte", "remove it")
    if not eq:
        # NAME alone passes the caller's value on; systemd-nspawn 252 sets it
        # empty when the caller has none (checked by hand)
        env = os.environ if environ is None else environ
        return name, env.get(name, "")
    return name, val


def parse_user(value: str) -> str:
    """-u USER: a user name or a numeric UID; resolved later against the tree's /etc/passwd."""
    if (not value or not value.isascii() or not value.isprintable() or any(c in value for c in ":/ ")
            or value.startswith("-") or len(value) > 256):
        raise UsageError(f"invalid --user {value!r}", "give a user name or UID that exists in the container")
    if value.isdigit() and (int(value) >= 0xFFFFFFFF or int(value) == 0xFFFF):
        # systemd's uid_is_valid(): 32 bits, less the two "no user" values ((uid_t)-1, 16-bit -1);
        # past them PID 1 failed in setgid(2) with Python's "gid is less than minimum"
        raise UsageError(f"invalid --user {value!r}: not a valid UID",
                         "give a UID from 0 to 4294967294 other than 65535, or a user name")
    return value


def parse_choice(value: str, choices: tuple[str, ...], option: str) -> str:
    if value not in choices:
        raise UsageError(f"invalid {option} value {value!r}", f"use one of: {', '.join(choices)}")
    return value


def parse_syscall_filter(value: str, option: str) -> tuple[bool, tuple[str, ...]]:
    """--system-call-filter=LIST: (negative, names).  Space-separated call names
    and @groups; a leading '~' makes the list a deny-list."""
    from nsdash.launcher import syscall_groups  # only when the option is given

    negative = value.startswith("~")
    names = tuple(value[1:].split() if negative else value.split())
    if not names:
        raise UsageError(f"invalid {option} {printable(value)!r}: no system call named",
                         f"use {option}='NAME @GROUP ...' or {option}='~NAME ...'")
    for name in names:
        why = syscall_groups.check_name(name)
        if why:
            raise UsageError(f"invalid {option}: {printable(name)!r} is {why}",
                             "use call names from syscalls(2) or groups like @mount "
                             "(systemd-analyze syscall-filter lists them)")
    return negative, names


def parse_private_users(value: str) -> str:
    """--private-users= / PrivateUsers=, checked by the userns module; the string is kept."""
    from nsdash.launcher import userns

    try:
        userns.parse_private_users(value)
    except UsageError as e:
        raise UsageError(printable(e.message), e.hint) from None
    return value


def parse_private_users_ownership(value: str) -> Ownership:
    from nsdash.launcher import userns

    try:
        return userns.parse_ownership(value)
    except UsageError as e:
        raise UsageError(printable(e.message), e.hint) from None
