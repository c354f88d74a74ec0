"""One file of the package's compiled code, read by the `nsdash` command instead of a .pyc per module.

Every `nsdash` verb is a fresh interpreter that imports 25-75 of nsdash's modules.  Found
the usual way, each costs a directory check, a stat of its source, an open, fstat, read
and close of its .pyc, and the import system's path work in Python: about 230 system
calls and 0.7 M instructions per verb.  The bundle holds every module's code, written
once (`make bytecode`: python -m nsdash.codebundle build); the launcher reads its index
and, per module, one stat of the source and one pread of its code.

Never stale: each module's code is used only while its source file is the one it was
compiled from (same inode, size, and modification and change times to the nanosecond;
the usual way makes that stat too; a source changed in the last seconds before the
build is left out, as a second change within the clock's tick could keep its times) and the interpreter reads the same bytecode (the import system's
magic number and the optimisation level are in the header).  An edited, replaced or
removed source, a new module, a bundle from another interpreter or a damaged one: that
module is found the usual way (its .pyc, or compiled anew), as if there were no bundle.
Only submodules of a package whose __path__ is the bundle's directory are served, so
another checkout first on PYTHONPATH is never given this one's code.

The bundle's descriptor stays open for the process (close-on-exec): a module may be
imported at any time.  A process that closes it (a container's child closes every
descriptor) gets its modules the usual way: each entry names its module, so a descriptor
reused for another file is never read as the bundle.  Rebuilding writes a new file and renames it over the old one, so
a running process keeps reading the one it opened.
"""

from __future__ import annotations

import marshal
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import CodeType, ModuleType

_bootstrap = sys.modules["_frozen_importlib"]  # the import system itself, always loaded: no import here
_external = sys.modules["_frozen_importlib_external"]
_imp = sys.modules["_imp"]

# The file: FORMAT, the magic number, the -O level, the index's length (4 bytes) and the index
# (marshal: module name -> offset << 32 | length of its entry after the index), then the entries,
# each 2 bytes of length, marshal's (module name, source path under the package, _key(its
# stat), is a package), then the module's code (marshal, as in a .pyc).
FORMAT = b"nsdash-bundle-1\n"


def bundle_path(package_dir: str) -> str:
    return os.path.join(package_dir, "__pycache__", f"bundle.{sys.implementation.cache_tag}.bin")


def _header() -> bytes:
    """What must match for the code to be this interpreter's: format, bytecode magic, -O level."""
    return FORMAT + _external.MAGIC_NUMBER + bytes([sys.flags.optimize])


def _modules(package: str, package_dir: str) -> list[tuple[str, str, bool]]:
    """(module name, source path, is a package) of every module under PACKAGE_DIR."""
    found = []
    for top, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and os.path.exists(os.path.join(top, d, "__init__.py")))
        rel = os.path.relpath(top, package_dir)
        prefix = package if rel == "." else package + "." + rel.replace(os.sep, ".")
        for f in sorted(files):
            if f.endswith(".py") and f[:-3].isidentifier():
                is_pkg = f == "__init__.py"
                found.append((prefix if is_pkg else f"{prefix}.{f[:-3]}", os.path.join(top, f), is_pkg))
    return found


