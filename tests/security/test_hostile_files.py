"""A guest plants hostile files where the host reads identity and journals: nothing of the host shows.

Each BusyBox machine, detached, replaces one file the host reads (os-release,
machine-id, hostname, its journal directory or files, preset files) with a
symlink to a root-only host file holding SECRET, a `../` climb to it, a /proc
magic link, a FIFO, /dev/zero, or an oversized file.  Then the host's readers
run as users run them (`nsdash list`, `list -o json`, `status`, `journal -M`,
the dashboard poller's machine reader, the preset reader): none may show a
byte of the host file, none may hang (every run has a timeout), memory stays
bounded, and a clean machine running beside them is listed as usual.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import NSDASH, REPO, TAG, run_nsdash, teardown_machine, wait_for

from nsdash.journal.export import export_entry, journal_remote, write_journal
from nsdash.machines import state as st

SECRET = "hostsecret"
BOUND = 20  # seconds any one command may take
MAX_RSS_KB = 600 * 1024  # a reader that follows /dev/zero goes far past this


def _secret_journal(path: Path) -> None:
    write_journal(path, [export_entry({"MESSAGE": f"{SECRET} from the host's journal", "PRIORITY": "6",
                                       "SYSLOG_IDENTIFIER": SECRET}, 1_700_000_000_000_000, 1000,
                                      uuid.uuid4().hex)])


@pytest.fixture(scope="module")
def secret(tmp_path_factory) -> Path:
    """A root-only host directory: os-release, machine-id, a preset and a journal, all marked SECRET."""
    if journal_remote() is None:
        pytest.fail("systemd-journal-remote is needed to write the host's fake journal")
    d = tmp_path_factory.mktemp("host") / "root-only"  # the marker is in the files only, not in any path
    d.mkdir(mode=0o700)
    (d / "os-release").write_text(f"ID={SECRET}\nVERSION_ID={SECRET}\nPRETTY_NAME={SECRET}\n")
    (d / "machine-id").write_text(f"{SECRET_ID}\n")
    (d / "hostname").write_text(f"{SECRET}\n")
    (d / "90-host.preset").write_text(f"enable {SECRET}*\n")
    (d / "journal").mkdir()
    _secret_journal(d / "journal/system.journal")
    for p in d.rglob("*"):
        p.chmod(0o600 if p.is_file() else 0o700)
    return d


SECRET_ID = uuid.uuid4().hex  # a host machine ID of our own making, fresh per session


@pytest.fixture(scope="module")
def host_journal_of_secret_id():
    """/var/log/journal/SECRET_ID holding a journal marked SECRET: where a reader that took the
    host's machine-id file for the guest's would look."""
    d = Path("/var/log/journal") / SECRET_ID
    made_parent = not d.parent.exists()
    d.mkdir(parents=True)
    try:
        _secret_journal(d / "system.journal")
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
        if made_parent:
            os.rmdir(d.parent)


def plants(secret: Path, guest_id: str) -> dict[str, str]:
    """Machine suffix -> the shell commands its guest runs before it sleeps."""
    climb = "../" * 12 + str(secret).lstrip("/")
    jdir = f"/var/log/journal/{guest_id}"
    no_fallback = "rm -f /usr/lib/os-release /etc/os-release; "
    return {
        "os-abs": no_fallback + f"ln -s {secret}/os-release /etc/os-release",
        "os-climb": no_fallback + f"ln -s {climb}/os-release /etc/os-release",
        "os-magic": no_fallback + f"ln -s /proc/self/root{secret}/os-release /etc/os-release",
        "os-fifo": no_fallback + "mkfifo /etc/os-release",
        "os-zero": no_fallback + "ln -s /dev/zero /etc/os-release",
        "os-big": no_fallback + "dd if=/dev/zero bs=1024 count=2048 2>/dev/null | tr '\\0' x > /etc/os-release",
        "usr-abs": "rm -f /etc/os-release /usr/lib/os-release; "
                   f"ln -s {secret}/os-release /usr/lib/os-release",
        "id-abs": f"rm -f /etc/machine-id; ln -s {secret}/machine-id /etc/machine-id",
        "id-climb": f"rm -f /etc/machine-id; ln -s {climb}/machine-id /etc/machine-id",
        "id-fifo": "rm -f /etc/machine-id; mkfifo /etc/machine-id",
        "id-zero": "rm -f /etc/machine-id; ln -s /dev/zero /etc/machine-id",
        "host-abs": f"rm -f /etc/hostname; ln -s {secret}/hostname /etc/hostname",
        "host-fifo": "rm -f /etc/hostname; mkfifo /etc/hostname",
        "jdir-abs": f"mkdir -p /var/log/journal; ln -s {secret}/journal {jdir}",
        "jdir-climb": f"mkdir -p /var/log/journal; ln -s {climb}/journal {jdir}",
        "jdir-host": f"mkdir -p /var/log/journal; ln -s /var/log/journal/{SECRET_ID} {jdir}",
        "jfile": f"mkdir -p {jdir}; ln -s {secret}/journal/system.journal {jdir}/system.journal; "
                 f"ln -s {climb}/journal/system.journal {jdir}/climb.journal; "
                 f"mkfifo {jdir}/fifo.journal; ln -s /dev/zero {jdir}/zero.journal",
        "preset": "mkdir -p /etc/systemd/system-preset; "
                  f"ln -s {secret}/90-host.preset /etc/systemd/system-preset/90-host.preset; "
                  f"ln -s {climb}/90-host.preset /etc/systemd/system-preset/91-climb.preset; "
                  "mkfifo /etc/systemd/system-preset/92-fifo.preset; "
                  "ln -s /dev/zero /etc/systemd/system-preset/93-zero.preset",
    }


@pytest.fixture(scope="module")
def machines(secret, host_journal_of_secret_id, busybox_cache, tmp_path_factory):
    """One detached BusyBox machine per plant, plus a clean one; name -> plant key ('' for the clean one).

    Each has a machine ID of its own: two running machines never share one (launcher/inuse.py)."""
    started: dict[str, str] = {}
    base = tmp_path_factory.mktemp("trees")
    try:
        for key in ["clean", *plants(secret, "")]:
            guest_id = uuid.uuid4().hex
            script = "true" if key == "clean" else plants(secret, guest_id)[key]
            name = f"{TAG}-h-{key}"
            tree = base / name
            subprocess.run(["cp", "-a", str(busybox_cache), str(tree)], check=True)
            (tree / "etc/machine-id").write_text(guest_id + "\n")
            ready = "/run/planted"
            r = run_nsdash("spawn", "--detach", "-q", "-D", str(tree), "-M", name, "/bin/sh", "-c",
                           f"{script}; : > {ready}; exec sleep 600", timeout=60)
            assert r.returncode == 0, r.stderr
            started[name] = key if key != "clean" else ""
        for name in started:
            wait_for(lambda n=name: _planted(n), what=f"{name} planted")
        yield started
    finally:
        for name in started:
            teardown_machine(name)


def _planted(name: str) -> bool:
    s = st.read_state(st.machine_dir(name))
    return bool(s and s.leader and os.path.exists(f"/proc/{s.leader}/root/run/planted"))


def _limit_memory() -> None:
    # The host must survive a reader that does follow /dev/zero: 4 GiB of address space at most.
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def nsdash(*args: str) -> subprocess.CompletedProcess:
    """Run nsdash bounded in time and address space; the test fails on a hang."""
    r = subprocess.run([*NSDASH, *args], capture_output=True, timeout=BOUND, cwd=REPO, preexec_fn=_limit_memory)
    assert b"Traceback" not in r.stderr, r.stderr.decode(errors="replace")
    return r


def _no_secret(r: subprocess.CompletedProcess) -> None:
    assert SECRET.encode() not in r.stdout + r.stderr
    assert SECRET_ID.encode() not in r.stdout + r.stderr


def test_list_and_json_show_no_host_byte_and_list_every_machine(machines):
    for args in (["list"], ["list", "-o", "json"], ["list", "--no-legend"]):
        r = nsdash(*args)
        assert r.returncode == 0, r.stderr
        _no_secret(r)
        out = r.stdout.decode()
        for name in machines:
            assert name in out  # every machine still listed, the hostile ones too
    clean = next(n for n, k in machines.items() if not k)
    line = next(ln for ln in nsdash("list", "--no-legend").stdout.decode().splitlines() if clean in ln)
    assert "busybox" in line  # the clean machine's OS, read as usual beside the hostile ones
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < MAX_RSS_KB


def test_status_of_each_machine_shows_no_host_byte(machines):
    for name in machines:
        r = nsdash("status", name)
        assert r.returncode == 0, r.stderr
        _no_secret(r)
        assert name in r.stdout.decode()
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < MAX_RSS_KB


def test_journal_of_each_machine_shows_no_host_entry(machines):
    for name in machines:
        for fmt in ("short", "json", "cat"):
            r = nsdash("journal", "-M", name, "-o", fmt, "-n", "100")
            _no_secret(r)
            assert r.returncode in (0, 1), r.stderr
            assert r.stderr.count(b"\n") <= 8  # skipped files are named, not a flood
    r = nsdash("journal", *(a for n in machines for a in ("-M", n)), "-n", "50")  # all at once: nothing either
    _no_secret(r)
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < MAX_RSS_KB


def test_journal_files_planted_as_symlinks_fifos_and_devices_are_skipped_by_name(machines):
    name = next(n for n, k in machines.items() if k == "jfile")
    r = nsdash("journal", "-M", name, "-n", "10")
    _no_secret(r)
    err = r.stderr.decode()
    for planted in ("system.journal", "climb.journal", "fifo.journal", "zero.journal"):
        assert planted in err  # said why it was left out


POLLER = """
import json
from nsdash.machines import registry
from nsdash.tui.poller import HostReaders

