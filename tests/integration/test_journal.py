"""Machines' journals, for real: the Debian tree booted by nsdash, journald inside, read from the host.

Entries are written inside with systemd-cat / logger / systemd-run (through
`nsdash shell`), read back by priority, unit and boot, followed with a
measured latency, and found through every --link-journal mode.  A BusyBox
machine's console log is followed through the same interface.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import statistics
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from nsdash.journal import Filters, open_logs, parse_priority
from nsdash.journal.locate import locate
from nsdash.journal.merge import MergedLog
from tests.conftest import NSDASH, REPO, TAG, run_nsdash, wait_for

HOST_JOURNAL = Path("/var/log/journal")


def messages(name: str, filters: Filters | None = None) -> list[str]:
    with open_logs([name], filters=filters) as log:
        return [e.message for e in log.entries()]


def shell(name: str, *argv: str) -> None:
    r = run_nsdash("shell", name, *argv, timeout=30)
    assert r.returncode == 0, r.stderr


@pytest.fixture
def tree(debian_tree) -> Iterator[Path]:
    """The session's writable Debian copy; each boot gives it a machine ID of its own, restored after."""
    machine_id = debian_tree / "etc/machine-id"
    original = machine_id.read_bytes()
    journals = debian_tree / "var/log/journal"
    existed = set(journals.iterdir()) if journals.is_dir() else None
    yield debian_tree
    machine_id.write_bytes(original)
    if existed is None:
        shutil.rmtree(journals, ignore_errors=True)
    else:
        for d in set(journals.iterdir()) - existed:
            shutil.rmtree(d, ignore_errors=True)


@contextmanager
def booted(directory: Path, name: str, *opts: str) -> Iterator[str | None]:
    """Boot DIRECTORY as NAME (with a fresh machine ID unless ephemeral); power off and unlink after."""
    machine_id = None
    if "-x" not in opts:
        machine_id = uuid.uuid4().hex
        (directory / "etc/machine-id").write_text(machine_id + "\n")
    r = run_nsdash("spawn", "--detach", *opts, "-bD", str(directory), "-M", name)
    assert r.returncode == 0, r.stderr
    try:
        # journald is up once PID 1 logged the end of start-up into it.
        wait_for(lambda: locate(name).journal_dirs and any(
            "Startup finished" in m for m in messages(name, Filters(units=("init.scope",)))))
        yield machine_id
    finally:
        r = run_nsdash("poweroff", name, timeout=60)
        if r.returncode != 0:
            run_nsdash("terminate", name, timeout=30)
        host_dir = HOST_JOURNAL / (machine_id or "-")
        if host_dir.is_symlink():
            host_dir.unlink()
        elif host_dir.is_dir():
            shutil.rmtree(host_dir)


WRITER = """
for p in emerg alert crit err warning notice info debug; do echo "probe at $p" | systemd-cat -p $p -t probe; done
logger -p user.warning -t lgr 'logger says warning'
systemd-run --unit=nsdash-named --wait -q /bin/echo hello from a unit
"""


@pytest.fixture(scope="module")
def machine(debian_cache) -> Iterator[str]:
    """One Debian machine (ephemeral, so -j quietly links nothing; its journal is volatile, reached
    through its root) for the reading tests, with entries written inside at every priority."""
    name = f"{TAG}-journal"
    with booted(debian_cache, name, "-x", "-j"):
        shell(name, "/bin/sh", "-c", WRITER)
        wait_for(lambda: "hello from a unit" in messages(name) and "logger says warning" in messages(name))
        yield name


def test_priorities_read_back_like_journalctl(machine):
    probes = [m for m in messages(machine, Filters(priorities=parse_priority("err"))) if m.startswith("probe")]
    assert probes == ["probe at emerg", "probe at alert", "probe at crit", "probe at err"]
    ranged = messages(machine, Filters(priorities=parse_priority("notice..warning")))
    assert "probe at warning" in ranged and "probe at notice" in ranged and "logger says warning" in ranged
    assert not {"probe at err", "probe at info", "probe at debug"} & set(ranged)
    r = run_nsdash("journal", "-M", machine, "-p", "4", "-o", "json")
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert records and all(int(rec["PRIORITY"]) <= 4 for rec in records)
    assert {"probe at warning", "logger says warning"} <= {rec["MESSAGE"] for rec in records}


