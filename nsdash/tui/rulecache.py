"""The dashboard's parsed style rules kept between starts, so a start parses no CSS it parsed before.

Textual parses every CSS source at each start: styles/nsdash.tcss and the
DEFAULT_CSS of every widget class on the first screen, about 5% of the CPU to
the dashboard's first frame (issue 16), for rules that change only when a file
or Textual does.  RuleStylesheet is Textual's Stylesheet with one more cache in
front of its parser: the rules of each source, looked up by everything Textual
parses them from (the CSS text itself, where it was read, default or not, its
tie-breaker and scope, and the theme's variables substituted into it).  The
text being the key, the cache can never answer for an old version of a file:
styles/*.tcss stay the one source of truth, and an edited file is parsed again.

RuleCache is that cache on disk: one pickle per Textual version and Python,
$XDG_CACHE_HOME/nsdash (~/.cache/nsdash), written when a source was parsed (what
this run used, nothing more): once the first full frame is out, in a thread of its
own (save_soon: a key pressed then does not wait for the pickle and the file), and
again when the app ends (save, after that thread).  The file is written unnamed
(O_TMPFILE) and linked in place once complete: a start killed while writing leaves
no temporary file behind (only a file system without O_TMPFILE gets a named one,
removed on any error).  A pickle runs code as it loads, like a .pyc: it is read
only from a file and directories the user alone can write (or root), never through
a symbolic link or a second hard link; nothing is made in a directory that is not
the user's (root with a user's HOME kept); and anything wrong with it (another
format, a broken file) is a miss, never an error.

Only the dashboard's own start uses it (nsdash.cli.dashboard); an app made by a
test parses as Textual does unless given one.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import pickle
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from textual.css.stylesheet import Stylesheet

from nsdash.system.fdio import write_all
from nsdash.tui.installed import textual_version

if TYPE_CHECKING:
    from textual.css.model import RuleSet
    from textual.css.types import CSSLocation

FORMAT = 2  # bump when what is stored changes (2: one pickle a source, after a (FORMAT, count) one)
MAX_BYTES = 8 << 20  # a cache file larger than this is not read
YIELD = 0.0002  # s: the writer thread's pause between two sources' pickles (see _write_entries)


def default_path(env: dict[str, str] | os._Environ[str] | None = None) -> str | None:
    """Where the rules are kept for this Textual and Python; None if there is no home."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or (os.path.join(env["HOME"], ".cache") if env.get("HOME") else None)
    version = textual_version()
    if not base or not os.path.isabs(base):
        return None
    return os.path.join(base, "nsdash", f"css-rules-textual-{version}-py{sys.version_info[0]}{sys.version_info[1]}.pickle")


def _trusted(st: os.stat_result, directory: bool) -> bool:
    """Owned by us or root and writable by nobody else; or, for a directory, root's and sticky
    (/tmp: nobody else can rename or remove what we made in it)."""
    import stat

    if not (stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)):
        return False
    if directory and st.st_uid == 0 and st.st_mode & stat.S_ISVTX:
        return True
    return st.st_uid in (0, os.geteuid()) and not st.st_mode & 0o022


def _trusted_dirs(path: str) -> bool:
    """Every directory from PATH's up to / trusted: nobody else could have put the file there."""
    here = os.path.dirname(path)
    while True:
        try:
            if not _trusted(os.lstat(here), directory=True):
                return False
        except OSError:
            return False
        parent = os.path.dirname(here)
        if parent == here:
            return True
        here = parent


# Stylesheet._parse_rules's parameters (Textual 8.2.8), which RuleStylesheet's override takes.
PARAMETERS = ("self", "css", "read_from", "is_default_rules", "tie_breaker", "scope")


def usable() -> bool:
    """Textual's Stylesheet.parse calls _parse_rules with PARAMETERS, as 8.2.8's does; another
    Textual (8.2 is all pyproject asks for) may call it with others, and the override would
    fail the dashboard's start: it then parses as Textual does."""
    code = Stylesheet._parse_rules.__code__
    return (code.co_varnames[:code.co_argcount] == PARAMETERS and not code.co_kwonlyargcount
            and "_parse_rules" in Stylesheet.parse.__code__.co_names)


def for_dashboard() -> RuleCache | None:
    """The dashboard's cache at its default place; None on a Textual it does not fit."""
    return RuleCache(default_path()) if usable() else None


