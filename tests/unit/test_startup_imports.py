"""Each verb imports only what it needs: checked on the modules a real run imports, not on time.

The verbs run as users run them (bin/nsdash, Python with -S) under `-X importtime`,
which names every module imported; the spawn path's modules are imported in a
fresh interpreter.  Timing is bench/'s business (bench_verbs.py, bench_spawn.py).
"""

import contextlib
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Never on a read-only verb's path (the dashboard's, D-Bus clients', code generators').
HEAVY = {"textual", "rich", "asyncio", "dbus_fast", "dataclasses", "inspect", "typing", "shutil",
         "tempfile", "subprocess", "logging", "socket", "selectors", "threading",
         "argparse", "gettext"}  # nsdash.cli.quickparse reads their command lines
# Never imported by `nsdash spawn -D TREE /bin/true`, at start or while it runs (checked on a
# real spawn in tests/integration/test_spawn.py): HEAVY (threading too: the supervisor starts
# threads only for a systemd guest's health check and on kernels without pidfd), json (it
# imports re), importlib, hashlib (only --system-call-filter and -U pick), libseccomp's
# binding and ctypes.util (only when the compiled filter is not cached), datetime, netlink,
# argparse, shlex.  re, warnings and ipaddress still come with pathlib, in which the spec,
# the plan and the state directory's API are written.
SPAWN_NEVER = HEAVY | {"json", "importlib", "hashlib", "pyseccomp", "ctypes.util", "datetime", "pyroute2",
                       "argparse", "shlex", "base64"}


# Not on the paths of the verbs that compare with a C peer either (bench_verbs.py): each costs a
# millisecond or more of a run that must stay within 3x of systemd-cgls or systemd-cgtop.
# argparse: nsdash.cli.quickparse; pathlib: cgroupfs keeps its mounts as strings;
# re and enum: no regular expressions, no signal module; typing: nsdash.system.records.
_LEAN = {"argparse", "gettext", "locale", "pathlib", "re", "enum", "signal", "urllib", "ipaddress",
         "fnmatch", "contextlib", "importlib", "warnings", "json"}
# cgtop: resource only when the sampler needs more open files than the soft limit leaves;
# types for one name the sampler takes from type.__dict__; heapq's functions come from _heapq;
# the launcher's booleans only for --recursive other than yes, text only for a path to escape.
# os: posix's own functions and nsdash.system.bareos (os brings _collections_abc's 26 classes);
# stat: bareos's S_IF* (stat brings _stat).
_NO_OS = {"os", "posixpath", "_collections_abc", "stat"}
LEAN_VERBS = {"cgls": _LEAN | _NO_OS | {"collections", "functools", "nsdash.launcher.validate", "nsdash.machines"},
              "list": _NO_OS, "status": _NO_OS,
              "cgtop": _LEAN | _NO_OS | {"collections", "functools", "nsdash.machines",  # -M reads machine state
                                "resource", "types", "heapq", "nsdash.launcher", "nsdash.system.text"}}
# `journal -M M -n 20` against journalctl -D (bench_verbs.py): systemd-python's _reader is its
# floor; the rest reads paths as strings (no pathlib), state.json with system/jsontext (no json),
# files confined without ctypes where no symlink is on the way (system/confined), and formats
# with str methods (no re).  datetime: _reader's C API is served by _datetime itself.
JOURNAL_NEVER = _LEAN | _NO_OS | {"collections", "functools", "ctypes", "datetime", "struct", "heapq", "fnmatch",
                         "typing", "nsdash.launcher", "nsdash.system.syscalls", "nsdash.machines.identity"}


