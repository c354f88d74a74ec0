"""Parsers for the option table's values (nsdash.launcher.optable) that are not plain validators.

Each takes (value, option) where OPTION is how the user spelled the setting
('--rlimit' or 'LimitNOFILE='), and returns the value to store or raises
UsageError with one line naming the problem and the fix.  The rules follow
systemd-nspawn 252's own parsers so the same values are accepted.
"""

from __future__ import annotations

import os

from nsdash.errors import UsageError
from nsdash.launcher import validate as v
from nsdash.launcher.spec import Credential, TmpfsMount

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# setrlimit(2)'s resources by nspawn's names (RLIMIT_ prefix dropped), in the kernel's order.
RLIMITS = ("CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS", "LOCKS",
           "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME")
_BYTE_LIMITS = frozenset({"FSIZE", "DATA", "STACK", "CORE", "RSS", "MEMLOCK", "AS", "MSGQUEUE"})
RLIM_INFINITY = -1  # stored for "infinity"; the child passes resource.RLIM_INFINITY
CREDENTIAL_SIZE_MAX = 1024 * 1024  # systemd's CREDENTIAL_SIZE_MAX
CPU_SET_MAX = 8192


def nonempty(value: str, option: str, syntax: str) -> str:
    if not value.strip():
        raise UsageError(f"empty {option} value", f"use {option}={syntax}")
    return value


def parse_absolute(value: str, option: str) -> str:
    if not v.is_absolute_path(value):
        raise UsageError(f"invalid {option} {value!r}: not an absolute path", f"use {option}=/PATH")
    return v.normalize_path(value)


def words(value: str, option: str) -> list[str]:
    """A .nspawn list value: shell-like words (Parameters=, Environment=)."""
    import shlex  # only when a file has Parameters= or Environment=: shlex costs a few ms

    try:
        return shlex.split(value)
    except ValueError as e:
        raise UsageError(f"invalid {option} value {value!r}: {e}", "fix the quoting") from None


def environment(value: str, option: str) -> list[tuple[str, str]]:
    out = []
    for word in words(value, option):
        if "=" not in word:
            raise UsageError(f"invalid {option.rstrip('=')}= assignment {word!r}", "use Environment=NAME=VALUE")
        out.append(v.parse_setenv(word))
    return out


def syscall_filter(value: str, option: str) -> dict[str, tuple[str, ...]]:
    """--system-call-filter adds to the allow- or deny-list; store with UPDATE through add_syscalls."""
    negative, names = v.parse_syscall_filter(value, option)
    return {"syscall_deny" if negative else "syscall_allow": names}


def capability_list() -> list[str]:
    """--capability=help: the names nspawn prints (lower case, as capability_to_name gives)."""
    return [c.lower() for c in v.CAPABILITIES]


def parse_volatile(value: str, option: str) -> dict[str, Any]:
    """--volatile / Volatile=: no, yes (a tmpfs root with the tree's /usr read-only), state
    (the tree read-only with a tmpfs /var) or overlay (nsdash's -x: an overlay root whose
    changes are discarded at exit).  Stored with UPDATE (overlay sets `ephemeral`)."""
    lower = value.strip().lower()
    if lower == "overlay":
        return {"ephemeral": True, "volatile": "no"}
    if lower == "state":
        return {"volatile": "state"}
    try:
        return {"volatile": "yes" if v.parse_boolean(value, option) else "no"}
    except UsageError:
        raise UsageError(f"invalid {option} value {v.printable(value)!r}", "use no, yes, state or overlay") from None


def parse_pivot_root(value: str, option: str) -> tuple[str, ...] | None:
    """--pivot-root=NEW[:OLD] / PivotRoot=: absolute paths inside the tree; empty resets."""
    if not value:
        return None
    parts = value.split(":")
    if len(parts) > 2 or not all(v.is_absolute_path(p) for p in parts):
        raise UsageError(f"invalid {option} {v.printable(value)!r}",
                         f"use {option.rstrip('=')}=/NEW[:/OLD] (absolute paths inside the tree)")
    return tuple(v.normalize_path(p) for p in parts)


def bind_spec(value: str, read_only: bool, option: str) -> tuple[str, bool, str]:
    """--bind/--bind-ro and Bind=/BindReadOnly=: kept raw until the tree is known
    (+SRC is resolved inside it); options.parse_bind checks them then."""
    if not value:
        raise UsageError(f"empty {option} value" if option.endswith("=") else f"invalid {option} '': empty source",
                         f"use {option.rstrip('=')}=SRC[:DST[:OPTIONS]]")
    return value, read_only, option


def overlay_spec(value: str, read_only: bool, option: str) -> tuple[str, bool, str]:
    """--overlay/--overlay-ro and Overlay=/OverlayReadOnly=: kept raw until the tree is
    known (+PATH is inside it); options.parse_overlay checks them then."""
    if len(v.split_escaped(value)) < 2:
        raise UsageError(f"invalid {option} {v.printable(value)!r}: at least two paths are needed",
                         f"use {option.rstrip('=')}=LOWER[:LOWER...]:UPPER:DEST or SOURCE:DEST")
    return value, read_only, option


