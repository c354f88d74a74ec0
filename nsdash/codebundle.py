"""One file of the package's compiled code, read by the `nsdash` command instead of a .pyc per module.

Every `nsdash` verb is a fresh interpreter that imports 15-75 of nsdash's modules.  Found
the usual way, each costs a directory check, a stat of its source, an open, fstat, read
and close of its .pyc, and the path finder's work in Python.  The bundle holds every
module's code (written by nsdash.bundlewrite, which `make bytecode` runs); the launcher
reads its index, then per module one stat of the source and one pread of its entry.

Never stale: a module's code is used only while its source file is the one it was
compiled from (same inode, size, modification and change times to the nanosecond; the
usual way makes that stat too), and only by an interpreter of the same bytecode (the
import system's magic number and the -O level are in the header).  An edited, replaced
or removed source, a new module, a foreign or damaged bundle: that module is found the
usual way (its .pyc, or compiled anew), as if there were no bundle.  Each entry names
its module and its source lies under the package's own directory, so another copy of
the package on the path is not read as this bundle.

The descriptor stays open, close-on-exec, for the process: a module may be imported at
any time.  A forked child may close it (the remote server's verbs, a container's child
close every descriptor) and open another file on its number, a guest's journal say,
which would then be read as the bundle and its bytes run: so in a forked child each
import first checks that the descriptor is still the bundle (one fstat; the process
itself never closes it, and pays nothing), else its modules come the usual way.  (A
child of a raw clone3 runs no fork hook: the container's PID 1 closes its descriptors
only right before its exec, importing nothing after.)  A rebuilt bundle is renamed over
the old one, so a running process keeps reading the one it opened.

Never foreign: whoever can write the bundle chooses the code of every verb, root's
included, and can read the sources' stat keys to forge entries.  So the bundle is used
only if it is a regular file owned by root, by this process's user or by the package
directory's owner (who could replace its sources anyway), and writable by its owner alone:
one planted by another user in a writable __pycache__, or left writable to others, is
not read, nor a link in its place (to some file of root's holding a user's bytes), nor
is a FIFO waited on.
"""

from __future__ import annotations

import marshal
import posix
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import CodeType, ModuleType

_bootstrap = sys.modules["_frozen_importlib"]  # the import system itself, always loaded: no import here
_external = sys.modules["_frozen_importlib_external"]
_imp = sys.modules["_imp"]

# The file: FORMAT, the magic number, the -O level, the index's length (4 bytes), the index,
# then the entries.  The index is text searched in place (no parse of ~220 names on every
# run): "\nNAME OFFSET LENGTH" per module, OFFSET counted from the index's end, and "\n" last.
# An entry: 2 bytes of length, marshal's (module name, source path under the package,
# key(its stat), is a package), then the module's code (marshal, as in a .pyc).
FORMAT = b"nsdash-bundle-2\n"


def bundle_path(package_dir: str) -> str:
    return f"{package_dir.rstrip('/')}/__pycache__/bundle.{sys.implementation.cache_tag}.bin"


def header() -> bytes:
    """What must match for the code to be this interpreter's: format, bytecode magic, -O level."""
    return FORMAT + _external.MAGIC_NUMBER + bytes([sys.flags.optimize])


