"""gdb and perf read a machine's files inside the machine: a guest symlink cannot aim them at a host file.

The host file is a root-only copy of the host's libc: a valid ELF, so a
reader that follows the guest's symlink to it would load its symbols.  In an
ephemeral Debian machine a spinner runs /opt/dash with LD_LIBRARY_PATH=/opt/lib
(copies of dash and libc); then the guest mounts a tmpfs over /opt and puts
there absolute symlinks to the host file under the same names.  The spinner's
maps and its link map still name /opt/lib/libc.so.6 and /opt/dash, so gdb (by
its sysroot) and perf (by its --symfs) look those names up again.  Watched
with inotify: the host file is never opened, and the /opt/lib frames and
library have no symbols, while the guest's own /usr/lib libc has them.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TAG, run_nsdash, teardown_machine, wait_for

from nsdash.inside.debugging.perf import Profiler
from nsdash.inside.debugging.pids import MachineProcesses
from nsdash.inside.target import resolve
from nsdash.machines import state as st
from nsdash.system import syscalls as sc

IN_ACCESS, IN_OPEN = 0x1, 0x20
HOST_LIBC = Path("/usr/lib/x86_64-linux-gnu/libc.so.6")


@pytest.fixture(scope="module")
def host_file(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("host") / "root-only"
    d.mkdir(mode=0o700)
    f = d / "libc.so.6"
    shutil.copyfile(HOST_LIBC, f)
    f.chmod(0o600)
    return f


@pytest.fixture(scope="module")
def planted(debian_cache, host_file) -> Iterator[tuple[str, int]]:
    """(machine, host PID of the spinner that maps /opt/lib/libc.so.6, now a symlink to HOST_FILE).
    PID 1 spins through the guest's own libc (open, write, close on each turn), so a profile
    holds guest-libc frames even when a loaded host gives it few samples."""
    name = f"{TAG}-sysroot"
    script = ("mkdir -p /opt/lib; cp /usr/bin/dash /opt/dash; cp /usr/lib/x86_64-linux-gnu/libc.so.6 /opt/lib/; "
              "LD_LIBRARY_PATH=/opt/lib /opt/dash -c 'while :; do :; done' & sleep 0.5; "
              f"mount -t tmpfs none /opt; mkdir /opt/lib; ln -s {host_file} /opt/lib/libc.so.6; "
              f"ln -s {host_file} /opt/dash; : > /run/planted; while :; do echo spin > /dev/null; done")
    r = run_nsdash("spawn", "--detach", "-q", "-x", "-D", str(debian_cache), "-M", name, "/bin/sh", "-c", script)
    assert r.returncode == 0, r.stderr
    try:
        leader = wait_for(lambda: _planted(name), what="the guest's symlinks")
        spinner = next(pid for pid in MachineProcesses(resolve(name)).host_pids()
                       if pid != leader and "/opt/lib/libc.so.6" in Path(f"/proc/{pid}/maps").read_text())
        assert os.readlink(f"/proc/{leader}/root/opt/lib/libc.so.6") == str(host_file)
        yield name, spinner
    finally:
        teardown_machine(name)


def _planted(name: str) -> int | None:
    s = st.read_state(st.machine_dir(name))
    return s.leader if s and s.leader and Path(f"/proc/{s.leader}/root/run/planted").exists() else None


class Opens:
    """Whether HOST_FILE is opened or read while the block runs (inotify)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Opens:
        self.fd = sc.inotify_init1()
        sc.inotify_add_watch(self.fd, str(self.path), IN_OPEN | IN_ACCESS)
        return self

    def __exit__(self, *exc: object) -> None:
        self.seen = bool(select.select([self.fd], [], [], 0.2)[0])
        os.close(self.fd)


def _shared_libraries(name: str, host_pid: int) -> tuple[dict[str, str], str]:
    """`info sharedlibrary` of HOST_PID by `nsdash debug`: library -> its row, and all the output."""
    r = run_nsdash("debug", "-M", name, "--host-pid", str(host_pid), "--batch", "-ex", "info sharedlibrary",
                   timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[-1]: line for line in r.stdout.splitlines() if re.search(r"\s(Yes|No)\b", line)}
    return rows, r.stdout + r.stderr


def test_gdb_resolves_the_guests_library_names_inside_the_machine(planted, host_file):
    name, spinner = planted
    with Opens(host_file) as opens:
        rows, out = _shared_libraries(name, spinner)
    assert not opens.seen, "gdb opened the host file the guest's symlink names"
    # /opt/lib/libc.so.6 leads nowhere inside the machine; the host copy of libc would be read.
    opt = next(row for lib, row in rows.items() if lib.endswith("/opt/lib/libc.so.6"))
    assert " Yes" not in opt, out
    assert "target:/opt/lib/libc.so.6" in out  # gdb looked for it, inside the machine
    # The guest's own libc (of its PID 1, the shell) is read, inside the machine too.
    rows, out = _shared_libraries(name, wait_for(lambda: _planted(name)))
    assert any(lib.startswith("target:") and lib.endswith("/libc.so.6") and " Yes" in row
               for lib, row in rows.items()), out


def test_perf_reads_symbols_of_the_guests_files_only_inside_the_machine(planted, host_file):
    name, spinner = planted
    with Opens(host_file) as opens:
        profile = Profiler(MachineProcesses(resolve(name))).record(2.0)
    assert not opens.seen, "perf opened the host file the guest's symlink names"
    frames = [f for s in profile.samples for f in s.frames]
    assert any(s.host_pid == spinner for s in profile.samples), "the spinner was not sampled"
    opt = [f for f in frames if f.dso == "/opt/lib/libc.so.6"]
    guest = [f for f in frames if f.dso in ("/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6")]
    assert opt and all(f.symbol == "[unknown]" for f in opt)  # the host copy of libc would name them
    assert any(f.symbol != "[unknown]" for f in guest), "no symbol of the guest's own libc"


def test_perf_script_runs_as_nobody(planted, monkeypatch):
    """Whatever perf looks up beside the --symfs, it does as a user that cannot read root's files."""
    name, _ = planted
    seen: list[dict] = []
    real = subprocess.run

    def spy(argv, *a, **kw):
        if "script" in argv:
            seen.append(kw)
        return real(argv, *a, **kw)

    monkeypatch.setattr(subprocess, "run", spy)
    Profiler(MachineProcesses(resolve(name))).record(0.5)
    assert seen and all(kw.get("user") not in (None, 0) for kw in seen)
