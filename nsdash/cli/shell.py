"""`nsdash shell NAME [CMD...]`: run a command inside a running machine.

Like `nsenter -t LEADER -a`: join the leader's namespaces (user if it has its
own, then mount, uts, ipc, net, cgroup, pid) and its root, after moving
ourselves into the machine's cgroup so `nsdash terminate` reaches the command
too; then take on PID 1's seccomp filters, bounding set and no_new_privs.
Unlike `machinectl shell`, the command's exit status is passed back.
The command uses this terminal directly; no extra PTY is allocated.
"""

from __future__ import annotations

import errno
import os
import select

from nsdash.errors import NsdashError
from nsdash.machines import identity

# The order matters: the user namespace first (it grants the rights for the
# rest), the mount namespace before chroot, the pid namespace last (it only
# applies to children).
NAMESPACES = ("user", "mnt", "uts", "ipc", "net", "cgroup", "pid")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _login_shell(root_fd: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if parts[0] == "root" and len(parts) >= 7 and parts[6]:
                    return parts[6]
    except OSError:
        pass
    return "/bin/sh"


def _leader_limits(leader: int) -> tuple[int, bool, bool]:
    """The machine PID 1's capability bounding set, no_new_privs flag and whether it is filtered."""
    bounding, no_new_privs, filtered = 0, False, False
    with open(f"/proc/{leader}/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                bounding = int(line.split()[1], 16)
            elif line.startswith("NoNewPrivs:"):
                no_new_privs = line.split()[1] == "1"
            elif line.startswith("Seccomp:"):
                filtered = line.split()[1] == "2"
    return bounding, no_new_privs, filtered


def in_cgroup(proc_cgroup: str, path: str) -> bool:
    """Whether a /proc/PID/cgroup text puts the process at PATH or below, in any hierarchy."""
    below = path.rstrip("/") + "/"
    for line in proc_cgroup.splitlines():
        where = line.split(":", 2)[-1]
        if where == path or where.startswith(below):
            return True
    return False


def _pin_leader(name: str, leader: int, cgroup_path: str) -> int:
    """A pidfd of the machine's leader, checked to be in the machine's cgroup.

    Between reading the leader's PID from the supervisor and opening its /proc
    files the machine may stop and the PID be reused: the pidfd pins the
    process we checked, and _still_running() after opening its namespaces
    proves they were that process's.
    """
    try:
        pidfd = os.pidfd_open(leader)
        with open(f"/proc/{leader}/cgroup") as f:
            ours = in_cgroup(f.read(), cgroup_path)
    except (ProcessLookupError, FileNotFoundError):
        raise NsdashError(f"machine '{name}' stopped while we joined it") from None
    if not ours:
        os.close(pidfd)
        raise NsdashError(f"machine '{name}' stopped while we joined it (PID {leader} is no longer its leader)",
                          f"see 'nsdash status {name}'")
    return pidfd


def _still_running(pidfd: int) -> bool:
    """A pidfd polls readable once its process has exited."""
    return not select.select([pidfd], [], [], 0)[0]


def _machine_filters(name: str) -> bytes | None:
    """The seccomp filters the machine's PID 1 runs under, as its supervisor saved them."""
    from nsdash.launcher.container import SECCOMP_FILE
    from nsdash.system import paths

    try:
        with open(paths.state_root() / "run" / name / SECCOMP_FILE, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _limit_capabilities(bounding: int, no_new_privs: bool) -> None:
    from nsdash.system import syscalls

    cap = 0
    while True:
        if not bounding & (1 << cap):
            try:
                syscalls.prctl(syscalls.PR_CAPBSET_DROP, cap)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                break  # past the kernel's last capability
        cap += 1
    effective, permitted, inheritable = syscalls.capget()
    syscalls.capset(effective & bounding, permitted & bounding, inheritable & bounding)
    if no_new_privs:
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)


def _exit_status(wait_status: int) -> int:
    if os.WIFEXITED(wait_status):
        return os.WEXITSTATUS(wait_status)
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return 1


def shell(name: str, command: list[str], env: dict[str, str]) -> int:
    # Everything the forked child calls is imported here: after its chroot, host modules are out of reach.
    from nsdash.launcher.cgroup import MachineCgroup
    from nsdash.launcher.sandbox import install_seccomp
    from nsdash.launcher.sealed_exec import ensure_sealed_exe
    from nsdash.machines import client
    from nsdash.system import syscalls

    # The forked helper is, until it execs, a host binary inside the machine's PID namespace:
    # run from a sealed copy so /proc/PID/exe can never reach the host's interpreter (CVE-2019-5736).
    ensure_sealed_exe()
    status = client.status(name)
    leader = status.get("leader")
    if not leader:
        raise NsdashError(f"machine '{name}' has no running leader", f"see 'nsdash status {name}'")
    cgroup = MachineCgroup(name)
    if status.get("cgroup") and status["cgroup"] != cgroup.path:
        cgroup.path = status["cgroup"]
        cgroup.dirs = cgroup._dirs()
    pidfd = _pin_leader(name, leader, cgroup.path)
    # Open every namespace (and the root) before joining any: /proc changes under us.
    fds: list[tuple[str, int]] = []
    root_fd = -1
    try:
        for ns in NAMESPACES:
            if identity.shares_host_namespace(leader, ns):
                continue  # shared with the host (e.g. no private network)
            fds.append((ns, os.open(f"/proc/{leader}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)))
        root_fd = os.open(f"/proc/{leader}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        bounding, no_new_privs, filtered = _leader_limits(leader)
        seccomp = _machine_filters(name)
        if not _still_running(pidfd):
            raise FileNotFoundError(leader)  # what we opened may be another process's
    except FileNotFoundError:
        for fd in (*(fd for _, fd in fds), root_fd):
            if fd >= 0:
                os.close(fd)
        raise NsdashError(f"machine '{name}' stopped while we joined it") from None
    finally:
        os.close(pidfd)
    if filtered and not seccomp:
        # Fail closed: the command would run inside without the filter its PID 1 is under.
        for _, fd in fds:
            os.close(fd)
        os.close(root_fd)
        raise NsdashError(f"machine '{name}' runs under a system-call filter, but its saved copy is missing",
                          f"restart the machine ('nsdash reboot {name}') so nsdash can join it filtered")

    pid = os.fork()
    if pid == 0:
        try:
            cgroup.join(0)
            for _, fd in fds:
                syscalls.setns(fd, 0)
            if any(ns == "user" for ns, _ in fds):
                # -U: host root is unmapped (nobody, and capless after exec) in the machine's
                # user namespace; become the namespace's root, as its PID 1 did.
                os.setresgid(0, 0, 0)
                os.setgroups([])
                os.setresuid(0, 0, 0)
            # Take the machine's root before the capability drop and the filter below: the
            # machine's bounding set may lack CAP_SYS_CHROOT, its filter may deny chroot.
            os.fchdir(root_fd)
            os.chroot(".")
            os.chdir("/")
            # The command (and we, while still a host binary in its PID namespace, before
            # exec) gets no capability the machine's PID 1 lacks: were container root to take
            # us over in that window (ptrace), it would gain nothing (CAP_SYS_MODULE, ...).
            # And runs under the machine's seccomp filter, loaded as PID 1 loads it (before the
            # capability drop): an unfiltered process inside is one root there could take over.
            if seccomp:
                install_seccomp(seccomp)
            _limit_capabilities(bounding, no_new_privs)
            argv = command or [_login_shell(root_fd), "-l"]
            child_env = {"PATH": DEFAULT_PATH, "HOME": "/root", "USER": "root", "LOGNAME": "root",
                         "TERM": os.environ.get("TERM", "vt220"), "container": "nsdash", **env}
            # Only the caller's stdio goes in: any other descriptor we inherited (a host
            # directory, a pipe) would be a way out of the machine's root for whoever holds it.
            os.closerange(3, 1 << 20)
            inner = os.fork()  # the pid namespace applies to children only
            if inner == 0:
                try:
                    os.execvpe(argv[0], argv, child_env)
                except OSError as e:
                    os.write(2, f"nsdash: cannot run '{argv[0]}' in machine '{name}': {e.strerror}\n".encode())
                    os._exit(127)
            _, st = os.waitpid(inner, 0)
            os._exit(_exit_status(st))
        except BaseException as e:  # noqa: BLE001 - report, never fall back into the parent's code
            os.write(2, f"nsdash: cannot enter machine '{name}': {e}\n".encode())
            os._exit(126)
    for _, fd in fds:
        os.close(fd)
    os.close(root_fd)
    while True:
        try:
            _, st = os.waitpid(pid, 0)
            return _exit_status(st)
        except InterruptedError:
            continue
        except KeyboardInterrupt:
            continue  # the command inside got the ^C too; wait for it