def _files_for_every_cgroup() -> None:
    """As many open files as this process may have (the kernel's ceiling where it may raise its
    hard limit), so that the sampler keeps every counter of the host open without asking for
    more (which imports resource): the cgroups of whatever else runs there are not the verb's cost."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with open("/proc/sys/fs/nr_open") as f:
        ceiling = int(f.read())
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, ceiling))
    except (ValueError, OSError):  # no CAP_SYS_RESOURCE
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _imported(argv: list[str], env_extra: dict[str, str]) -> set[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), **env_extra)
    env.pop("NSDASH_DEBUG", None)
    out = subprocess.run([sys.executable, "-S", "-X", "importtime", str(REPO / "bin" / "nsdash"), *argv],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=60,
                         stdin=subprocess.DEVNULL,  # (_watch ends at its stdin's end)
                         preexec_fn=_files_for_every_cgroup)
    names = {line.split("|")[2].strip() for line in out.stderr.splitlines()
             if line.startswith("import time:") and "imported package" not in line}
    assert "nsdash.cli" in names, out.stderr[-2000:]
    return names


@pytest.mark.parametrize("argv", [["cgls"], ["cgtop", "-b", "-n", "1"], ["list"], ["status", "nosuch"],
                                  ["journal", "-D", "{empty}", "-n", "20"]],
                         ids=["cgls", "cgtop", "list", "status", "journal"])
def test_read_only_verbs_import_nothing_heavy(argv, tmp_path, monkeypatch):
    empty = tmp_path / "journal"
    empty.mkdir()
    argv = [a.replace("{empty}", str(empty)) for a in argv]
    names = _imported(argv, {"NSDASH_STATE_DIR": str(tmp_path / "state")})
    lean = LEAN_VERBS.get(argv[0], set())
    heavy = {n for n in names if n.split(".")[0] in HEAVY | lean or n.startswith(tuple(m + "." for m in lean))
             or n in lean}
    assert heavy == set()


def test_spawn_path_imports_no_code_generators():
    """What a foreground spawn imports before its first clone, and after (the engine, teardown)."""
    code = ("import sys, nsdash.cli.spawn, nsdash.machines.run, nsdash.launcher.container; "
            "print('\\n'.join(sys.modules))")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    loaded = set(out.stdout.split())
    assert spawn_never(loaded) == set()
    assert "nsdash.system.netlink" not in loaded


def test_default_properties_need_no_re():
    """The TasksMax= every spawn's cgroup gets is parsed without re (only pathlib brings it today)."""
    code = ("import sys; from nsdash.launcher import properties as p; "
            "print(p.dbus_value(p.parse('TasksMax=16384')), 're' in sys.modules)")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.stdout.split("\n")[0] == "('TasksMax', 't', 16384) False"


def spawn_never(modules: set[str]) -> set[str]:
    """The modules in MODULES that a plain spawn must not import (SPAWN_NEVER, by package)."""
    return {m for m in modules if m in SPAWN_NEVER or m.split(".")[0] in SPAWN_NEVER}


OTHER_RECORD = ("# This is private data. Do not parse.\nNAME=other\nSCOPE=machine-other.scope\nSERVICE=othermgr\n"
                "ROOT=/srv/other\nID=f026afe017ac46f4a73925c496e28e59\nLEADER=4242\nCLASS=vm\n")


def test_machined_machines_are_read_from_its_state_files(tmp_path):
    """sd_get_machine_names()'s rule: a file per machine in /run/systemd/machines, unit:* links
    and files being written aside; class and service from the file, as ListMachines gives them."""
    from nsdash.machines import registry

    state = tmp_path / "machines"
    assert registry.machined_machines(str(state)) == []  # no directory: machined never ran
    state.mkdir()
    (state / "unit:machine-other.scope").symlink_to("other")
    (state / ".#otherXYZ").write_text("NAME=half\n")
    assert registry.machined_machines(str(state)) == []
    (state / "other").write_text(OTHER_RECORD)
    (state / "bare").write_text("NAME=bare\nCLASS=container\n")
    got = [(m.name, m.class_, m.service, m.source) for m in registry.machined_machines(str(state))]
    assert got == [("bare", "container", "-", "machined"), ("other", "vm", "othermgr", "machined")]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a mount namespace where machined holds a machine")