class RuleCache:
    """Parsed rules by what they were parsed from, loaded from PATH (None: in memory only)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._stored: dict[tuple, list[RuleSet]] = self._load() if path else {}
        self._used: dict[tuple, list[RuleSet]] = {}
        self.hits = 0
        self.misses = 0  # sources parsed since the last write began
        self.saved_once = False  # save() or save_soon() was called (at the app's first full frame)
        self._failed = False  # the last write failed: the next save writes again
        self._writer: threading.Thread | None = None

    def get(self, key: tuple) -> list[RuleSet] | None:
        rules = self._stored.get(key)
        if rules is None:
            return None
        self.hits += 1
        self._used[key] = rules
        return rules

    def put(self, key: tuple, rules: list[RuleSet]) -> None:
        self.misses += 1
        self._used[key] = self._stored[key] = rules

    def save(self) -> None:
        """Write what this run used, if it parsed anything, and return once it is written (a write
        save_soon began is waited for first); never raises (a cache is optional)."""
        self.wait()
        entries = self._to_write()
        if entries is not None:
            self._write_entries(entries)

    def save_soon(self) -> None:
        """As save, in a thread of its own: the caller (the UI thread) goes on at once.  The
        thread is not a daemon: the interpreter waits for it at exit, and save() waits for it."""
        self.wait()
        entries = self._to_write()
        if entries is not None:
            self._writer = threading.Thread(target=self._write_entries, args=(entries, YIELD),
                                            name="nsdash-rule-cache")
            self._writer.start()

    def wait(self) -> None:
        """Until the write save_soon began, if any, is done."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.join()

    def _to_write(self) -> dict[tuple, list[RuleSet]] | None:
        """What to write, taken now (the UI thread may parse more meanwhile); None: nothing new."""
        self.saved_once = True
        if self.path is None or not (self.misses or self._failed):
            return None
        self.misses, self._failed = 0, False
        return {key: list(rules) for key, rules in self._used.items()}

    def _write_entries(self, entries: dict[tuple, list[RuleSet]], pause: float = 0.0) -> None:
        """Pickle ENTRIES a source at a time (one pickler: what they share is stored once) and
        write them.  PAUSE: sleep that long before each, the GIL let go: pickling holds it, and
        a thread that just started holds it until it lets go, so the UI thread that started
        this one (or woke for a key) would wait for the whole pickle (1.4 ms for the dashboard's
        first frame here), not for one source's at most (0.3 ms)."""
        out = io.BytesIO()
        pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            pickler.dump((FORMAT, len(entries)))
            for entry in entries.items():
                if pause:
                    time.sleep(pause)
                pickler.dump(entry)
            self._write(out.getbuffer())
        except (OSError, pickle.PicklingError, TypeError, AttributeError, RecursionError):
            self._failed = True

    def _load(self) -> dict[tuple, list[RuleSet]]:
        assert self.path is not None
        # the directories first: in one others can write, even open(2) is theirs to answer (a FIFO
        # there would block it for good); in ours nobody else can swap the file after this check
        if not _trusted_dirs(self.path):
            return {}
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError:
            return {}
        try:
            st = os.fstat(fd)
            # one link: not another file of ours linked here (with fs.protected_hardlinks off)
            if not _trusted(st, directory=False) or st.st_nlink != 1 or st.st_size > MAX_BYTES:
                return {}
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read(MAX_BYTES + 1)
        except OSError:
            return {}
        finally:
            os.close(fd)
        try:
            unpickler = pickle.Unpickler(io.BytesIO(data))
            version, count = unpickler.load()
            if version != FORMAT or not isinstance(count, int):
                return {}
            return dict(unpickler.load() for _ in range(count))
        except Exception:  # noqa: BLE001 - any broken or foreign file is a miss (Textual's classes may have moved)
            return {}

    def _write(self, data: bytes | memoryview) -> None:
        assert self.path is not None
        directory = os.path.dirname(self.path)
        existing = directory
        while not os.path.lexists(existing):
            existing = os.path.dirname(existing)
        if not _trusted_dirs(os.path.join(existing, "-")):
            return  # e.g. root with a user's HOME kept (sudo -E): make nothing of root's in it
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if not _trusted_dirs(self.path):
            return  # a directory someone else can write: the next start would not read it
        dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                fd = os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise
                self._write_named(data)  # a file system without unnamed files (NFS, old kernels)
                return
            try:
                write_all(fd, data)
                _link_in_place(fd, dir_fd, os.path.basename(self.path))
            finally:
                os.close(fd)
        finally:
            os.close(dir_fd)

    def _write_named(self, data: bytes | memoryview) -> None:
        assert self.path is not None
        temp = f"{self.path}.{os.getpid()}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(data)
            os.rename(temp, self.path)
        except OSError:
            os.unlink(temp)
            raise
        finally:
            os.close(fd)


def _link_in_place(fd: int, dir_fd: int, name: str) -> None:
    """Give the complete unnamed file FD the name NAME in DIR_FD, in place of the file there:
    linkat(2) of /proc/self/fd/FD with AT_SYMLINK_FOLLOW (os.link makes that call only when given
    a directory descriptor; AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH).  A link never replaces
    a name, so the old file goes first: a start killed between the two finds no file (a miss),
    never a part of one.  Another start's file linked meanwhile is as good: it stays."""
    source = f"/proc/self/fd/{fd}"
    try:
        os.link(source, name, dst_dir_fd=dir_fd)
        return
    except FileExistsError:
        pass
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)
    with contextlib.suppress(FileExistsError):
        os.link(source, name, dst_dir_fd=dir_fd)


class RuleStylesheet(Stylesheet):
    """Textual's Stylesheet, each source's rules taken from CACHE when it holds them.

    Overrides Textual's Stylesheet._parse_rules (its one parser call, 8.2.8): tests/tui/
    test_rule_cache.py fails if Textual stops calling it or changes its arguments."""

    def __init__(self, *, variables: dict[str, str] | None = None, cache: RuleCache) -> None:
        super().__init__(variables=variables)
        self.rule_cache = cache
        self._variables_key: tuple | None = None

    def set_variables(self, variables: dict[str, str]) -> None:
        super().set_variables(variables)
        self._variables_key = None

    def _parse_rules(self, css: str, read_from: CSSLocation, is_default_rules: bool = False,
                     tie_breaker: int = 0, scope: str = "") -> list[RuleSet]:
        if self._variables_key is None:
            self._variables_key = tuple(sorted(self._variables.items()))
        key: tuple[Any, ...] = (css, read_from, is_default_rules, tie_breaker, scope, self._variables_key)
        rules = self.rule_cache.get(key)
        if rules is None:
            rules = super()._parse_rules(css, read_from, is_default_rules, tie_breaker, scope)
            if not any(rule.errors for rule in rules):  # (errors are raised again from the text)
                self.rule_cache.put(key, rules)
        return rules