def key(st: posix.stat_result) -> tuple[int, int, int, int]:
    """What an edit or a replacement changes: inode, size, and both times (ctime cannot be set back)."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class _Loader(_external.SourceFileLoader):  # type: ignore[misc, name-defined]
    """The usual loader of a source file (get_source, resources), its code from the bundle."""

    def __init__(self, fullname: str, path: str, code: bytes) -> None:
        super().__init__(fullname, path)
        self._code = code

    def get_code(self, fullname: str) -> CodeType:
        try:
            code = marshal.loads(self._code)
        except (ValueError, EOFError, TypeError):
            return super().get_code(fullname)  # a damaged bundle: the module's own .pyc or source
        _imp._fix_co_filename(code, self.path)  # as for a .pyc: the source's path where it is now
        return code


class _Finder:
    """First on sys.meta_path: the bundle's modules whose sources are unchanged."""

    def __init__(self, package: str, package_dir: str, path: str, fd: int, ident: tuple[int, int], index: bytes,
                 base: int) -> None:
        self._prefix = package + "."
        self._dir = package_dir
        self._path = path
        self._fd = fd
        self._index = index
        self._base = base
        self._ident = ident  # the bundle's (device, inode)
        self._forked = False  # a forked child's imports check the descriptor first
        posix.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._forked = True

    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None,
                  ) -> ModuleSpec | None:
        if not path or not fullname.startswith(self._prefix):
            return None
        index = self._index
        at = index.find(b"\n" + fullname.encode() + b" ")
        if at < 0:
            return None
        try:
            if self._forked:
                st = posix.fstat(self._fd)
                if (st.st_dev, st.st_ino) != self._ident:
                    return None  # closed, its number another file's: never read as the bundle
            _, offset, length = index[at + 1:index.index(b"\n", at + 1)].split()
            blob = posix.pread(self._fd, int(length), self._base + int(offset))
            n = int.from_bytes(blob[:2], "little")
            named, rel, was, is_pkg = marshal.loads(blob[2:2 + n])
            if named != fullname:  # not this module's entry: the descriptor is no longer the bundle's
                return None
            source = f"{self._dir}/{rel}"  # (str methods, not os.path's Python: this runs for every module)
            here = source.rpartition("/")[0]
            if path[0] != (here.rpartition("/")[0] if is_pkg else here):
                return None  # the parent package is another copy: the path finder's to find
            st = posix.stat(source)
        except (OSError, ValueError, EOFError, TypeError):
            return None  # the source is gone (the path finder says so), or a damaged bundle
        if key(st) != was:
            return None  # edited or replaced since the bundle was built: found the usual way
        spec = _bootstrap.ModuleSpec(fullname, _Loader(fullname, source, blob[2 + n:]), origin=source,
                                     is_package=is_pkg)
        spec.has_location = True
        spec.cached = self._path  # where its compiled code is (else derived from origin: 14 k instructions a module)
        if is_pkg:
            spec.submodule_search_locations = [here]
        return spec

    def invalidate_caches(self) -> None:
        pass


def _trusted(st: posix.stat_result, package_dir: str) -> bool:
    """Whether a bundle with this stat may give this process its code (see the module's doc)."""
    if (st.st_mode & 0o170000) != 0o100000 or st.st_mode & 0o022:  # (stat's S_ISREG, inline: no import)
        return False
    return st.st_uid == 0 or st.st_uid in (posix.geteuid(), posix.stat(package_dir).st_uid)


def install(package: str = "nsdash") -> bool:
    """Serve the submodules of PACKAGE (imported the usual way) from its bundle if it has a
    usable one; whether it was installed."""
    __import__(package)
    paths = getattr(sys.modules[package], "__path__", None)
    if not paths:
        return False
    package_dir = paths[0]
    path = bundle_path(package_dir)
    try:
        # The file itself, never a link put in its place (to any file of root's whose bytes a
        # user chose); a FIFO put there is not waited on.
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC | posix.O_NONBLOCK | posix.O_NOFOLLOW)
    except OSError:
        return False
    head = header()
    start = len(head) + 4
    try:
        st = posix.fstat(fd)
        if not _trusted(st, package_dir):
            posix.close(fd)
            return False
        first = posix.pread(fd, 16384, 0)
        n = int.from_bytes(first[len(head):start], "little")
        # (The index's length is checked against the file before it is read: a damaged one's
        # could ask pread for 4 GiB.)
        if not first.startswith(head) or start + n > st.st_size:
            posix.close(fd)
            return False
        index = first[start:start + n] if start + n <= len(first) else posix.pread(fd, n, start)
        if len(index) != n or not index.endswith(b"\n"):
            posix.close(fd)
            return False
    except OSError:
        posix.close(fd)
        return False
    # First: the built-in and frozen importers never have a submodule of PACKAGE (asking them
    # costs each such import more than this finder's refusal costs any other import).
    sys.meta_path.insert(0, _Finder(package, package_dir, path, fd, (st.st_dev, st.st_ino), index, start + n))
    return True