@pytest.mark.parametrize("argv", [["list"], ["list", "-o", "json"], ["status", "other"]])
def test_list_and_status_of_machined_machines_need_no_dbus_client(argv, tmp_path):
    """Where machined holds machines, list and status read its state files: no D-Bus round trip,
    so no D-Bus client (dbus-fast, socket, typing) imported.  The machine is in a private /run."""
    script = ("mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/machines && "
              f"printf %s '{OTHER_RECORD}' > /run/systemd/machines/other && "
              'exec "$@"')
    env = dict(os.environ, PYTHONPATH=str(REPO), NSDASH_STATE_DIR=str(tmp_path / "state"))
    env.pop("NSDASH_DEBUG", None)
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                          sys.executable, "-S", "-X", "importtime", str(REPO / "bin" / "nsdash"), *argv],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "other" in out.stdout and ("othermgr" in out.stdout or "Service: othermgr" in out.stdout), out.stdout
    names = {line.split("|")[2].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "nsdash.cli.machinectl" in names
    assert {n for n in names if n.split(".")[0] in {"dbus_fast", "socket", "typing"}
            or n in {"nsdash.system.dbus", "nsdash.system.dbuswire", "nsdash.machines.machined"}} == set()


SCOPE_FILE = ("# This is a transient unit file, created programmatically via the systemd API. Do not edit.\n"
              "[Scope]\nSlice=machine.slice\nDelegate=yes\nTasksMax=77\nMemoryMax=100M\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a mount namespace with a private /run")
def test_status_of_a_machine_in_a_systemd_scope_reads_its_unit_files_not_dbus(tmp_path):
    """On a host booted with systemd whose cgroup files do not hold the limits (no controllers),
    status takes them from the scope's transient unit file (machines/unitfiles.py): no D-Bus
    client imported.  The machine is an nsdash state entry whose lock a sleep holds (its leader);
    the systemd host is a private /run, its cgroup does not exist (no controllers there either)."""
    from nsdash.machines import state as st

    entry = tmp_path / "state" / "machines" / "filed"
    entry.mkdir(parents=True)
    (entry / st.LOCK_FILE).touch()
    script = ("mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system /run/systemd/transient && "
              f"printf %s '{SCOPE_FILE}' > /run/systemd/transient/machine-filed.scope && "
              f"(flock 9 && exec sleep 30) 9>{entry / st.LOCK_FILE} & leader=$! && "
              f"while flock -n {entry / st.LOCK_FILE} true; do sleep 0.01; done && "
              "printf '{\"name\":\"filed\",\"root\":\"/\",\"leader\":%s,\"cgroup\":"
              "\"/nsdash-test-nosuch.slice/machine-filed.scope\",\"supervisor\":%s,\"started\":"
              f"\"2026-01-01T00:00:00Z\",\"since\":\"2026-01-01T00:00:00Z\"}}' $leader $leader > {entry}/state.json && "
              '"$@"; rc=$?; kill $leader; wait; exit $rc')
    env = dict(os.environ, PYTHONPATH=str(REPO), NSDASH_STATE_DIR=str(tmp_path / "state"))
    env.pop("NSDASH_DEBUG", None)
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                          sys.executable, "-S", "-X", "importtime", str(REPO / "bin" / "nsdash"), "status", "filed"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Limits: MemoryMax=104857600 TasksMax=77" in out.stdout, out.stdout
    names = {line.split("|")[2].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "nsdash.machines.unitfiles" in names
    assert {n for n in names if n.split(".")[0] in {"dbus_fast", "socket", "typing"}
            or n in {"nsdash.system.dbus", "nsdash.system.dbuswire"}} == set()

def test_systemctl_list_units_imports_no_journal_and_no_argparse(tmp_path):
    """dbus-fast's message modules (and typing, socket with them) are systemctl's floor; the journal
    locator (status's log lines), argparse, datetime and ctypes (system/syscalls: the bus socket is
    found by system/confined's walk) are not on list-units' path."""
    names = _imported(["systemctl", "-M", "nosuchmachine", "list-units"], {"NSDASH_STATE_DIR": str(tmp_path)})
    assert "nsdash.cli.systemctl" in names
    assert {n for n in names if n.split(".")[0] in {"argparse", "gettext", "datetime", "asyncio", "ctypes"} | _NO_OS
            or n.startswith(("nsdash.journal", "nsdash.inside.unitlog", "nsdash.system.syscalls"))} == set()


def test_systemctl_status_reads_no_preset_files_module(tmp_path):
    """`systemctl status` shows a unit file's preset as the bus gives it: the module that reads
    preset files (list-unit-files' PRESET column) is not loaded for it (issue 16)."""
    names = _imported(["systemctl", "-M", "nosuchmachine", "status", "dbus.service"],
                      {"NSDASH_STATE_DIR": str(tmp_path)})
    assert "nsdash.inside.render" in names
    assert "nsdash.inside.presets" not in names
    assert names & _NO_OS == set()



def test_the_far_watch_imports_no_dashboard(tmp_path):
    """`nsdash _watch`, the far side of the dashboard over -H (one per dashboard and host), reads
    the host with the dashboard's readers (nsdash.monitor.host), not with the dashboard's toolkit."""
    names = _imported(["_watch", "--interval", "1"], {"NSDASH_STATE_DIR": str(tmp_path)})
    assert "nsdash.cli.watch" in names and "nsdash.monitor.host" in names
    assert {n for n in names if n.split(".")[0] in {"textual", "rich"} or n.startswith("nsdash.tui")} == set()


def _journal_machine(tmp_path, boots: int = 1):
    """Machine "web": a state entry and its tree's journal of 30 entries over BOOTS boots
    (journalctl's directory of it, and the environment that names the state directory)."""
    from nsdash.journal.export import export_entry, journal_remote, write_journal
    from nsdash.machines import state as st

    if journal_remote() is None:
        pytest.fail("systemd-journal-remote is needed (make apt installs it)")
    mid = "08c30baea87644339ade293f4e706ff1"
    ids = [f"5b1d2c9a0e8f4e1aa0b1c2d3e4f5060{b}" for b in range(boots)]
    journal = tmp_path / "tree" / "var/log/journal" / mid
    journal.mkdir(parents=True)
    base = {"_HOSTNAME": "web", "SYSLOG_IDENTIFIER": "app", "_PID": "7", "PRIORITY": "6"}
    write_journal(journal / "system.journal", [
        export_entry({**base, "MESSAGE": f"line {i}"}, 1_700_000_000_000_000 + i * 10**8, 1 + i,
                     ids[i * boots // 30]) for i in range(30)])
    entry = tmp_path / "state" / "machines" / "web"
    entry.mkdir(parents=True)
    st.write_state(entry, st.MachineState(name="web", root=str(tmp_path / "tree"), leader=None, cgroup="/x",
                                          supervisor=1, started="2026-01-01T00:00:00Z",
                                          since="2026-01-01T00:00:00Z", uuid=mid))
    return journal, {"NSDASH_STATE_DIR": str(tmp_path / "state"), "TZ": "UTC"}


@pytest.mark.parametrize("argv", [["-n", "20"], ["--list-boots"]], ids=["tail", "list-boots"])
def test_journal_of_a_machine_imports_only_its_floor(argv, tmp_path):
    """`journal -M NAME -n 20` and `--list-boots` as bench_verbs runs them, on a machine's state
    entry and its tree's journal: print what journalctl -D prints, importing none of
    JOURNAL_NEVER (--list-boots no console-log reader: its pathlib, os, re and ctypes)."""
    journal, env = _journal_machine(tmp_path, boots=3)
    names = _imported(["journal", "-M", "web", *argv], env)
    assert "systemd._reader" in names and "nsdash.journal.reader" in names
    assert {n for n in names if n in JOURNAL_NEVER or n.split(".")[0] in JOURNAL_NEVER
            or n.startswith(tuple(m + "." for m in JOURNAL_NEVER))} == set()
    assert "nsdash.journal.console" not in names
    ours = subprocess.run([sys.executable, "-S", str(REPO / "bin" / "nsdash"), "journal", "-M", "web", *argv],
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO), **env))
    theirs = subprocess.run(["journalctl", "-D", str(journal), *argv, "--no-pager"], capture_output=True,
                            text=True, timeout=60, env=dict(os.environ, TZ="UTC"))
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout
    assert ours.stdout.count(": line ") == 20 if argv[0] == "-n" else ours.stdout.count("\n") == 4


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a leader chrooted into the machine's tree")
@pytest.mark.parametrize("argv", [["list"], ["list", "-o", "json"], ["status", "tree"]])
def test_list_and_status_read_os_release_without_ctypes(argv, tmp_path):
    """A machine's os-release is printed (OS, VERSION; status's OS line) and is, in nearly every
    tree, etc/os-release -> ../usr/lib/os-release: read confined (through /proc/LEADER/root) by
    system/confined's walk, which follows such a symlink itself, so neither ctypes nor
    nsdash.system.syscalls is imported.  The leader is a Python chrooted into the tree, holding
    the entry's lock as a supervisor does."""
    from nsdash.machines import state as st

    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "usr/lib").mkdir(parents=True)
    (tree / "usr/lib/os-release").write_text('ID=walkos\nVERSION_ID=16\nPRETTY_NAME="Walk OS 16"\n')
    (tree / "etc/os-release").symlink_to("../usr/lib/os-release")
    entry = tmp_path / "state" / "machines" / "tree"
    entry.mkdir(parents=True)
    lock = entry / st.LOCK_FILE
    lock.touch()
    code = (f"import fcntl, os, sys; fd = os.open({str(lock)!r}, os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); "
            f"os.chroot({str(tree)!r}); os.chdir('/'); print('ok', flush=True); sys.stdin.read()")
    leader = subprocess.Popen([sys.executable, "-S", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert leader.stdout is not None and leader.stdout.readline() == "ok\n"
        st.write_state(entry, st.MachineState(name="tree", root=str(tree), leader=leader.pid, cgroup="/x",
                                              supervisor=leader.pid, started="2026-01-01T00:00:00Z",
                                              since="2026-01-01T00:00:00Z"))
        env = {"NSDASH_STATE_DIR": str(tmp_path / "state")}
        names = _imported(argv, env)
        assert {n for n in names if n.split(".")[0] == "ctypes" or n == "nsdash.system.syscalls"} == set()
        out = subprocess.run([sys.executable, "-S", str(REPO / "bin" / "nsdash"), *argv], capture_output=True,
                             text=True, timeout=60, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO), **env))
        assert out.returncode == 0, out.stderr
        assert ("OS: Walk OS 16" if argv[0] == "status" else "walkos") in out.stdout, out.stdout
    finally:
        leader.communicate(timeout=10)  # its stdin's end: it leaves


def test_datetime_after_the_journal_reader_is_datetimes():
    """The reader lets _datetime stand in for datetime (systemd-python imports it for its C API
    alone): whatever imports datetime afterwards finds every public name datetime.py exports."""
    code = ("import sys; import nsdash.journal.reader; import datetime as d; "
            "print(d is sys.modules['_datetime'], "
            "sorted(n for n in ('date', 'datetime', 'time', 'timedelta', 'timezone', 'tzinfo', 'MINYEAR', "
            "'MAXYEAR', 'UTC') if not hasattr(d, n)), "
            "d.datetime.fromtimestamp(86400, d.timezone.utc).isoformat(), d.datetime.strptime('2026-01-02', '%Y-%m-%d').day)")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path])), timeout=60)
    assert out.stdout.split(" ", 1) == ["True", "[] 1970-01-02T00:00:00+00:00 2\n"], out.stderr