def test_unit_filter_has_journalctl_u_semantics(machine):
    r = run_nsdash("journal", "-M", machine, "-u", "nsdash-named", "-o", "cat")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "hello from a unit" in lines  # the unit's own process (_SYSTEMD_UNIT)
    assert any(line.startswith("Started nsdash-named.service") for line in lines)  # PID 1 about it (UNIT=)
    assert not any(line.startswith("probe") for line in lines)


def test_the_same_directory_reads_identically_with_journalctl(machine):
    logs = locate(machine)
    assert logs.running and logs.journal_dirs
    directory = logs.journal_dirs[0]
    for opts in (["-p", "err"], ["-u", "nsdash-named"], ["-n", "20"]):
        want = subprocess.run(["journalctl", "--no-pager", "-D", str(directory), "-o", "short-precise", *opts],
                              capture_output=True, text=True, env={**os.environ, "SYSTEMD_COLORS": "0"}).stdout
        got = run_nsdash("journal", "-D", str(directory), "-o", "short-precise", *opts).stdout
        # the machine keeps logging between the two reads: compare the common part
        assert got.splitlines()[: len(want.splitlines()) - 2] == want.splitlines()[: len(want.splitlines()) - 2]


def _latencies_from(log: MergedLog, name: str, count: int) -> list[float]:
    """Write COUNT entries inside; for each, the time from journald's record to our follower seeing it."""
    seen: list[float] = []
    for i in range(count):
        shell(name, "/usr/bin/systemd-cat", "-t", "latency", "/bin/echo", f"latency {i}")
        deadline = time.monotonic() + 5
        found = None
        while found is None and time.monotonic() < deadline:
            log.wait(timeout=max(0.0, deadline - time.monotonic()))
            now = time.time()
            for e in log.read_new():
                if e.message == f"latency {i}":
                    found = now - e.realtime / 1e6
        assert found is not None, f"entry {i} never seen while following"
        seen.append(found)
    return seen


def test_follow_sees_new_entries_within_200ms(machine):
    with open_logs([machine], filters=Filters(units=())) as log:
        log.filenos()
        log.tail(0)
        latencies = _latencies_from(log, machine, 8)
    print(f"\nfollow latency (API): median {statistics.median(latencies) * 1000:.1f} ms, "
          f"max {max(latencies) * 1000:.1f} ms")
    assert statistics.median(latencies) < 0.2
    assert max(latencies) < 0.5  # slack for a loaded CI runner