def parse_tmpfs(value: str, option: str = "--tmpfs") -> TmpfsMount:
    """PATH[:OPTIONS], mode=0755 unless OPTIONS say otherwise; OPTIONS are mount(8)'s
    (flags and tmpfs data, split by nsdash.launcher.mountopts when mounted)."""
    path, _, opts = value.partition(":") if "\\" not in value else _first_and_rest(value)
    if not path:
        raise UsageError(f"invalid {option} {value!r}: empty path", f"use {option}=PATH[:OPTIONS]")
    if not v.is_absolute_path(path):
        raise UsageError(f"invalid {option} {value!r}: {path!r} is not an absolute path",
                         f"use {option}=/PATH[:OPTIONS]")
    if "\0" in opts:
        raise UsageError(f"invalid {option} {value!r}: NUL in options", f"use {option}=PATH[:OPTIONS]")
    return TmpfsMount(target=v.normalize_path(path), options=opts or "mode=0755")


def _first_and_rest(value: str) -> tuple[str, str, str]:
    parts = v.split_escaped(value)
    if len(parts) == 1:
        return parts[0], "", ""
    # the options part keeps its own colons (mount options never contain escapes)
    first = parts[0]
    rest = value[value.index(":", _escaped_len(value, first)) + 1:]
    return first, ":", rest


def _escaped_len(value: str, first: str) -> int:
    """How many characters of VALUE spell FIRST with its backslash escapes."""
    i = n = 0
    while n < len(first):
        i += 2 if value[i] == "\\" else 1
        n += 1
    return i


# ------------------------------------------------------------------ resources

def _rlimit_name(name: str, option: str) -> str:
    upper = name.strip().upper()
    upper = upper[len("RLIMIT_"):] if upper.startswith("RLIMIT_") else upper
    if upper not in RLIMITS:
        raise UsageError(f"unknown resource limit {name!r} in {option}",
                         f"use one of {', '.join(RLIMITS)} (with or without RLIMIT_)")
    return upper


def _rlimit_value(name: str, text: str, option: str) -> int:
    t = text.strip()
    if t == "infinity":
        return RLIM_INFINITY
    if name == "NICE" and t[:1] in "+-" and t[1:].isdigit():
        # a nice level (-20..19), as systemd's rlimit_parse_nice takes it: RLIMIT_NICE is 20 - nice
        nice = int(t)
        if not -20 <= nice <= 19:
            raise UsageError(f"invalid {option} nice level {t!r}", "use -20..19, or a raw limit 0..40")
        return 20 - nice
    multiplier = 1
    if name in _BYTE_LIMITS and t[-1:].upper() in "KMGT" and t[-1:]:
        multiplier = 1024 ** ("KMGT".index(t[-1].upper()) + 1)
        t = t[:-1]
    if name == "CPU" and t.endswith("s"):
        t = t[:-1]  # seconds
    if not (t.isascii() and t.isdigit()) or int(t) * multiplier >= 2 ** 63:
        raise UsageError(f"invalid {option} value {text!r} for {name}",
                         "use a number (with K, M, G or T for sizes), or 'infinity'")
    return int(t) * multiplier


def _rlimit_pair(name: str, text: str, option: str) -> tuple[int, int]:
    soft_text, colon, hard_text = text.partition(":")
    soft = _rlimit_value(name, soft_text, option)
    hard = _rlimit_value(name, hard_text, option) if colon else soft
    if hard != RLIM_INFINITY and (soft == RLIM_INFINITY or soft > hard):
        raise UsageError(f"invalid {option} {name}={text}: the soft limit is above the hard limit",
                         "use SOFT:HARD with SOFT <= HARD")
    return soft, hard


def parse_rlimit_option(value: str, option: str) -> dict[str, tuple[int, int]]:
    """--rlimit=NAME=SOFT[:HARD] (NAME as RLIMIT_NOFILE or NOFILE)."""
    name, eq, limits = value.partition("=")
    if not eq or not limits.strip():
        raise UsageError(f"invalid {option} {v.printable(value)!r}", f"use {option}=NOFILE=1024[:4096]")
    key = _rlimit_name(name, option)
    return {key: _rlimit_pair(key, limits, option)}


def parse_rlimit_key(value: str, option: str) -> dict[str, tuple[int, int]]:
    """LimitNOFILE=SOFT[:HARD] in a .nspawn file (the key names the resource)."""
    key = _rlimit_name(option[len("Limit"):].rstrip("="), option)
    return {key: _rlimit_pair(key, value, option)}


def parse_oom_score_adjust(value: str, option: str) -> int:
    t = value.strip()
    body = t[1:] if t[:1] in "+-" else t
    if not (body.isascii() and body.isdigit()) or not -1000 <= int(t) <= 1000:
        raise UsageError(f"invalid {option} value {v.printable(value)!r}", "use an integer in -1000..1000")
    return int(t)