# Not loaded before the dashboard's first full frame (issue 16: within 250 ms of start): the
# screens and widgets no first frame shows (the machine view with its console pane and pyte,
# images, the forms, units, debugging) and the libraries only they use; by package.
DASHBOARD_NOT_BEFORE_FIRST_FRAME = {
    "nsdash.tui.screens.machine", "nsdash.tui.screens.images", "nsdash.tui.screens.confirm",
    "nsdash.tui.screens.limits", "nsdash.tui.screens.units", "nsdash.tui.screens.debugging",
    "nsdash.tui.screens.image_forms", "nsdash.tui.screens.spawn", "nsdash.tui.spawnform",
    "nsdash.tui.widgets.console_pane", "nsdash.tui.widgets.image_list", "nsdash.tui.console",
    "nsdash.tui.remote", "nsdash.inside", "nsdash.journal", "nsdash.launcher.spec",
    "nsdash.launcher.properties", "textual.widgets._sparkline",
    "pyte", "psutil", "pyroute2", "dbus_fast", "systemd", "statistics",
    "importlib.metadata",  # textual.__version__ reads it: 4% of the start (nsdash.tui.rows.pinned_installed)
    # what textual.app imports for file deliveries and type names (nsdash.tui.standins)
    "uuid", "platform", "mimetypes", "platformdirs", "textual.types", "textual.widgets._select",
    "textual.widgets._directory_tree", "textual.widgets._placeholder", "rich.pretty",
}

