"""The formats of a machine's identity files: os-release(5) and machine-id(5).

One parser each, for the host's files and every machine's (the launcher reads
a tree's before it starts, the registry and the journal reader a running
machine's).  os-release is a list of shell-like assignments, as systemd reads it
(parse_env_file): `KEY=VALUE` lines, `#` and `;` comments, values unquoted,
'single-quoted' (taken literally) or "double-quoted" (a backslash escapes
`"`, `\\`, `` ` `` and `$`, and is kept before anything else), a backslash
outside quotes escapes the next character, a backslash before the end of a
line continues the value on the next one, and unquoted values lose trailing
whitespace.  Lines that are not assignments are skipped, never fatal: the file
may be written by a guest.
"""

from __future__ import annotations

# Where os-release(5) is, in the order systemd looks: /etc's first (for the host's file, a
# tree's and a running machine's alike).
OS_RELEASE_PATHS = ("/etc/os-release", "/usr/lib/os-release")

_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_DQ_ESCAPABLE = '"\\`$'
_HEX = frozenset("0123456789abcdef")


def normalise_id(text: str | None) -> str | None:
    """A machine ID or UUID in any of its spellings -> 32 lower-case hex digits, or None (also for all zeros)."""
    if not text:
        return None
    t = text.strip().lower().replace("-", "")
    return t if len(t) == 32 and _HEX.issuperset(t) and t != "0" * 32 else None


def _value(text: str, i: int) -> tuple[str, int]:
    """The value starting at TEXT[I] and the index just past its line."""
    out: list[str] = []
    pending_space = ""  # unquoted whitespace: kept only if more of the value follows
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            return "".join(out), i + 1
        if c == "\\":
            if i + 1 < n and text[i + 1] == "\n":
                i += 2  # continuation
                continue
            if i + 1 < n:
                out.append(pending_space + text[i + 1])
                pending_space = ""
            i += 2
            continue
        if c == "'":
            end = text.find("'", i + 1)
            end = n if end < 0 else end
            out.append(pending_space + text[i + 1:end])
            pending_space = ""
            i = end + 1
            continue
        if c == '"':
            out.append(pending_space)
            pending_space = ""
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    nxt = text[i + 1]
                    if nxt in _DQ_ESCAPABLE:
                        out.append(nxt)
                    elif nxt != "\n":
                        out.append("\\" + nxt)
                    i += 2
                    continue
                out.append(text[i])
                i += 1
            i += 1
            continue
        if c in " \t\r":
            pending_space += c
        else:
            out.append(pending_space + c)
            pending_space = ""
        i += 1
    return "".join(out), n


def parse_os_release(data: str | bytes) -> dict[str, str]:
    """KEY -> value of an os-release file's text (bytes are decoded as UTF-8, bad bytes replaced)."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    result: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n:
            break
        if text[i] in "#;":
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        j = i
        while j < n and text[j] in _KEY_CHARS:
            j += 1
        key = text[i:j]
        k = j
        while k < n and text[k] in " \t":
            k += 1
        if not key or k >= n or text[k] != "=":
            end = text.find("\n", i)  # not an assignment: skip the line
            i = n if end < 0 else end + 1
            continue
        k += 1
        while k < n and text[k] in " \t":
            k += 1
        value, i = _value(text, k)
        result[key] = value
    return result
