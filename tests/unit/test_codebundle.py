"""nsdash.codebundle: the package's code from one file, and never stale code.

Each case builds a bundle for a small package made in tmp_path and imports it in a fresh
interpreter (the bundle's finder is process-wide), then changes a source as a user or an
upgrade would: edited in place, replaced, its times set back, removed, a module added.
The last case runs the real launcher on this checkout's bundle.
"""

import marshal
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nsdash import bundlewrite, codebundle, launchscript

REPO = Path(__file__).resolve().parents[2]

# What the child prints for each module: where its code came from, its value, its file.
PROBE = """\
import sys
sys.path.insert(0, {root!r})
from nsdash import bundlewrite, codebundle, launchscript
print(codebundle.install("pkgx"))
{before}
for name in {names!r}:
    try:
        m = __import__(name, fromlist=["_"])
    except ImportError as e:
        print(name, "ImportError", type(e).__name__)
        continue
    print(name, type(m.__spec__.loader).__name__, m.VALUE, m.__file__, m.__cached__)
"""


def _package(root: Path) -> None:
    (root / "pkgx" / "sub").mkdir(parents=True)
    (root / "pkgx" / "__init__.py").write_text("VALUE = 'top'\n")
    (root / "pkgx" / "a.py").write_text("VALUE = 'a1'\n")
    (root / "pkgx" / "sub" / "__init__.py").write_text("VALUE = 'sub'\n")
    (root / "pkgx" / "sub" / "b.py").write_text("VALUE = 'b1'\n")
    time.sleep(0.1)  # older than build()'s settle below


def _build(root: Path) -> None:
    bundlewrite.build("pkgx", str(root / "pkgx"), settle=0.05)
    time.sleep(0.05)  # a change from here on is after the build, in a later clock tick