# The real app at 160x48 (headless: Textual's own driver), its real poller on this host: the
# modules loaded when the first snapshot's frame is painted, the moment gcpause.release marks.
_FIRST_FRAME_MODULES = """
import asyncio, sys
from nsdash.tui import gcpause
gcpause.hold()
from nsdash.cli.dashboard import load_app
NsdashApp = load_app()  # as `nsdash` loads it
seen = []
release = gcpause.release
def at_first_frame():
    if gcpause.held() and not seen:
        seen.append(sorted(sys.modules))
    release()
gcpause.release = at_first_frame
async def main():
    async with NsdashApp().run_test(size=(160, 48)) as pilot:
        for _ in range(400):
            if seen:
                return
            await pilot.pause(0.05)
asyncio.run(main())
print("\\n".join(seen[0]) if seen else "no first frame")
"""


def test_the_dashboard_loads_no_other_screen_before_its_first_frame(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), NSDASH_STATE_DIR=str(tmp_path / "state"))
    out = subprocess.run([sys.executable, "-c", _FIRST_FRAME_MODULES], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=120, stdin=subprocess.DEVNULL)
    loaded = set(out.stdout.split())
    assert "nsdash.tui.screens.dashboard" in loaded, (out.stdout[-500:], out.stderr[-2000:])
    never = DASHBOARD_NOT_BEFORE_FIRST_FRAME
    assert {m for m in loaded if m in never or any(m.startswith(n + ".") for n in never)} == set()