readers = HostReaders(with_machined=False)
try:
    errors = []
    infos = {m.name: m.os for m in readers._machines(errors)}
    snapshots = [readers.snapshot() for _ in range(3)]  # it keeps refreshing, the hostile machines listed
    snapshot = snapshots[-1]
finally:
    readers.close()
found = registry.list_machines(with_machined=False)
print(json.dumps({"infos": infos, "errors": errors, "snapshot": repr(snapshot.machines) + repr(snapshot.errors),
                  "refreshes": [[sorted(m.name for m in s.machines), list(s.errors)] for s in snapshots],
                  "registry": repr([(m.os_release, m.os_release_error, m.addresses) for m in found])}))
"""


def in_child(script: str, *args: str) -> str:
    """Run reader code the dashboard runs in-process, in a child bounded in time and memory."""
    r = subprocess.run([NSDASH[0], "-c", script, *args], capture_output=True, timeout=BOUND, cwd=REPO,
                       preexec_fn=_limit_memory)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert SECRET.encode() not in r.stdout + r.stderr
    return r.stdout.decode()


def test_the_pollers_machine_reader_marks_the_broken_machine_only(machines):
    import json

    out = json.loads(in_child(POLLER))
    infos, errors = out["infos"], out["errors"]
    for name, key in machines.items():
        assert name in infos
        if not key or not key.startswith(("os-", "usr-")):
            assert infos[name].startswith("busybox"), (name, infos[name])
        else:
            assert not infos[name].startswith("busybox")
    for key in ("os-fifo", "os-zero", "os-big"):
        name = next(n for n, k in machines.items() if k == key)
        assert any(name in e for e in errors), (key, errors)  # an error for that machine, by name
    clean = next(n for n, k in machines.items() if not k)
    assert not any(clean in e for e in errors)
    for listed, refresh_errors in out["refreshes"]:  # every refresh: every machine, the errors again
        assert set(machines) <= set(listed)
        assert set(errors) <= set(refresh_errors) and not any(clean in e for e in refresh_errors)


def _leader(machines: dict[str, str], key: str) -> int:
    name = next(n for n, k in machines.items() if k == key)
    s = st.read_state(st.machine_dir(name))
    assert s and s.leader
    return s.leader


def test_preset_files_are_read_confined(machines):
    out = in_child("import sys; from nsdash.inside.presets import read_rules; "
                   "print(read_rules(__import__('pathlib').Path(sys.argv[1])))",
                   f"/proc/{_leader(machines, 'preset')}/root")
    assert out.strip() == "[]"  # every planted preset refused, none read


def test_the_journal_fallback_of_the_units_screen_is_confined(machines):
    for key in ("jdir-abs", "jdir-climb", "jdir-host"):
        out = in_child("import sys; from nsdash.inside.target import Target; "
                       "from nsdash.inside.unitlog import fallback_dirs; "
                       "print(fallback_dirs(Target(name=sys.argv[1], leader=int(sys.argv[2]))))",
                       key, str(_leader(machines, key)))
        assert out.strip() == "[]"  # the symlinked directory leads nowhere from inside the root