def _key(st: os.stat_result) -> tuple[int, int, int, int]:
    """What an edit or a replacement changes: inode, size, and both times (ctime cannot be set back)."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def build(package: str, package_dir: str, settle: float = 2.0) -> str:
    """Write the bundle of PACKAGE (at PACKAGE_DIR) for this interpreter; its path.

    A source changed less than SETTLE seconds ago is left out (found the usual way): a
    second edit within the file system's clock tick could keep its times, while one made
    after the build cannot."""
    package_dir = os.path.abspath(package_dir)
    index: dict[str, int] = {}
    blobs: list[bytes] = []
    offset = 0
    fresh = time.time_ns() - int(settle * 1e9)
    for name, path, is_pkg in _modules(package, package_dir):
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            source = f.read()
        if max(st.st_mtime_ns, st.st_ctime_ns) >= fresh:
            continue
        # As the import system compiles a source (its co_filename the path tracebacks show).
        code = compile(source, path, "exec", dont_inherit=True, optimize=sys.flags.optimize)
        meta = marshal.dumps((name, os.path.relpath(path, package_dir), _key(st), is_pkg))
        blob = len(meta).to_bytes(2, "little") + meta + marshal.dumps(code)
        index[name] = offset << 32 | len(blob)  # one int an entry: the index is read by every run
        blobs.append(blob)
        offset += len(blob)
    head = _header()
    index_blob = marshal.dumps(index)
    target = bundle_path(package_dir)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = f"{target}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(head + len(index_blob).to_bytes(4, "little") + index_blob)
            for blob in blobs:
                f.write(blob)
        os.replace(tmp, target)  # a process reading the old one keeps it
    except BaseException:
        import contextlib  # here: the launcher imports this module on every run

        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


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
    """On sys.meta_path, before the path finder: the bundle's modules whose sources are unchanged."""

    def __init__(self, package: str, package_dir: str, fd: int, index: dict[str, int], base: int) -> None:
        self._prefix = package + "."
        self._dir = package_dir
        self._fd = fd
        self._index = index
        self._base = base

    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None,
                  ) -> ModuleSpec | None:
        at = self._index.get(fullname)
        if at is None or not fullname.startswith(self._prefix) or not path:
            return None
        try:
            blob = os.pread(self._fd, at & 0xFFFFFFFF, self._base + (at >> 32))
            n = int.from_bytes(blob[:2], "little")
            named, rel, key, is_pkg = marshal.loads(blob[2:2 + n])
            if named != fullname:  # not this module's entry: the descriptor is no longer the bundle's
                return None
            source = os.path.join(self._dir, rel)
            where = os.path.dirname(os.path.dirname(source) if is_pkg else source)
            if path[0] != where:  # the parent package is another copy: the path finder's to find
                return None
            st = os.stat(source)
        except (OSError, ValueError, EOFError, TypeError):
            return None  # the source is gone (the path finder says so), or a damaged bundle
        if _key(st) != key:
            return None  # edited or replaced since the bundle was built: found the usual way
        spec = _bootstrap.ModuleSpec(fullname, _Loader(fullname, source, blob[2 + n:]), origin=source,
                                     is_package=is_pkg)
        spec.has_location = True
        if is_pkg:
            spec.submodule_search_locations = [os.path.dirname(source)]
        return spec

    def invalidate_caches(self) -> None:
        pass


def install(package: str = "nsdash") -> bool:
    """Serve the submodules of PACKAGE (imported the usual way) from its bundle if it has a
    usable one; whether it was installed."""
    __import__(package)
    paths = getattr(sys.modules[package], "__path__", None)
    if not paths:
        return False
    package_dir = paths[0]
    try:
        fd = os.open(bundle_path(package_dir), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        head = _header()
        first = os.pread(fd, 16384, 0)
        if not first.startswith(head) or len(first) < len(head) + 4:
            os.close(fd)
            return False
        n = int.from_bytes(first[len(head):len(head) + 4], "little")
        start = len(head) + 4
        blob = first[start:start + n] if start + n <= len(first) else os.pread(fd, n, start)
        index = marshal.loads(blob)
        if not isinstance(index, dict):
            raise ValueError("not an index")
    except (OSError, ValueError, EOFError, TypeError):
        os.close(fd)
        return False
    at = next((i for i, f in enumerate(sys.meta_path) if f is _external.PathFinder), len(sys.meta_path))
    sys.meta_path.insert(at, _Finder(package, package_dir, fd, index, start + n))
    return True


def main(argv: list[str]) -> int:
    if argv != ["build"]:
        print("usage: python -m nsdash.codebundle build", file=sys.stderr)
        return 2
    here = os.path.dirname(os.path.abspath(__file__))
    print(build("nsdash", here))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