# `nsdash` with no verb as bin/nsdash starts it (collection off for the imports), in a terminal
# (a PTY): what the collector's state is when the dashboard's app module starts to load.
_GC_AT_APP_IMPORT = """
import gc, os, sys
gc.disable()
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "nsdash.tui.app":
            os.write(2, b"gc on\\n" if gc.isenabled() else b"gc off\\n")
            os.write(2, " ".join(sorted(m for m in ("argparse", "gettext") if m in sys.modules)).encode() + b"\\n")
            os._exit(0)
        return None
sys.meta_path.insert(0, Spy())
sys.argv = ["nsdash"]
from nsdash.cli import run
run()
"""


def _dashboard_at_app_import(tmp_path) -> list[str]:
    """`nsdash` (bin/nsdash's way, in a PTY) stopped when nsdash.tui.app starts to load: the
    collector's state, then which of argparse and gettext were loaded by then."""
    import pty

    primary, secondary = pty.openpty()
    try:
        # (the environment's packages on the path, as bin/nsdash puts them: nsdash.tui.standins
        # takes a name of Textual's before the app module loads)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path]),
                   NSDASH_STATE_DIR=str(tmp_path / "state"),
                   XDG_CONFIG_HOME=str(tmp_path))  # no hosts file: this host's dashboard
        out = subprocess.run([sys.executable, "-S", "-c", _GC_AT_APP_IMPORT], stdin=secondary, stdout=secondary,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=REPO, timeout=60)
    finally:
        os.close(primary)
        os.close(secondary)
    lines = out.stderr.split("\n")
    assert len(lines) == 3 and lines[2] == "", out.stderr[-2000:]
    return lines[:2]


def test_the_dashboard_imports_textual_with_the_collector_off(tmp_path):
    """The few hundred thousand objects Textual's import and the first compose make are not
    walked again and again by the collector (nsdash.tui.gcpause; cli.main turns it on for every
    long verb, the dashboard holds it off again until its first frame)."""
    assert _dashboard_at_app_import(tmp_path)[0] == "gc off"


def test_the_dashboard_reads_its_options_without_argparse(tmp_path):
    """argparse and gettext (and argparse's parser, its messages through gettext) are not on the
    way to the dashboard's first frame: Textual imports neither (nsdash.cli.quickparse)."""
    assert _dashboard_at_app_import(tmp_path)[1] == ""


# `nsdash` as a user starts it, in a terminal (a PTY, Textual's Linux driver): the modules
# loaded when the first snapshot's frame is painted (gcpause.release), written to $MODULES_OUT.
_FIRST_FRAME_IN_A_TERMINAL = """
import gc, os, sys
gc.disable()
from nsdash.tui import gcpause
release = gcpause.release
def at_first_frame():
    if gcpause.held():
        with open(os.environ["MODULES_OUT"], "w") as f:
            f.write("\\n".join(n for n, m in sys.modules.items() if type(m).__name__ != "StandIn"))
        os._exit(0)
    release()
gcpause.release = at_first_frame
sys.argv = ["nsdash"]
from nsdash.cli import run
run()
"""