def _probe(root: Path, names: list[str], before: str = "") -> tuple[str, dict[str, tuple[str, ...]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # nothing but the bundle or the source: no .pyc in play
    out = subprocess.run([sys.executable, "-S", "-c", PROBE.format(root=str(root), names=names, before=before)],
                         capture_output=True, text=True, env=env, cwd=root, timeout=120)
    assert out.returncode == 0, out.stderr
    first, *rest = out.stdout.splitlines()
    return first, {line.split()[0]: tuple(line.split()[1:]) for line in rest}


def test_modules_come_from_the_bundle(tmp_path):
    _package(tmp_path)
    _build(tmp_path)
    installed, got = _probe(tmp_path, ["pkgx.a", "pkgx.sub", "pkgx.sub.b"])
    assert installed == "True"
    bundle = codebundle.bundle_path(str(tmp_path / "pkgx"))  # __cached__: where the compiled code is
    assert got["pkgx.a"] == ("_Loader", "a1", str(tmp_path / "pkgx" / "a.py"), bundle)
    assert got["pkgx.sub"] == ("_Loader", "sub", str(tmp_path / "pkgx" / "sub" / "__init__.py"), bundle)
    assert got["pkgx.sub.b"] == ("_Loader", "b1", str(tmp_path / "pkgx" / "sub" / "b.py"), bundle)


def test_tracebacks_and_source_point_at_the_file(tmp_path):
    _package(tmp_path)
    (tmp_path / "pkgx" / "a.py").write_text("VALUE = 'a1'\n\n\ndef boom():\n    raise KeyError('x')\n")
    time.sleep(0.1)
    _build(tmp_path)
    before = ("import traceback, inspect, pkgx.a\ntry:\n    pkgx.a.boom()\nexcept KeyError as e:\n"
              "    fr = traceback.extract_tb(e.__traceback__)[-1]\n    print(fr.filename, fr.lineno, fr.line)\n"
              "print(type(pkgx.a.__spec__.loader).__name__, inspect.getsource(pkgx.a.boom).splitlines()[0])")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-S", "-c", PROBE.format(root=str(tmp_path), names=[], before=before)],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1] == f"{tmp_path / 'pkgx' / 'a.py'} 5 raise KeyError('x')"
    assert lines[2] == "_Loader def boom():"


def test_an_edited_source_runs_as_edited(tmp_path):
    """Edited in place, same size, same inode: its new code runs, the others stay bundled."""
    _package(tmp_path)
    _build(tmp_path)
    a = tmp_path / "pkgx" / "a.py"
    ino = a.stat().st_ino
    with open(a, "r+") as f:
        f.write("VALUE = 'a2'\n")
    assert a.stat().st_ino == ino and a.stat().st_size == len("VALUE = 'a1'\n")
    _, got = _probe(tmp_path, ["pkgx.a", "pkgx.sub.b"])
    assert got["pkgx.a"][:2] == ("SourceFileLoader", "a2")
    assert got["pkgx.sub.b"][:2] == ("_Loader", "b1")


def test_a_replaced_source_with_its_old_times_runs_as_replaced(tmp_path):
    """An upgrade that writes a new file of the same size and sets its times back to the old
    ones (as tar, cp -p or a reproducible wheel may): the new code runs."""
    _package(tmp_path)
    _build(tmp_path)
    b = tmp_path / "pkgx" / "sub" / "b.py"
    st = b.stat()
    new = b.with_name("b.py.new")
    new.write_text("VALUE = 'b2'\n")
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(new, b)
    assert (b.stat().st_size, b.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    _, got = _probe(tmp_path, ["pkgx.sub.b"])
    assert got["pkgx.sub.b"][:2] == ("SourceFileLoader", "b2")


def test_times_set_back_in_place_still_run_as_edited(tmp_path):
    """Edited in place and its modification time set back: the change time still tells."""
    _package(tmp_path)
    _build(tmp_path)
    a = tmp_path / "pkgx" / "a.py"
    st = a.stat()
    a.write_text("VALUE = 'a3'\n")
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    _, got = _probe(tmp_path, ["pkgx.a"])
    assert got["pkgx.a"][:2] == ("SourceFileLoader", "a3")


def test_removed_and_added_modules(tmp_path):
    _package(tmp_path)
    _build(tmp_path)
    (tmp_path / "pkgx" / "a.py").unlink()
    (tmp_path / "pkgx" / "c.py").write_text("VALUE = 'c1'\n")
    _, got = _probe(tmp_path, ["pkgx.a", "pkgx.c"])
    assert got["pkgx.a"] == ("ImportError", "ModuleNotFoundError")  # gone, not served from the bundle
    assert got["pkgx.c"][:2] == ("SourceFileLoader", "c1")


def test_a_source_changed_just_before_the_build_is_left_out(tmp_path):
    """Within the settle time another edit could keep the same times: not bundled."""
    _package(tmp_path)
    (tmp_path / "pkgx" / "a.py").write_text("VALUE = 'a4'\n")
    bundlewrite.build("pkgx", str(tmp_path / "pkgx"), settle=30)
    _, got = _probe(tmp_path, ["pkgx.a"])
    assert got["pkgx.a"][:2] == ("SourceFileLoader", "a4")


def test_another_interpreters_or_a_damaged_bundle_is_not_used(tmp_path):
    _package(tmp_path)
    _build(tmp_path)
    path = Path(codebundle.bundle_path(str(tmp_path / "pkgx")))
    data = path.read_bytes()
    head = codebundle.header()
    path.write_bytes(head[:-1] + bytes([head[-1] + 1]) + data[len(head):])  # built under another -O level
    installed, got = _probe(tmp_path, ["pkgx.a"])
    assert installed == "False" and got["pkgx.a"][:2] == ("SourceFileLoader", "a1")
    path.write_bytes(data[:len(head) + 10])  # cut short
    installed, got = _probe(tmp_path, ["pkgx.a"])
    assert installed == "False" and got["pkgx.a"][:2] == ("SourceFileLoader", "a1")


def test_a_closed_and_reused_descriptor_is_not_read_as_the_bundle(tmp_path):
    """A process that closes every descriptor (a container's child) and opens another file on
    the bundle's number: its imports work, the usual way."""
    _package(tmp_path)
    _build(tmp_path)
    other = tmp_path / "other"
    other.write_bytes(os.urandom(4096))
    before = ("import os\nfd = [f for f in sys.meta_path if type(f).__name__ == '_Finder'][0]._fd\nos.close(fd)\n"
              f"assert os.open({str(other)!r}, os.O_RDONLY) == fd")
    _, got = _probe(tmp_path, ["pkgx.a", "pkgx.sub.b"], before=before)
    assert got["pkgx.a"][:2] == ("SourceFileLoader", "a1")
    assert got["pkgx.sub.b"][:2] == ("SourceFileLoader", "b1")


def test_a_copy_of_the_package_uses_its_own_sources(tmp_path):
    """The package copied elsewhere with its bundle (cp -a keeps times): other inodes, so the
    copy's edited module is never given the original's code."""
    src = tmp_path / "one"
    _package(src)
    _build(src)
    dst = tmp_path / "two"
    shutil.copytree(src, dst, copy_function=shutil.copy2)
    (dst / "pkgx" / "a.py").write_text("VALUE = 'a5'\n")
    _, got = _probe(dst, ["pkgx.a"])
    assert got["pkgx.a"][:2] == ("SourceFileLoader", "a5")


def test_the_launcher_reads_the_checkouts_bundle(tmp_path):
    """This checkout's bin/nsdash with a bundle built: nsdash's modules come from it, a verb's
    output is the same as without it, and no .pyc of nsdash is opened."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(REPO)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "nsdash")], check=True, env=env)
    before = os.stat(REPO / "nsdash" / "cli" / "__init__.py")
    if time.time_ns() - max(before.st_mtime_ns, before.st_ctime_ns) < 2.5e9:
        time.sleep(2.5)  # nsdash.cli just edited: past the build's settle time
    subprocess.run([sys.executable, "-m", "nsdash.bundlewrite"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    launcher = tmp_path / "nsdash"  # as `make venv` installs it
    launcher.write_text(launchscript.installed((REPO / "bin" / "nsdash").read_text(), sys.prefix))
    probe = tmp_path / "probe"
    probe.write_text(launcher.read_text().replace(
        "sys.exit(run())", "print(type(sys.modules['nsdash.cli'].__spec__.loader).__name__); sys.exit(run())"))
    out = subprocess.run([sys.executable, "-S", str(probe), "cgls", "--help"], capture_output=True, text=True,
                         env=env, cwd="/")
    assert out.returncode == 0, out.stderr
    loader, rest = out.stdout.split("\n", 1)
    assert loader == "_Loader"
    plain = subprocess.run([sys.executable, "-m", "nsdash", "cgls", "--help"], capture_output=True, text=True,
                           env=env, cwd="/")
    assert rest == plain.stdout
    traced = subprocess.run(["strace", "-f", "-e", "trace=openat", sys.executable, "-S", str(launcher), "cgls",
                             "--help"], capture_output=True, text=True, env=env, cwd="/")
    assert traced.returncode == 0
    opened = [line for line in traced.stderr.splitlines() if "/nsdash/" in line and ".pyc" in line]
    # The launcher's own first import (the package, this module) is found the usual way.
    assert [line.split('"')[1].rsplit("/", 1)[1] for line in opened] == [
        f"__init__.{sys.implementation.cache_tag}.pyc", f"codebundle.{sys.implementation.cache_tag}.pyc"], opened


def test_an_entry_is_used_only_for_the_module_it_names(tmp_path):
    """What a descriptor reused for another bundle would give: pkgx.a's index line pointing at
    pkgx.sub's (unchanged) entry.  pkgx.a is found the usual way, not given that code."""
    _package(tmp_path)
    _build(tmp_path)
    path = Path(codebundle.bundle_path(str(tmp_path / "pkgx")))
    data = path.read_bytes()
    start = len(codebundle.header()) + 4
    n = int.from_bytes(data[start - 4:start], "little")
    lines = {line.split()[0]: line.split()[1:] for line in data[start:start + n].split(b"\n") if line}
    lines[b"pkgx.a"] = lines[b"pkgx.sub"]  # a package in the same directory: passes the path check
    index = b"\n" + b"\n".join(b" ".join([k, *v]) for k, v in lines.items()) + b"\n"
    # (entries are placed from the index's end: they stay valid)
    path.write_bytes(data[:start - 4] + len(index).to_bytes(4, "little") + index + data[start + n:])
    _, got = _probe(tmp_path, ["pkgx.a", "pkgx.sub.b"])
    assert got["pkgx.a"][:2] == ("SourceFileLoader", "a1")
    assert got["pkgx.sub.b"][:2] == ("_Loader", "b1")


def test_a_bundle_others_may_write_or_not_a_file_is_not_used(tmp_path):
    """Whoever may write the bundle chooses every verb's code: one writable by its group or by
    all is not read, and a FIFO in its place is not waited on.  Their modules: the usual way."""
    _package(tmp_path)
    _build(tmp_path)
    path = Path(codebundle.bundle_path(str(tmp_path / "pkgx")))
    for mode in (0o664, 0o646):
        path.chmod(mode)
        installed, got = _probe(tmp_path, ["pkgx.a"])
        assert installed == "False" and got["pkgx.a"][:2] == ("SourceFileLoader", "a1"), oct(mode)
    path.unlink()
    os.mkfifo(path)
    installed, got = _probe(tmp_path, ["pkgx.a"])
    assert installed == "False" and got["pkgx.a"][:2] == ("SourceFileLoader", "a1")


def test_a_link_in_the_bundles_place_is_not_followed(tmp_path):
    """A link put where the bundle goes (a writable __pycache__) may name any file of root's,
    one holding bytes a user chose: not followed, even to a good bundle."""
    _package(tmp_path)
    _build(tmp_path)
    path = Path(codebundle.bundle_path(str(tmp_path / "pkgx")))
    elsewhere = tmp_path / "elsewhere.bin"
    path.rename(elsewhere)
    path.symlink_to(elsewhere)
    installed, got = _probe(tmp_path, ["pkgx.a"])
    assert installed == "False" and got["pkgx.a"][:2] == ("SourceFileLoader", "a1")


@pytest.mark.integration
def test_a_bundle_of_another_user_is_used_only_if_the_package_is_theirs(tmp_path):
    """A bundle another user put in a __pycache__ they may write (forged entries carry the
    sources' stat keys, which anyone can read) is not read by root; one of the package
    directory's owner is (they could replace its sources anyway)."""
    _package(tmp_path)
    _build(tmp_path)
    path = Path(codebundle.bundle_path(str(tmp_path / "pkgx")))
    os.chown(path, 65534, 65534)
    installed, got = _probe(tmp_path, ["pkgx.a"])
    assert installed == "False" and got["pkgx.a"][:2] == ("SourceFileLoader", "a1")
    os.chown(tmp_path / "pkgx", 65534, 65534)
    installed, got = _probe(tmp_path, ["pkgx.a"])
    assert installed == "True" and got["pkgx.a"][:2] == ("_Loader", "a1")


def test_the_bundle_is_written_as_a_new_private_file(tmp_path):
    """Whatever the umask, the bundle is its writer's alone to write (the reader refuses any
    other), and a link put at the temporary file's name is replaced, its target untouched."""
    _package(tmp_path)
    target = tmp_path / "target"
    target.write_text("kept\n")
    path = Path(codebundle.bundle_path(str(tmp_path / "pkgx")))
    path.parent.mkdir()
    os.symlink(target, f"{path}.{os.getpid()}.tmp")
    old = os.umask(0o002)
    try:
        _build(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert target.read_text() == "kept\n"
    assert not os.path.lexists(f"{path}.{os.getpid()}.tmp")
    installed, got = _probe(tmp_path, ["pkgx.a"])
    assert installed == "True" and got["pkgx.a"][:2] == ("_Loader", "a1")


def test_a_module_beside_a_package_or_an_extension_of_its_name_is_not_bundled(tmp_path):
    """pkgx/c.py left beside a package pkgx/c/, pkgx/d.py beside an extension module d.*.so:
    the import system takes the package and the extension, and so does the bundle (it gave
    c.py's and d.py's code)."""
    from importlib.machinery import EXTENSION_SUFFIXES

    _package(tmp_path)
    (tmp_path / "pkgx" / "c").mkdir()
    (tmp_path / "pkgx" / "c.py").write_text("VALUE = 'module c'\n")
    (tmp_path / "pkgx" / "c" / "__init__.py").write_text("VALUE = 'package c'\n")
    (tmp_path / "pkgx" / "d.py").write_text("VALUE = 'module d'\n")
    (tmp_path / "pkgx" / f"d{EXTENSION_SUFFIXES[0]}").write_bytes(b"not an ELF object")  # loading it fails
    time.sleep(0.1)
    _build(tmp_path)
    _, got = _probe(tmp_path, ["pkgx.c", "pkgx.d"])
    assert got["pkgx.c"][:2] == ("_Loader", "package")
    assert got["pkgx.d"] == ("ImportError", "ImportError")  # as without a bundle


def test_a_damaged_index_length_is_not_read(tmp_path):
    """A bundle whose index length is damaged (4 GiB) is refused before any read of it: the
    index was read first, a 4 GiB buffer that failed where memory is bounded."""
    _package(tmp_path)
    _build(tmp_path)
    path = Path(codebundle.bundle_path(str(tmp_path / "pkgx")))
    data = path.read_bytes()
    start = len(codebundle.header()) + 4
    path.write_bytes(data[:start - 4] + (2**32 - 16).to_bytes(4, "little") + data[start:])
    code = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            f"sys.path.insert(0, {str(tmp_path)!r})\nfrom nsdash import codebundle\n"
            "print(codebundle.install('pkgx'))\nimport pkgx.a\nprint(pkgx.a.VALUE)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert (out.returncode, out.stdout) == (0, "False\na1\n"), out.stderr[-2000:]


def test_a_forked_child_never_reads_another_file_on_the_bundles_number(tmp_path):
    """A forked child that closes its descriptors (the remote server's verbs do) and opens a
    file on the bundle's number, one that holds at pkgx.a's place an entry naming pkgx.a and
    its source's stat with other code (a guest's journal, say): pkgx.a is found the usual
    way, that code never runs (it ran)."""
    _package(tmp_path)
    _build(tmp_path)
    data = Path(codebundle.bundle_path(str(tmp_path / "pkgx"))).read_bytes()
    start = len(codebundle.header()) + 4
    n = int.from_bytes(data[start - 4:start], "little")
    line = next(x for x in data[start:start + n].split(b"\n") if x.startswith(b"pkgx.a "))
    at = start + n + int(line.split()[1])
    code_at = at + 2 + int.from_bytes(data[at:at + 2], "little")
    other = marshal.dumps(compile("VALUE = 'f2'\n", str(tmp_path / "pkgx" / "a.py"), "exec", dont_inherit=True))
    assert len(other) == len(marshal.dumps(compile("VALUE = 'a1'\n", str(tmp_path / "pkgx" / "a.py"), "exec",
                                                   dont_inherit=True)))
    forged = tmp_path / "forged"
    forged.write_bytes(data[:code_at] + other + data[code_at + len(other):])
    code = (f"import os, sys\nsys.path.insert(0, {str(tmp_path)!r})\nfrom nsdash import codebundle\n"
            "assert codebundle.install('pkgx')\n"
            "fd = [f for f in sys.meta_path if type(f).__name__ == '_Finder'][0]._fd\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os.close(fd)\n"
            f"    assert os.open({str(forged)!r}, os.O_RDONLY) == fd\n"
            "    import pkgx.a\n"
            "    print(pkgx.a.VALUE, type(pkgx.a.__spec__.loader).__name__, flush=True)\n"
            "    os._exit(0)\n"
            "assert os.waitpid(pid, 0)[1] == 0\n"
            "import pkgx.a\nprint(pkgx.a.VALUE, type(pkgx.a.__spec__.loader).__name__)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["a1 SourceFileLoader", "a1 _Loader"]  # the child's, then the parent's