def parse_cpu_set(value: str, option: str) -> tuple[int, ...] | None:
    """'0,2-3' (commas or spaces between items) -> (0, 2, 3); empty -> None (no affinity)."""
    cpus: set[int] = set()
    for item in value.replace(",", " ").split():
        lo, dash, hi = item.partition("-")
        if not (lo.isascii() and lo.isdigit()) or (dash and not (hi.isascii() and hi.isdigit())):
            raise UsageError(f"invalid {option} item {v.printable(item)!r}", "use CPU numbers and ranges like 0,2-3")
        first, last = int(lo), int(hi) if dash else int(lo)
        if first > last or last >= CPU_SET_MAX:
            raise UsageError(f"invalid {option} range {item!r}", f"use ranges FIRST-LAST below {CPU_SET_MAX}")
        cpus.update(range(first, last + 1))
    return tuple(sorted(cpus)) if cpus else None


def parse_personality(value: str, option: str) -> str:
    """x86 or x86-64, as nspawn takes them; only where the host can run both."""
    choice = v.parse_choice(value, ("x86", "x86-64"), option)
    if os.uname().machine not in ("x86_64", "i686", "i386"):
        raise UsageError(f"{option}={value} is not available on {os.uname().machine}",
                         "leave --personality out (it only switches between x86 and x86-64)")
    return choice


# ------------------------------------------------------------------ credentials

_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "s": 32,
                   "\\": 92, '"': 34, "'": 39}


def cunescape(text: str, option: str) -> bytes:
    r"""systemd's cunescape(): C escapes (\n, \t, \xNN, \NNN octal, \uXXXX) to bytes."""
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        nxt = text[i + 1:i + 2]
        if nxt in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[nxt])
            i += 2
        elif nxt == "x" and _is_hex(text[i + 2:i + 4], 2):
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        elif nxt in ("u", "U") and _is_hex(text[i + 2:i + 2 + (4 if nxt == "u" else 8)], 4 if nxt == "u" else 8):
            n = 4 if nxt == "u" else 8
            out += chr(int(text[i + 2:i + 2 + n], 16)).encode()
            i += 2 + n
        elif nxt[:1] in "01234567" and nxt and len(text[i + 1:i + 4]) == 3 and all(
                d in "01234567" for d in text[i + 1:i + 4]) and int(text[i + 1:i + 4], 8) < 256:
            out.append(int(text[i + 1:i + 4], 8))
            i += 4
        else:
            raise UsageError(f"invalid escape {v.printable(text[i:i + 2])!r} in {option}",
                             "use C escapes such as \\n, \\t, \\\\ or \\x00")
    return bytes(out)


def _is_hex(s: str, n: int) -> bool:
    return len(s) == n and all(c in "0123456789abcdefABCDEF" for c in s)


def _credential_id(value: str, option: str) -> tuple[str, str]:
    ident, colon, rest = value.partition(":")
    syntax = f"use {option}=ID:{'VALUE' if option.startswith('--set') else 'PATH'}"
    if not colon:
        raise UsageError(f"invalid {option} {v.printable(value)!r}: no ':' after the ID", syntax)
    if not ident or ident in (".", "..") or "/" in ident or len(ident) > 255 or not ident.isprintable():
        raise UsageError(f"invalid {option} credential ID {v.printable(ident)!r}",
                         "an ID is a file name: no '/', not empty, '.' or '..'")
    return ident, rest


def parse_set_credential(value: str, option: str) -> Credential:
    ident, data = _credential_id(value, option)
    raw = cunescape(data, option)
    if len(raw) > CREDENTIAL_SIZE_MAX:
        raise UsageError(f"{option} {ident}: the value is larger than 1 MiB", "pass a smaller credential")
    return Credential(ident, raw)


def parse_load_credential(value: str, option: str) -> Credential:
    """ID:PATH read now, as nspawn does; a relative PATH is looked up in $CREDENTIALS_DIRECTORY
    (credentials nsdash itself received from a service manager)."""
    ident, path = _credential_id(value, option)
    if not path:
        raise UsageError(f"invalid {option} {v.printable(value)!r}: empty path", f"use {option}=ID:PATH")
    if not path.startswith("/"):
        base = os.environ.get("CREDENTIALS_DIRECTORY")
        if not base or "/" in path:
            raise UsageError(f"{option} {ident}: {v.printable(path)!r} is not an absolute path",
                             "give an absolute path (a relative one names a credential in $CREDENTIALS_DIRECTORY)")
        path = os.path.join(base, path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        raise UsageError(f"{option} {ident}: cannot read {v.printable(path)}: {e.strerror}",
                         "fix the path") from None
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"{option} {ident}: {v.printable(path)} is not a regular file",
                             "nsdash reads credentials from regular files only (not sockets)")
        data = os.read(fd, CREDENTIAL_SIZE_MAX + 1)
    finally:
        os.close(fd)
    if len(data) > CREDENTIAL_SIZE_MAX:
        raise UsageError(f"{option} {ident}: {v.printable(path)} is larger than 1 MiB", "pass a smaller credential")
    return Credential(ident, data)


def check_unique_credentials(creds: Any) -> None:
    seen: set[str] = set()
    for c in creds:
        if c.id in seen:
            raise UsageError(f"duplicate credential {c.id!r}", "pass each credential ID once")
        seen.add(c.id)