def test_the_dashboard_in_a_terminal_loads_no_shutil_before_its_first_frame(tmp_path):
    """Textual's Linux driver asks shutil for the terminal's size; shutil brings bz2 and lzma
    and their libraries: nsdash's driver asks nsdash.tui.termsize.  The rest of the list
    above holds in a terminal too."""
    import pty
    import select

    out_file = tmp_path / "modules"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path]), MODULES_OUT=str(out_file),
               NSDASH_STATE_DIR=str(tmp_path / "state"), XDG_CONFIG_HOME=str(tmp_path), TERM="xterm-256color")
    primary, secondary = pty.openpty()
    try:
        child = subprocess.Popen([sys.executable, "-S", "-c", _FIRST_FRAME_IN_A_TERMINAL], stdin=secondary,
                                 stdout=secondary, stderr=secondary, env=env, cwd=REPO)
        os.close(secondary)
        secondary = -1
        while child.poll() is None:  # the frame read, as a terminal reads it
            if select.select([primary], [], [], 0.1)[0]:
                try:
                    os.read(primary, 65536)
                except OSError:
                    break
        child.wait(timeout=60)
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    loaded = set(out_file.read_text().split()) if out_file.exists() else set()
    assert "nsdash.tui.screens.dashboard" in loaded and "textual.drivers.linux_driver" in loaded
    never = DASHBOARD_NOT_BEFORE_FIRST_FRAME | {"shutil", "bz2", "lzma"}
    assert {m for m in loaded if m in never or any(m.startswith(n + ".") for n in never)} == set()


@pytest.mark.parametrize("argv", [["cgls", "-M", "nosuch"], ["cgtop", "-b", "-n", "1", "-M", "nosuch"]],
                         ids=["cgls", "cgtop"])
def test_cgls_and_cgtop_of_a_machine_read_its_state_without_pathlib(argv, tmp_path):
    """-M reads the machines' state entries as strings: no pathlib (re, enum, urllib with it), no os."""
    names = _imported(argv, {"NSDASH_STATE_DIR": str(tmp_path)})
    assert "nsdash.monitor.machines" in names
    assert names & ({"pathlib", "re", "enum", "urllib"} | _NO_OS) == set()


# `ps -M M` against ps of the machine's processes (bench_verbs.py): psutil reads each process (its
# job), but only those in M's cgroup subtree, not every process of the host.


def _psutil_rows(pids: list[int], machine: str) -> str:
    """What `nsdash ps` printed for PIDS when it walked every process of the host with psutil."""
    import psutil

    from nsdash.cli.machinectl import table

    rows = []
    for proc in psutil.process_iter(["pid", "username", "cmdline", "name", "cpu_times"]):
        if proc.info["pid"] in pids:
            cmd = " ".join(proc.info["cmdline"] or []) or f"[{proc.info['name']}]"
            t = proc.info["cpu_times"]
            secs = int(t.user + t.system) if t else 0
            rows.append([str(proc.info["pid"]), machine, proc.info["username"] or "?", f"{secs // 60}:{secs % 60:02d}",
                         cmd])
    return table(["PID", "MACHINE", "USER", "TIME", "COMMAND"], rows)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a machine's cgroup with processes in it")
