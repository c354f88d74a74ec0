"""The few os.path and os.environ reads the short read-only verbs need, without `import os`.

Python started with -S (bin/nsdash) has not loaded os; importing it costs a verb about 4.6 M
instructions, an eighth of `nsdash cgtop -b -n 1`: _collections_abc's 26 abstract classes
(for os.environ's mapping) and posixpath.  os's functions are the built-in posix module's
own, so cgls's and cgtop's modules call posix directly, and these few helpers stand in for
os.path's on the plain str paths those modules hold.
"""

from __future__ import annotations

import posix
import sys

TYPE_CHECKING = False  # mypy reads this as True
if TYPE_CHECKING:
    from os import PathLike

    StrPath = str | PathLike[str]

# A mode's file type, as stat.S_IFMT and its kinds (the kernel's values; stat brings _stat, ~0.45 M).
S_IFMT, S_IFDIR, S_IFREG, S_IFLNK = 0o170000, 0o040000, 0o100000, 0o120000


def join(first: StrPath, *rest: str) -> str:
    """os.path.join for str paths: an absolute part starts again, '/' only where none is."""
    path = posix.fspath(first)
    for part in rest:
        if part.startswith("/") or not path:
            path = part
        elif path.endswith("/"):
            path += part
        else:
            path += "/" + part
    return path


def _mode(path: StrPath) -> int | None:
    try:
        return posix.stat(path).st_mode
    except (OSError, ValueError):  # (ValueError: a NUL in the path, as os.path.exists takes it)
        return None


def exists(path: StrPath) -> bool:
    return _mode(path) is not None


def isdir(path: StrPath) -> bool:
    mode = _mode(path)
    return mode is not None and mode & S_IFMT == S_IFDIR


def isfile(path: StrPath) -> bool:
    mode = _mode(path)
    return mode is not None and mode & S_IFMT == S_IFREG


def getenv(name: str) -> str | None:
    """os.environ.get(NAME): os.environ's own where os is loaded (what was set through it since,
    a test's monkeypatch for one, is there alone), else the environment the process began with."""
    os = sys.modules.get("os")
    if os is not None:
        return os.environ.get(name)  # type: ignore[no-any-return]
    value = posix.environ.get(_encode(name))
    return None if value is None else _decode(value)


def lexists(path: StrPath) -> bool:
    try:
        posix.lstat(path)
    except (OSError, ValueError):
        return False
    return True


def setenv(name: str, value: str | None) -> None:
    """os.environ[NAME] = VALUE (del where VALUE is None), for this process's C libraries too.
    Without os, posix.environ is kept as well: os.environ is made from it if os loads later."""
    os = sys.modules.get("os")
    if os is not None:
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
        return
    key = _encode(name)
    if value is None:
        posix.unsetenv(key)
        posix.environ.pop(key, None)
    else:
        posix.putenv(key, _encode(value))
        posix.environ[key] = _encode(value)


# As os.environ and every path argument: the file system's encoding, which is ascii under a C
# locale without UTF-8 mode (a value decoded as UTF-8 there names no file posix can encode).
def _encode(text: str) -> bytes:
    return text.encode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())


def _decode(data: bytes) -> str:
    return data.decode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())

