"""Writes the bundle nsdash.codebundle reads: every module of the package compiled, in one file.

    python -m nsdash.bundlewrite      (make bytecode runs it; it prints the bundle's path)

A source changed less than SETTLE seconds before the build is left out (found the usual
way until the next build): a second edit within the file system's clock tick could keep
its times, while any change made after the build cannot.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import sys
import time
from importlib.machinery import EXTENSION_SUFFIXES

from nsdash.codebundle import bundle_path, header, key


def modules(package: str, package_dir: str) -> list[tuple[str, str, bool]]:
    """(module name, source path, is a package) of every module under PACKAGE_DIR."""
    found: list[tuple[str, str, bool]] = []
    for top, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and os.path.exists(os.path.join(top, d, "__init__.py")))
        rel = os.path.relpath(top, package_dir)
        prefix = package if rel == "." else package + "." + rel.replace(os.sep, ".")
        # A module with a package or an extension module of its name beside it is not the one
        # imported (the path finder takes those first): left out, or the bundle would give
        # other code than the import system.
        shadowed = set(dirs) | {f.split(".", 1)[0] for f in files if f.endswith(tuple(EXTENSION_SUFFIXES))}
        for f in sorted(files):
            if f.endswith(".py") and f[:-3].isidentifier() and (f == "__init__.py" or f[:-3] not in shadowed):
                is_pkg = f == "__init__.py"
                found.append((prefix if is_pkg else f"{prefix}.{f[:-3]}", os.path.join(top, f), is_pkg))
    return found


def build(package: str, package_dir: str, settle: float = 2.0) -> str:
    """Write the bundle of PACKAGE (at PACKAGE_DIR) for this interpreter; its path."""
    package_dir = os.path.abspath(package_dir)
    index = [b""]
    blobs: list[bytes] = []
    offset = 0
    fresh = time.time_ns() - int(settle * 1e9)
    for name, path, is_pkg in modules(package, package_dir):
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            source = f.read()
        if max(st.st_mtime_ns, st.st_ctime_ns) >= fresh:
            continue
        # As the import system compiles a source (its co_filename the path tracebacks show).
        code = compile(source, path, "exec", dont_inherit=True, optimize=sys.flags.optimize)
        meta = marshal.dumps((name, os.path.relpath(path, package_dir), key(st), is_pkg))
        blob = len(meta).to_bytes(2, "little") + meta + marshal.dumps(code)
        index.append(f"{name} {offset} {len(blob)}".encode())
        blobs.append(blob)
        offset += len(blob)
    index_blob = b"\n".join(index) + b"\n"
    target = bundle_path(package_dir)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = f"{target}.{os.getpid()}.tmp"
    # A new file of ours, never a path someone put there (a link to another file), readable by
    # all and writable by us alone whatever the umask: codebundle.install refuses any other.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a crashed build's of the same PID
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with open(fd, "wb") as f:
            os.fchmod(fd, 0o644)
            f.write(header() + len(index_blob).to_bytes(4, "little") + index_blob)
            for blob in blobs:
                f.write(blob)
        os.replace(tmp, target)  # a process reading the old one keeps it
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def main(argv: list[str]) -> int:
    if argv:
        print("usage: python -m nsdash.bundlewrite (writes nsdash's bundle; no arguments)", file=sys.stderr)
        return 2
    print(build("nsdash", os.path.dirname(os.path.abspath(__file__))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