def test_follow_through_the_cli_with_json_timestamps(machine):
    proc = subprocess.Popen([*NSDASH, "journal", "-M", machine, "-f", "-n", "0", "-o", "json", "-p", "info"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        pending = b""
        latencies = []
        for i in range(5):
            shell(machine, "/usr/bin/systemd-cat", "-t", "clilat", "/bin/echo", f"cli {i}")
            deadline = time.monotonic() + 5
            found = False
            while not found and time.monotonic() < deadline:
                ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    continue
                pending += os.read(fd, 1 << 20)
                now = time.time()
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    rec = json.loads(line)
                    if rec.get("MESSAGE") == f"cli {i}":
                        latencies.append(now - int(rec["__REALTIME_TIMESTAMP"]) / 1e6)
                        found = True
        assert len(latencies) == 5, "the follower missed entries"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"\nfollow latency (CLI): median {statistics.median(latencies) * 1000:.1f} ms")
    assert statistics.median(latencies) < 0.2


def test_follow_survives_rotation_and_vacuum_inside(machine):
    with open_logs([machine]) as log:
        log.filenos()
        log.tail(0)
        shell(machine, "/bin/journalctl", "--rotate")
        shell(machine, "/usr/bin/systemd-cat", "-t", "rot", "/bin/echo", "after rotation")
        shell(machine, "/bin/journalctl", "--vacuum-files=1", "-q")
        shell(machine, "/usr/bin/systemd-cat", "-t", "rot", "/bin/echo", "after vacuum")
        got: list[str] = []
        deadline = time.monotonic() + 10
        while "after vacuum" not in got and time.monotonic() < deadline:
            log.wait(timeout=1)
            got += [e.message for e in log.read_new()]
    assert got.index("after rotation") < got.index("after vacuum")


def test_a_truncated_copy_of_a_real_journal_is_read_as_far_as_possible(machine, tmp_path):
    src = locate(machine).journal_dirs[0]
    copy = tmp_path / "j"
    shutil.copytree(src, copy)
    files = sorted(copy.glob("*.journal*"))
    whole = files[0]
    broken = copy / "system@00000000000000000000000000000000-0000000000000001-0000000000000001.journal~"
    shutil.copy(whole, broken)
    os.truncate(broken, broken.stat().st_size // 2)
    r = run_nsdash("journal", "-D", str(copy), "-o", "cat")
    want = subprocess.run(["journalctl", "--no-pager", "-D", str(copy), "-o", "cat"], capture_output=True,
                          text=True).stdout
    assert r.returncode == 0
    assert r.stdout == want and len(r.stdout.splitlines()) >= 2  # the whole file read, like journalctl
    assert f"{broken}: truncated" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("mode", ["host", "try-host", "guest", "try-guest", "auto", "no"])
def test_link_journal_modes(tree, machine_name, mode):
    with booted(tree, machine_name, f"--link-journal={mode}") as machine_id:
        shell(machine_name, "/usr/bin/systemd-cat", "-p", "err", "-t", "linkmode", "/bin/echo", f"mode {mode}")
        wait_for(lambda: f"mode {mode}" in messages(machine_name, Filters(priorities=parse_priority("err"))))
        logs = locate(machine_name)
        host_dir = HOST_JOURNAL / machine_id
        if mode in ("host", "try-host"):
            assert host_dir.is_dir() and not host_dir.is_symlink()
            assert any((host_dir / f.name).exists() for f in host_dir.iterdir())
        elif mode in ("guest", "try-guest"):
            assert host_dir.is_symlink()
            assert host_dir.resolve() == (tree / "var/log/journal" / machine_id).resolve()
        else:
            assert not host_dir.exists()
        # The host-side path and the in-machine path are one directory, listed once.
        assert len(logs.journal_dirs) == 1
        if mode in ("host", "try-host", "guest", "try-guest"):
            # readable from the host path alone, as journalctl -m / -M would on a systemd host
            r = run_nsdash("journal", "-D", str(host_dir), "-p", "err", "-o", "cat")
            assert f"mode {mode}" in r.stdout.splitlines()


def test_a_volatile_journal_is_reached_through_the_running_machines_root(tree, machine_name):
    # Without /var/log/journal, journald keeps the journal in /run (Storage=auto): only the
    # running machine's root reaches it.
    persistent = tree / "var/log/journal"
    aside = tree / "var/log/journal.aside"
    if persistent.exists():
        persistent.rename(aside)
    try:
        with booted(tree, machine_name):
            shell(machine_name, "/usr/bin/logger", "-p", "daemon.crit", "volatile but readable")
            wait_for(lambda: "volatile but readable" in messages(
                machine_name, Filters(priorities=parse_priority("crit"))))
            logs = locate(machine_name)
            assert len(logs.journal_dirs) == 1
            assert str(logs.journal_dirs[0]) == f"/proc/{_leader(machine_name)}/root/run/log/journal/{logs.machine_id}"
    finally:
        shutil.rmtree(persistent, ignore_errors=True)
        if aside.exists():
            aside.rename(persistent)


def test_an_ephemeral_machines_journal_is_reached_through_its_root(machine, debian_cache):
    logs = locate(machine)
    assert logs.running and len(logs.journal_dirs) == 1
    # in the machine's overlay (its own view, through its root): the cached tree stays untouched
    assert str(logs.journal_dirs[0]).startswith("/proc/")
    assert str(logs.journal_dirs[0]).endswith(f"/log/journal/{logs.machine_id}")
    assert not (debian_cache / "var/log/journal" / logs.machine_id).exists()
    assert not (HOST_JOURNAL / logs.machine_id).exists()  # -j (try-guest) with -x: quietly not linked


def test_a_reboot_makes_a_new_boot_that_b_tells_apart(tree, machine_name):
    with booted(tree, machine_name, "-j"):
        shell(machine_name, "/usr/bin/systemd-cat", "-t", "bootmark", "/bin/echo", "before reboot")
        r = run_nsdash("reboot", machine_name, timeout=60)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: locate(machine_name).running and sum(
            "Startup finished" in m for m in messages(machine_name, Filters(units=("init.scope",)))) >= 2)
        # the launcher gives each boot a fresh boot ID, as systemd-nspawn does; the host's would make
        # every boot the same one
        assert _own_boot_id(machine_name) != Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        wait_for(lambda: len(_boots(machine_name)) == 2)
        wait_for(lambda: any("Startup finished" in m for m in messages(machine_name, Filters(boot=0))))
        shell(machine_name, "/usr/bin/systemd-cat", "-t", "bootmark", "/bin/echo", "after reboot")
        wait_for(lambda: "after reboot" in messages(machine_name))
        assert "before reboot" in messages(machine_name, Filters(boot=-1))
        assert "before reboot" not in messages(machine_name, Filters(boot=0))
        assert "after reboot" in messages(machine_name, Filters(boot=0))
        r = run_nsdash("journal", "-M", machine_name, "-b", "-1", "-o", "cat")
        assert "before reboot" in r.stdout and "after reboot" not in r.stdout


def _own_boot_id(name: str) -> str:
    leader = wait_for(lambda: _leader(name))
    return str(uuid.UUID(Path(f"/proc/{leader}/root/proc/sys/kernel/random/boot_id").read_text().strip()))


def _leader(name: str) -> int | None:
    from nsdash.machines import state as st

    state = st.read_state(st.machine_dir(name))
    return state.leader if state else None


def _boots(name: str) -> list:
    from nsdash.journal.reader import JournalSource

    with JournalSource(locate(name).journal_dirs[0]) as src:
        return src.boots()


def test_a_busybox_machines_console_log_is_followed(busybox_tree, machine_name, machine):
    r = run_nsdash("spawn", "--detach", "-D", str(busybox_tree), "-M", machine_name, "/bin/sh", "-c",
                   "echo started; while :; do sleep 0.2; echo tick; done")
    assert r.returncode == 0, r.stderr
    try:
        logs = wait_for(lambda: (lg := locate(machine_name)).console_log and lg)
        assert logs.journal_dirs == ()
        with open_logs([machine_name]) as log:
            log.filenos()
            history = wait_for(lambda: [e for e in log.tail(50)] if any(
                e.message == "started" for e in log.tail(50)) else None)
            separators = [e for e in history if e.event]
            assert separators and separators[0].event == "boot 1" and separators[0].priority == 6
            assert all(e.priority is None for e in history if not e.event)
            log.seek_end()
            got: list[str] = []
            deadline = time.monotonic() + 5
            while got.count("tick") < 2 and time.monotonic() < deadline:
                log.wait(timeout=1)
                got += [e.message for e in log.read_new()]
            assert got.count("tick") >= 2
        cli = run_nsdash("journal", "-M", machine_name, "-n", "3")
        assert cli.returncode == 0 and "tick" in cli.stdout
        # merged with the Debian machine's journal: one time-ordered stream, each line tagged
        both = run_nsdash("journal", "-M", machine, "-M", machine_name, "-o", "short-precise")
        assert both.returncode == 0, both.stderr
        lines = both.stdout.splitlines()
        assert any(f" {machine_name} console: tick" in line for line in lines)
        assert any(f" {machine} systemd[1]: " in line or f" {machine} rot[" in line for line in lines)
        with open_logs([machine, machine_name]) as log:
            merged = list(log.entries())
        assert [e.realtime for e in merged] == sorted(e.realtime for e in merged)
        assert {e.machine for e in merged} == {machine, machine_name}
    finally:
        run_nsdash("terminate", machine_name, timeout=30)


def test_unknown_machine_is_one_clear_line(machine_name):
    r = run_nsdash("journal", "-M", machine_name)
    assert r.returncode == 1
    assert r.stderr == f"nsdash: no machine named '{machine_name}'; see 'nsdash list' for machines, " \
                       "or read a journal directory with -D DIR\n"
