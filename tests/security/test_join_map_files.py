"""`nsdash shell` while container root lies in wait for it (no -U: root keeps CAP_SYS_ADMIN and
CAP_SYS_PTRACE in the host's user namespace).

Between its fork into the machine's PID namespace and its exec, the joining
helper is a host process there.  The attacker, a static program running as
the machine's payload, scans its /proc for it, stops it, and opens each of
its /proc/PID/map_files/* (host ld.so, libc, libpython, extension modules)
read-write: each must be refused, and its environment must not hold the
caller's.  Then what the joined command holds is
checked: no capability beyond the machine PID 1's, its no_new_privs, and its
seccomp filters.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from conftest import run_nsdash, wait_for

from nsdash.machines import client

ATTACKER = r"""
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char seen[1 << 22];

int main(int argc, char **argv) {
    FILE *log = fopen(argv[1], "w");
    setvbuf(log, NULL, _IOLBF, 0);
    fprintf(log, "ready\n");
    for (;;) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        while ((e = readdir(d))) {
            int pid = atoi(e->d_name);
            if (pid <= 1 || pid == getpid() || pid >= (1 << 22) || seen[pid]) continue;
            char p[64], link[512];
            snprintf(p, sizeof p, "/proc/%d/exe", pid);
            ssize_t n = readlink(p, link, sizeof link - 1);
            if (n < 0) continue;
            link[n] = 0;
            if (!strstr(link, "nsdash-sealed")) continue;  /* the helper, not yet exec'd */
            seen[pid] = 1;
            kill(pid, SIGSTOP);
            fprintf(log, "caught %d\n", pid);
            char env[65536];
            snprintf(p, sizeof p, "/proc/%d/environ", pid);
            int efd = open(p, O_RDONLY | O_CLOEXEC);
            n = efd >= 0 ? read(efd, env, sizeof env - 1) : -1;
            if (efd >= 0) close(efd);
            for (ssize_t i = 0; i < n; i += strlen(env + i) + 1) {
                env[n] = 0;
                if (!strncmp(env + i, "API_TOKEN=", 10)) fprintf(log, "ENV-LEAK %s\n", env + i);
            }
            snprintf(p, sizeof p, "/proc/%d/map_files", pid);
            DIR *m = opendir(p);
            if (!m) { fprintf(log, "no-map-files %s\n", strerror(errno)); kill(pid, SIGCONT); continue; }
            struct dirent *f;
            while ((f = readdir(m))) {
                if (f->d_name[0] == '.') continue;
                char q[512], target[512];
                snprintf(q, sizeof q, "%s/%s", p, f->d_name);
                n = readlink(q, target, sizeof target - 1);
                if (n < 0) continue;
                target[n] = 0;
                int fd = open(q, O_RDWR | O_CLOEXEC);  /* never written to: opening is the breach */
                if (fd >= 0) { fprintf(log, "WRITABLE %s\n", target); close(fd); }
                else fprintf(log, "refused %s: %s\n", target, strerror(errno));
            }
            closedir(m);
            kill(pid, SIGCONT);
        }
        closedir(d);
    }
}
"""


@pytest.fixture(scope="module")
def attacker(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler (gcc, with libc6-dev for -static) is needed to build the attacker"
    d = tmp_path_factory.mktemp("attacker")
    (d / "attacker.c").write_text(ATTACKER)
    subprocess.run([cc, "-static", "-O2", "-o", str(d / "attacker"), str(d / "attacker.c")], check=True)
    return d / "attacker"


def test_helper_mappings_cannot_be_reopened_for_writing(busybox_tree, attacker, detached, machine_name):
    shutil.copy(attacker, busybox_tree / "attacker")
    log = busybox_tree / "attack.log"
    detached("-D", str(busybox_tree), "/attacker", "/attack.log")
    wait_for(lambda: log.exists() and "ready" in log.read_text(), what="the attacker to start")
    for _ in range(6):
        r = run_nsdash("shell", machine_name, "/bin/sh", "-c", "exit 3", timeout=30,
                       env={**os.environ, "API_TOKEN": "the-callers-secret"})
        assert r.returncode == 3, r.stderr
    time.sleep(0.2)
    text = log.read_text()
    assert text.count("caught ") >= 1, text  # it did get hold of the helper before exec
    assert "WRITABLE" not in text, "\n".join(line for line in text.splitlines() if "WRITABLE" in line)
    assert "ENV-LEAK" not in text  # the caller's environment stays behind
    refused = [line for line in text.splitlines() if line.startswith("refused /")]
    assert any("/libc.so" in line and line.endswith("Read-only file system") for line in refused), text
    assert any("python" in line and line.endswith("Read-only file system") for line in refused), text


def _status(pid: int | str) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


@pytest.mark.parametrize("opts", [(), ("--drop-capability=CAP_SYS_PTRACE,CAP_NET_RAW", "--no-new-privileges")])
def test_joined_command_holds_nothing_pid1_lacks(busybox_tree, detached, machine_name, opts):
    detached(*opts, "-D", str(busybox_tree), "/bin/sleep", "600")
    leader = _status(client.status(machine_name)["leader"])
    r = run_nsdash("shell", machine_name, "/bin/sh", "-c", "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status")
    assert r.returncode == 0, r.stderr
    inside = dict(line.split(":\t", 1) for line in r.stdout.replace("\r", "").splitlines())
    assert inside["CapBnd"] == leader["CapBnd"]
    assert int(inside["CapEff"], 16) & ~int(leader["CapBnd"], 16) == 0
    assert inside["NoNewPrivs"] == leader["NoNewPrivs"] == ("1" if opts else "0")
    # The machine's seccomp filters too (an unfiltered process inside is one to take over).
    assert inside["Seccomp"] == leader["Seccomp"] == "2"
    assert inside["Seccomp_filters"] == leader["Seccomp_filters"]
    if opts:
        assert not int(inside["CapBnd"], 16) & (1 << 19)  # CAP_SYS_PTRACE


def test_joined_command_gets_no_descriptor_but_stdio(busybox_tree, detached, machine_name, tmp_path):
    """A host directory the caller leaks to `nsdash shell` (not close-on-exec) stays outside."""
    detached("-D", str(busybox_tree), "/bin/sleep", "600")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        r = run_nsdash("shell", machine_name, "/bin/sh", "-c", f"ls /proc/self/fd/; ls /proc/self/fd/{fd}/ || echo gone",
                       pass_fds=(fd,))
    finally:
        os.close(fd)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.replace("\r", "").split()
    assert lines[-1] == "gone"
    assert sorted(set(lines[:-1]) - {"3"}) == ["0", "1", "2"]  # 3: ls's own directory fd


def test_shell_joins_a_machine_without_cap_sys_chroot(busybox_tree, detached, machine_name):
    """The helper takes the machine's root while it still holds its own capabilities: a machine
    whose bounding set lacks CAP_SYS_CHROOT is joined all the same (chroot after the drop fails)."""
    detached("--drop-capability=CAP_SYS_CHROOT", "-D", str(busybox_tree), "/bin/sleep", "600")
    r = run_nsdash("shell", machine_name, "/bin/sh", "-c", "grep ^CapBnd /proc/self/status; exit 4")
    assert r.returncode == 4, r.stderr
    assert not int(r.stdout.split()[-1], 16) & (1 << 18)  # CAP_SYS_CHROOT stays out


def test_shell_refuses_a_filtered_machine_whose_saved_filter_is_gone(busybox_tree, detached, machine_name):
    """Without the saved filters the joined command would run unfiltered inside: fail closed."""
    from nsdash.launcher.container import SECCOMP_FILE
    from nsdash.system import paths

    detached("-D", str(busybox_tree), "/bin/sleep", "600")
    (paths.machine_dir(machine_name) / SECCOMP_FILE).unlink()  # the supervisor keeps it in its entry
    r = run_nsdash("shell", machine_name, "/bin/sh", "-c", "echo RAN")
    assert r.returncode != 0
    assert "RAN" not in r.stdout
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "filter" in r.stderr, r.stderr


def test_shell_never_takes_a_stale_run_directorys_filter_for_a_supervised_machine(busybox_tree, detached,
                                                                                  machine_name):
    """A run/NAME left by an earlier run killed outright holds that run's filters, maybe looser
    ones: a machine whose supervisor keeps its run files in its entry is joined with the entry's
    filters or not at all (run/NAME is only for a supervisor of before, whose entry has none)."""
    from nsdash.launcher.container import SECCOMP_FILE
    from nsdash.system import paths

    detached("-D", str(busybox_tree), "/bin/sleep", "600")
    entry_filters = paths.machine_dir(machine_name) / SECCOMP_FILE
    stale = paths.state_root() / "run" / machine_name
    stale.mkdir(parents=True)
    try:
        (stale / SECCOMP_FILE).write_bytes(entry_filters.read_bytes())  # (any filters of another run)
        entry_filters.unlink()
        r = run_nsdash("shell", machine_name, "/bin/sh", "-c", "echo RAN")
    finally:
        (stale / SECCOMP_FILE).unlink()
        stale.rmdir()
    assert r.returncode != 0 and "RAN" not in r.stdout
    assert "filter" in r.stderr, r.stderr
