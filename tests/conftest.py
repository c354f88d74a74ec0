"""Suite-wide fixtures: tiers by folder, the demo trees, and the leak check.

Tiers: tests/unit (pure, no root), tests/integration, tests/security and
tests/faults (root, real namespaces, cgroups and trees), tests/tui (the
dashboard; root where it drives real machines).  With
NSDASH_REQUIRE_ROOT_TESTS=1 (set by .ci/run) a skipped root test fails the run.

Every root test is wrapped by `leak_check`: mounts, machine cgroups, veth
links, state entries, container processes and loop devices (bound to an image
of the session's) must be the same after the test
as before it, or the test fails naming what leaked.  The cached OS trees are
read-only: a session that changes one (any tree or image in the cache, whoever
used it) fails, naming the paths.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT_TIERS = {"integration", "security", "faults"}
TIER_BY_DIR = {"unit": "unit", "integration": "integration", "security": "security",
               "faults": "faults", "tui": "tui"}
IS_ROOT = os.geteuid() == 0
REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
NSDASH = [PY, "-m", "nsdash"]

_skipped_root: list[str] = []


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO / "tests").parts
        tier = TIER_BY_DIR.get(parts[0]) if len(parts) > 1 else None
        if tier:
            item.add_marker(getattr(pytest.mark, tier))
        if tier in ROOT_TIERS:
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("integration") and not IS_ROOT:
            item.add_marker(pytest.mark.skip(reason="needs root: creates namespaces and cgroups"))


def pytest_runtest_logreport(report):
    if report.skipped and "integration" in report.keywords:
        _skipped_root.append(report.nodeid)


def _host_leftovers() -> set[str]:
    """What nsdash makes host-wide and must take away again: an empty machine.slice (made
    with a session's first machine, gone with the last) and the default state directory
    (every test runs under the session's own NSDASH_STATE_DIR, so the suite never makes it)."""
    from nsdash.system import cgroupfs

    found = set()
    for hierarchy in cgroupfs.detect().hierarchies():
        top = hierarchy / "machine.slice"
        if top.is_dir() and not any(c.is_dir() for c in top.iterdir()):
            found.add(str(top))
    if os.path.isdir("/run/nsdash"):
        found.add("/run/nsdash")
    return found


_leftovers_before: set[str] = set()


def pytest_sessionstart(session):
    if IS_ROOT:
        _leftovers_before.update(_host_leftovers())
    _cache_before.update(cache_manifest(_tree_cache_dir()))


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("NSDASH_SESSION_LEAKED"):
        session.exitstatus = 1
    left = _host_leftovers() - _leftovers_before if IS_ROOT else set()
    if left:
        sys.stderr.write("\nERROR: the test session left host-wide state behind:\n  "
                         + "\n  ".join(sorted(left)) + "\n")
        session.exitstatus = 1
    changed = _cached_trees_changed()
    if changed:
        sys.stderr.write(f"\nERROR: the test session changed {len(changed)} path(s) in the cached trees, "
                         "which must be used read-only (boot with -x or copy the tree):\n  "
                         + "\n  ".join(changed[:30]) + "\n")
        session.exitstatus = 1
    if os.environ.get("NSDASH_REQUIRE_ROOT_TESTS") and _skipped_root:
        sys.stderr.write(f"\nERROR: {len(_skipped_root)} root-only test(s) were skipped; "
                         "CI requires them to run:\n  " + "\n  ".join(_skipped_root[:20]) + "\n")
        session.exitstatus = 1


# ---------------------------------------------------------------- environment

@pytest.fixture(scope="session", autouse=True)
def _state_dir(tmp_path_factory):
    """Each test session keeps machine state in a directory of its own under /run."""
    base = Path("/run/nsdash-test") if IS_ROOT else tmp_path_factory.mktemp("state")
    state = base / f"s{os.getpid()}"
    state.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("NSDASH_STATE_DIR")
    os.environ["NSDASH_STATE_DIR"] = str(state)
    yield state
    if old is None:
        os.environ.pop("NSDASH_STATE_DIR", None)
    else:
        os.environ["NSDASH_STATE_DIR"] = old
    shutil.rmtree(state, ignore_errors=True)
    with contextlib.suppress(OSError):
        base.rmdir()


def run_nsdash(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """Run the real `nsdash` command (as `python -m nsdash`) and capture its output."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run([*NSDASH, *args], timeout=timeout, cwd=REPO, **kw)


def wait_for(predicate, timeout: float = 30.0, step: float = 0.05, what: str = "condition"):
    """Poll PREDICATE until it returns something true and return that; fail the test after TIMEOUT s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


# ---------------------------------------------------------------- machines

def teardown_machine(name: str) -> None:
    """Tear machine NAME down whatever state a test left it in: stop it, kill its
    supervisor if it will not stop, and clean up the orphan that leaves."""
    import signal

    from nsdash.machines import state as st
    from nsdash.machines.orphans import clean_orphan

    d = st.machine_dir(name)
    if st.supervisor_alive(d):
        run_nsdash("terminate", name, timeout=30)
    if st.supervisor_alive(d):
        s = st.read_state(d)
        if s:
            os.kill(s.supervisor, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while st.supervisor_alive(d) and time.monotonic() < deadline:
            time.sleep(0.05)
    if d.exists():
        clean_orphan(name)


def make_machine_cgroup(hierarchy: Path, path: str) -> list[Path]:
    """mkdir -p PATH (under machine.slice) in HIERARCHY, again when machine.slice went between
    two mkdirs (another run's last machine took it away, as nsdash does); the directories made,
    machine.slice left out: drop_machine_slice takes it away as nsdash would."""
    for _ in range(20):
        made = []
        try:
            d = hierarchy
            for part in path.strip("/").split("/"):
                d = d / part
                with contextlib.suppress(FileExistsError):
                    d.mkdir()
                    if part != "machine.slice":
                        made.append(d)
            return made
        except FileNotFoundError:
            for d in reversed(made):
                with contextlib.suppress(OSError):
                    d.rmdir()
    raise AssertionError(f"machine.slice kept going away under {hierarchy}")


def drop_machine_slice(hierarchy: Path) -> None:
    """machine.slice gone from HIERARCHY if it holds no machine, as the last machine's teardown
    leaves it; while another run's machine holds it, it stays."""
    with contextlib.suppress(OSError):
        (hierarchy / "machine.slice").rmdir()


def console_log(name: str) -> str:
    """What machine NAME's console wrote so far (its console.log; "" while there is none)."""
    from nsdash.machines import state as st

    try:
        return (st.machine_dir(name) / st.CONSOLE_LOG).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def alive(pid: int) -> bool:
    """PID runs (gone or a zombie is not alive)."""
    try:
        with open(f"/proc/{pid}/stat", errors="surrogateescape") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def catches(pid: int, sig: int) -> bool:
    """PID has a handler for SIG (its SigCgt mask): a shell's trap is set.  A container's init
    ignores a signal it has no handler for, even from the host, so a test that signals its trap
    waits for this first."""
    try:
        with open(f"/proc/{pid}/status") as f:
            mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    except FileNotFoundError:
        return False
    return bool(mask >> (sig - 1) & 1)


@pytest.fixture
def detached(machine_name):
    """start(*spawn_args, name=...) runs `nsdash spawn --detach`; every machine is torn down after."""
    names: list[str] = []

    def start(*args: str, name: str = machine_name, check: bool = True):
        names.append(name)
        r = run_nsdash("spawn", "--detach", "-M", name, *args)
        if check:
            assert r.returncode == 0, r.stderr
        return r

    yield start
    for n in names:
        teardown_machine(n)


# ---------------------------------------------------------------- trees
#
# The cached trees (nsdash.demo.trees) are shared by every test session on the
# machine and are read-only by contract: a test boots one with -x/--ephemeral or
# works on a copy.  Two manifests are compared when the session ends
# (pytest_sessionfinish above), so a test that changes a cached tree fails the run
# instead of making later runs pass or fail depending on what it left:
# - at session start, of every finished tree and disk image in the cache, whoever
#   uses it (a fixture, a subprocess, a helper calling trees.ensure): each tree's
#   top-level entries and all of its etc/, where a plain spawn writes
#   (resolv.conf, localtime, machine-id); cheap, a few hundred entries a tree;
# - when a session first asks for a tree through cached_tree(): all of it.
# A tree or image first seen at the end was built during the session (CI starts
# with an empty cache): not a change.  One gone at the end that a newer build of
# the same name replaced (another checkout's recipe) is not one either.

_manifests: dict[Path, dict[str, tuple]] = {}
_cache_before: dict[str, dict[str, tuple]] = {}
SHALLOW_BELOW = frozenset({"etc"})  # the top-level directories a session-start manifest walks whole


def _stat_entry(path: str) -> tuple:
    st = os.lstat(path)
    target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
    return (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, target)


def tree_manifest(root: Path, deep: frozenset[str] | None = None, entry=_stat_entry) -> dict[str, tuple]:
    """ENTRY of every path under ROOT (itself included), by path relative to ROOT; by default
    type and mode, owner, size, mtime, symlink target.  With DEEP, only ROOT's own entries and
    all below those of its directories named in DEEP."""
    found = {".": entry(str(root))}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, root)] = entry(path)
        if deep is not None and dirpath == str(root):
            dirnames[:] = [d for d in dirnames if d in deep]
    return found


def manifest_changes(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    """What differs between two manifests, one line per path (added, removed, changed)."""
    fields = ("mode", "uid", "gid", "size", "mtime", "symlink target")
    lines = [f"added {p}" for p in sorted(after.keys() - before.keys())]
    lines += [f"removed {p}" for p in sorted(before.keys() - after.keys())]
    for p in sorted(before.keys() & after.keys()):
        if before[p] != after[p]:
            diff = [f for f, a, b in zip(fields, before[p], after[p], strict=True) if a != b]
            lines.append(f"changed {p} ({', '.join(diff)})")
    return lines


def cached_tree(name: str) -> Path:
    """The cached tree NAME (built if missing), its manifest noted for the end-of-session check."""
    from nsdash.demo import trees

    path = trees.ensure(name)
    if path not in _manifests:
        _manifests[path] = tree_manifest(path)
    return path


_CACHE_KEY = re.compile(r"(?P<name>.+)-[0-9a-f]{12}(?P<suffix>\.raw)?")  # trees.tree_path, trees.image_path


def _tree_cache_dir() -> Path:
    from nsdash.demo import trees

    return trees.CACHE


def cache_entries(cache: Path) -> list[Path]:
    """The finished trees (NAME-KEY directories) and disk images (images/NAME-KEY.raw) in CACHE;
    builds under way (dot names) are not entries yet."""
    found: list[Path] = []
    with contextlib.suppress(OSError):
        for child in sorted(cache.iterdir()):
            if _CACHE_KEY.fullmatch(child.name) and not child.name.startswith("."):
                found.append(child)
            elif child.is_dir() and not child.is_symlink() and not child.name.startswith("."):
                found += [f for f in sorted(child.iterdir())
                          if _CACHE_KEY.fullmatch(f.name) and not f.name.startswith(".")]
    return found


def cache_manifest(cache: Path) -> dict[str, dict[str, tuple]]:
    """Each cache entry's shallow manifest (tree_manifest with SHALLOW_BELOW), keyed by its path."""
    out = {}
    for entry in cache_entries(cache):
        with contextlib.suppress(FileNotFoundError):  # replaced by another session's build meanwhile
            out[str(entry)] = tree_manifest(entry, SHALLOW_BELOW)
    return out


def cache_changes(before: dict[str, dict[str, tuple]], after: dict[str, dict[str, tuple]]) -> list[str]:
    """What changed in the cache entries of BEFORE, one line per path, by AFTER.  Entries only
    in AFTER were built meanwhile; one missing from AFTER counts as removed unless a build of
    the same name with another key is in AFTER (a newer recipe replaced it)."""
    def name(path: str) -> str:
        m = _CACHE_KEY.fullmatch(os.path.basename(path))
        return os.path.join(os.path.dirname(path), m["name"] + (m["suffix"] or "")) if m else path

    rebuilt = {name(p) for p in after.keys() - before.keys()}
    lines = []
    for path, manifest in before.items():
        if path in after:
            lines += [f"{path}: {line}" for line in manifest_changes(manifest, after[path])]
        elif name(path) not in rebuilt:
            lines.append(f"{path}: removed")
    return lines


def _cached_trees_changed() -> list[str]:
    """Both checks' findings, each path once (the first-use check sees deeper, the session-start
    one sees every tree)."""
    shallow = cache_manifest(_tree_cache_dir())
    deep = {str(path): manifest for path, manifest in _manifests.items()}
    deep_now = {p: tree_manifest(Path(p)) for p in deep if os.path.lexists(p)}
    changes = cache_changes(deep, shallow | deep_now)  # shallow: to see a rebuild by another name
    changes += cache_changes(_cache_before, shallow)
    return list(dict.fromkeys(changes))


@pytest.fixture(scope="session")
def tree_cache():
    """cached_tree itself, for tests parametrized over trees; use the trees read-only."""
    if not IS_ROOT:
        pytest.skip("needs root")
    return cached_tree


@pytest.fixture(scope="session")
def busybox_cache() -> Path:
    """The cached BusyBox tree; use it read-only (with --ephemeral) or through busybox_tree."""
    if not IS_ROOT:
        pytest.skip("needs root")
    return cached_tree("busybox")


@pytest.fixture
def busybox_tree(busybox_cache, tmp_path, machine_name) -> Path:
    """A private copy of the BusyBox demo tree (about 2 MB), fresh for each test.

    The copy's directory is named after `machine_name`, so the default machine
    name (the directory's last component) is tagged for the leak check.
    """
    dest = tmp_path / machine_name
    subprocess.run(["cp", "-a", str(busybox_cache), str(dest)], check=True)
    return dest


@pytest.fixture
def image_dir(tmp_path, monkeypatch) -> Path:
    """An empty image directory of the test's own: NSDASH_IMAGE_PATH names it alone."""
    d = tmp_path / "machines"
    d.mkdir()
    monkeypatch.setenv("NSDASH_IMAGE_PATH", str(d))
    return d


@pytest.fixture(scope="session")
def debian_cache() -> Path:
    """The cached Debian tree; use it read-only (with --ephemeral) or through debian_tree."""
    if not IS_ROOT:
        pytest.skip("needs root")
    return cached_tree("debian")


@pytest.fixture(scope="session")
def debian_tree(debian_cache, tmp_path_factory) -> Path:
    """A writable copy of the Debian tree shared by the session's tests."""
    dest = tmp_path_factory.mktemp("trees") / "debian"
    subprocess.run(["cp", "-a", "--reflink=auto", str(debian_cache), str(dest)], check=True)
    return dest


# ---------------------------------------------------------------- leak check
#
# Several test sessions may run at once on a developer's machine, so the check
# only counts what this session can own: names carrying the session TAG
# (machine names from the `machine_name` fixture, their cgroups, veth links and
# processes) and mounts under this session's temporary or state directories.

TAG = f"t{os.getpid()}"
_names = iter(range(1, 1 << 30))


@pytest.fixture
def machine_name() -> str:
    """A machine name unique to this test and tagged with the session, for the leak check."""
    return f"{TAG}-{next(_names):x}"


def _ours(text: str, roots: tuple[str, ...]) -> bool:
    return TAG in text or any(text.startswith(r) for r in roots)


def _session_roots() -> tuple[str, ...]:
    roots = [os.environ.get("NSDASH_STATE_DIR", "/run/nsdash")]
    base = os.environ.get("NSDASH_TEST_TMPBASE")
    if base:
        roots.append(base)
    return tuple(roots)


def _mounts(roots) -> set[str]:
    with open("/proc/self/mountinfo", errors="surrogateescape") as f:
        return {m for m in (line.split()[4] for line in f) if _ours(m, roots)}


def _machine_cgroups() -> set[str]:
    from nsdash.system import cgroupfs

    found = set()
    for hierarchy in cgroupfs.detect().hierarchies():
        top = hierarchy / "machine.slice"
        if top.is_dir():
            found.update(str(c) for c in top.iterdir() if c.is_dir() and TAG in c.name)
    return found


def _links() -> set[str]:
    return {p.name for p in Path("/sys/class/net").iterdir()
            if p.name.startswith(("ve-", "vb-", "vz-")) and TAG in p.name}


def _journal_links(roots) -> set[str]:
    """Links in the host's /var/log/journal into this session's trees: --link-journal's try-guest
    and auto leave one behind on purpose (as systemd-nspawn does), so a test that boots a tree of
    its own with them removes it; one left dangles once the tree is gone."""
    dirs = tuple(r.rstrip("/") + "/" for r in roots)
    found = set()
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir("/var/log/journal"):
            if entry.is_symlink() and os.readlink(entry.path).startswith(dirs):
                found.add(entry.name)
    return found


def _loop_devices(roots) -> set[str]:
    """'loopN BACKING' for every bound loop device whose backing file is this session's (an
    image under its temporary directory, or named with its tag; "(deleted)" copies too)."""
    found = set()
    dirs = tuple(r.rstrip("/") + "/" for r in roots)  # pytest-63 is not pytest-637
    for dev in Path("/sys/block").glob("loop*"):
        try:
            backing = (dev / "loop" / "backing_file").read_text().rstrip("\n")
        except OSError:
            continue  # not bound
        if _ours(backing, dirs):
            found.add(f"{dev.name} {backing}")
    return found


def _state_entries() -> set[str]:
    state = Path(os.environ.get("NSDASH_STATE_DIR", "/run/nsdash")) / "machines"
    return {p.name for p in state.iterdir()} if state.is_dir() else set()


def _container_procs() -> set[str]:
    """'PID MACHINE' for every live process in one of this session's machine cgroups."""
    from nsdash.launcher import names

    procs = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cgroup", errors="surrogateescape") as f:  # a guest's cgroup names: any bytes
                text = f.read()
        except OSError:
            continue
        if "machine.slice" in text and TAG in text and not _reaped_by_host_init(pid):
            machine = next(filter(None, (names.machine_from_scope(line.split(":", 2)[-1])
                                         for line in text.splitlines())), "?")
            procs.add(f"{pid} {machine}")
    return procs


def _reaped_by_host_init(pid: str) -> bool:
    """A zombie handed to the host's init: dead already, only waiting for init to reap it.

    The kernel keeps a zombie in its cgroup until it is reaped, and this
    machine's PID 1 (not systemd) reaps at its own pace; that is not a leak.
    """
    try:
        with open(f"/proc/{pid}/stat", errors="surrogateescape") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return True
    return fields[0] == "Z" and fields[1] == "1"


def _about(procs) -> str:
    """What a leaked process is (state, parent, command line, cgroups), for the failure message."""
    out = []
    for entry in sorted(procs):
        pid = entry.split(" ", 1)[0]
        try:
            with open(f"/proc/{pid}/stat", errors="surrogateescape") as f:
                state, ppid = f.read().rsplit(")", 1)[1].split()[:2]
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read(200).replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/cgroup", errors="surrogateescape") as f:
                groups = sorted({line.split(":", 2)[-1] for line in f.read().splitlines()})
        except OSError as e:
            out.append(f"{pid}: {e}")
            continue
        out.append(f"{pid}: state {state} parent {ppid} {cmd!r} in {groups}")
    return ("; " + "; ".join(out)) if out else ""


def leak_snapshot() -> dict[str, set[str]]:
    roots = _session_roots()
    return {"mounts": _mounts(roots), "cgroups": _machine_cgroups(), "links": _links(),
            "journal links": _journal_links(roots), "state": _state_entries(),
            "processes": _container_procs(), "loop devices": _loop_devices(roots)}


def leaks_since(before: dict[str, set[str]], wait: float = 5.0) -> dict[str, set[str]]:
    """What exists now that did not before; polls briefly since teardown is asynchronous."""
    deadline = time.monotonic() + wait
    while True:
        now = leak_snapshot()
        leaked = {k: now[k] - before[k] for k in now if now[k] - before[k]}
        # A machine that ran before the test and still runs (a module's booted machine) starts
        # and ends processes by itself: only processes of machines that came or went count.
        still = before["state"] & now["state"]
        procs = {p for p in leaked.get("processes", set()) if p.split(" ", 1)[-1] not in still}
        if procs:
            leaked["processes"] = procs
        else:
            leaked.pop("processes", None)
        if not leaked or time.monotonic() > deadline:
            return leaked
        time.sleep(0.1)


@pytest.fixture(scope="session", autouse=True)
def _session_leak_check(tmp_path_factory, _state_dir):
    """Nothing of this session's may remain when it ends.

    It uses _state_dir so that it ends first: afterwards NSDASH_STATE_DIR no longer
    names this session's state, and the check would count another run's machines."""
    os.environ["NSDASH_TEST_TMPBASE"] = str(tmp_path_factory.getbasetemp())
    if not IS_ROOT:
        yield
        return
    empty: dict[str, set[str]] = {k: set() for k in ("mounts", "cgroups", "links", "journal links",
                                                     "state", "processes", "loop devices")}
    yield
    leaked = leaks_since(empty)
    if leaked:
        sys.stderr.write(f"\nERROR: the test session left behind: {leaked}\n")
        os.environ["NSDASH_SESSION_LEAKED"] = "1"


def _is_subreaper() -> bool:
    """Whether this (pytest's) process is a child subreaper (prctl PR_GET_CHILD_SUBREAPER)."""
    import ctypes

    flag = ctypes.c_int(0)
    ctypes.CDLL(None, use_errno=True).prctl(37, ctypes.byref(flag), 0, 0, 0)
    return bool(flag.value)


@pytest.fixture
def reaper():
    """This process a child subreaper while the test runs: what a killed supervisor orphans
    becomes our child and is reaped here, not late by the host's init (a zombie still shows
    in its machine's cgroup); afterwards it is an ordinary process again."""
    from nsdash.system import syscalls

    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    try:
        yield
    finally:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 0)


@pytest.fixture(autouse=True)
def leak_check(request):
    if not IS_ROOT or not request.node.get_closest_marker("integration"):
        yield
        return
    before = leak_snapshot()
    yield
    # Container.start makes its process a child subreaper, as a supervisor must be; a test that
    # runs a container in pytest's own process leaves pytest so, and every later test's orphans
    # (a killed supervisor's, ssh's masters) would become pytest's zombies and children.
    if _is_subreaper():
        from nsdash.system import syscalls

        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 0)
    leaked = leaks_since(before)
    if leaked:
        pytest.fail(f"test left behind: {leaked}{_about(leaked.get('processes', ()))}", pytrace=False)