def test_ps_of_a_machine_lists_its_cgroup_subtree(tmp_path, machine_name):
    """`ps -M NAME` lists the processes in the machine's cgroup and below it, as psutil reads them.
    The machine is a state entry whose lock its leader holds, in a
    real scope of the hierarchy that holds every process; neither a process outside it nor one
    of a machine nested in it (its own entry names a cgroup below) is listed."""
    from nsdash.machines import state as st
    from nsdash.monitor import tree
    from nsdash.system import cgroupfs

    scope = f"/machine.slice/nsdash-test-{machine_name}.scope"
    top = tree.primary_mount(cgroupfs.detect())
    made = []
    for d in (top + "/machine.slice", top + scope, top + scope + "/payload", top + scope + "/nested"):
        if not os.path.isdir(d):
            os.mkdir(d)
            made.append(d)
    entry = tmp_path / "state" / "machines" / machine_name
    entry.mkdir(parents=True)
    lock = entry / st.LOCK_FILE
    lock.touch()

    def start(cgroup: str, code: str) -> subprocess.Popen:
        def join() -> None:
            with open(f"{top}{cgroup}/cgroup.procs", "w") as f:
                f.write("0")
        return subprocess.Popen([sys.executable, "-S", "-c", code, "an argument with spaces"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, preexec_fn=join)

    hold = (f"import fcntl, os, sys; fd = os.open({str(lock)!r}, os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); "
            "print('ok', flush=True); sys.stdin.read()")
    wait = "import sys; print('ok', flush=True); sys.stdin.read()"
    procs = [start(scope, hold), start(scope + "/payload", wait), start("/", wait), start(scope + "/nested", wait)]
    try:
        assert all(p.stdout is not None and p.stdout.readline() == "ok\n" for p in procs)
        leader = procs[0].pid
        st.write_state(entry, st.MachineState(name=machine_name, root="/", leader=leader, cgroup=scope,
                                              supervisor=leader, started="2026-01-01T00:00:00Z",
                                              since="2026-01-01T00:00:00Z"))
        nested = tmp_path / "state" / "machines" / f"{machine_name}-in"
        nested.mkdir()
        st.write_state(nested, st.MachineState(name=f"{machine_name}-in", root="/", leader=procs[3].pid,
                                               cgroup=scope + "/nested", supervisor=procs[3].pid,
                                               started="2026-01-01T00:00:00Z", since="2026-01-01T00:00:00Z"))
        env = {"NSDASH_STATE_DIR": str(tmp_path / "state")}
        out = subprocess.run([sys.executable, "-S", "-X", "importtime", str(REPO / "bin" / "nsdash"), "ps", "-M",
                              machine_name], capture_output=True, text=True, timeout=60, cwd=REPO,
                             env=dict(os.environ, PYTHONPATH=str(REPO), **env))
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout == _psutil_rows([procs[0].pid, procs[1].pid], machine_name)
        assert out.stdout.count("an argument with spaces") == 2
        # the cgroup read as launcher/cgroup reads it, without it (its pathlib, ctypes and BPF
        # device filter were 30 M instructions on top of psutil's import)
        names = {line.split("|")[2].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
        assert "psutil" in names
        assert {n for n in names if n in {"nsdash.launcher.cgroup", "pathlib", "ctypes"}} == set()
    finally:
        for p in procs:
            p.communicate(timeout=10)  # its stdin's end: it leaves
        for d in reversed(made):
            if d.endswith("/machine.slice"):
                with contextlib.suppress(OSError):  # another run's machine may hold it
                    os.rmdir(d)
            else:
                os.rmdir(d)


# The read-only image verbs (bench_nested.py, against machinectl's): list-images as lean as list
# (it shows no creation time: no statx; no datetime); image-status and show-image call statx for
# the birth time through _ctypes alone (system/birthtime: not ctypes, not the launcher's
# system/syscalls), and import none of images' tools for changing images.
IMAGE_VERBS_NEVER = {"list-images": _LEAN | _NO_OS | {"ctypes", "_ctypes", "datetime", "nsdash.launcher.template"},
                     "image-status": _LEAN | _NO_OS | {"ctypes", "datetime", "nsdash.machines.images", "nsdash.system.syscalls", "nsdash.launcher.inuse",
                                              "nsdash.launcher.template"},
                     "show-image": _LEAN | _NO_OS | {"ctypes", "datetime", "nsdash.machines.images", "nsdash.system.syscalls", "nsdash.launcher.registry",
                                            "nsdash.launcher.treeusers", "nsdash.launcher.template"}}


@pytest.mark.parametrize("verb", list(IMAGE_VERBS_NEVER))
def test_read_only_image_verbs_import_nothing_heavy(verb, tmp_path):
    tree = tmp_path / "images" / "box"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "os-release").write_text('PRETTY_NAME="Box OS"\n')
    env = dict(os.environ, PYTHONPATH=str(REPO), NSDASH_STATE_DIR=str(tmp_path / "state"),
               NSDASH_IMAGE_PATH=str(tmp_path / "images"))
    env.pop("NSDASH_DEBUG", None)
    argv = [verb] if verb == "list-images" else [verb, "box"]
    out = subprocess.run([sys.executable, "-S", "-X", "importtime", str(REPO / "bin" / "nsdash"), *argv],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-2000:]
    assert str(tree) in out.stdout  # the verb ran and showed the image
    names = {line.split("|")[2].strip() for line in out.stderr.splitlines()
             if line.startswith("import time:") and "imported package" not in line}
    never = HEAVY | IMAGE_VERBS_NEVER[verb]
    assert {n for n in names if n in never or n.split(".")[0] in never} == set()
