"""Joining a running machine: a command run inside it, held to what its PID 1 may do.

Like `nsenter -t LEADER -a`: join the leader's namespaces (user if it has its
own, then mount, uts, ipc, net, cgroup, pid) and its root, after moving into
the machine's cgroup so stopping the machine reaches the command too; then
take on PID 1's seccomp filters, bounding set and no_new_privs.

The caller chooses the command's stdio: descriptors of its own (spawn), or a
new PTY allocated in the machine's own devpts (spawn_in_pty), whose master the
helper hands back (as machined's OpenMachinePTY does for machinectl shell):
the command's terminal is then /dev/pts/N inside, and never the caller's.
Either way the helper leaves the caller's session first (setsid), so the
caller's terminal is no controlling terminal inside (/dev/tty there cannot
reach it), and every descriptor but the three goes.  In a PTY the command
runs in a session of its own with the PTY as its controlling terminal, as a
login would.

The forked helper is, until it execs, a host binary inside the machine's PID
namespace: it runs from a sealed copy of the interpreter (sealed_exec.py), so
/proc/PID/exe never reaches the host's (CVE-2019-5736).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
import stat
import struct
import termios
from collections.abc import Callable
from dataclasses import dataclass, field

from nsdash.errors import NsdashError
from nsdash.launcher.cgroup import MachineCgroup
from nsdash.launcher.container import SECCOMP_FILE
from nsdash.launcher.plan import NOTIFY_FILE
from nsdash.launcher.sandbox import install_seccomp
from nsdash.launcher.sealed_exec import ensure_sealed_exe
from nsdash.system import paths, syscalls
from nsdash.system.namespaces import shares_host_namespace
from nsdash.system.ready import readable

# The order matters: the user namespace first (it grants the rights for the
# rest), the mount namespace before chroot, the pid namespace last (it only
# applies to children).
NAMESPACES = ("user", "mnt", "uts", "ipc", "net", "cgroup", "pid")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EXIT_CANNOT_ENTER = 126
EXIT_CANNOT_RUN = 127
PTMX = os.makedev(5, 2)
PTY_SLAVE_MAJORS = range(136, 144)


def in_cgroup(proc_cgroup: str, path: str) -> bool:
    """Whether a /proc/PID/cgroup text puts the process at PATH or below, in any hierarchy."""
    below = path.rstrip("/") + "/"
    for line in proc_cgroup.splitlines():
        where = line.split(":", 2)[-1]
        if where == path or where.startswith(below):
            return True
    return False


def pin_leader(name: str, leader: int, cgroup_path: str) -> int:
    """A pidfd of the machine's leader, checked to be in the machine's cgroup.

    Between reading the leader's PID from the supervisor and opening its /proc
    files the machine may stop and the PID be reused: the pidfd pins the
    process we checked, and still_running() after opening its namespaces
    proves they were that process's.
    """
    try:
        pidfd = os.pidfd_open(leader)
        with open(f"/proc/{leader}/cgroup", errors="surrogateescape") as f:  # the guest names cgroups
            ours = in_cgroup(f.read(), cgroup_path)
    except (ProcessLookupError, FileNotFoundError):
        raise NsdashError(f"machine '{name}' stopped while we joined it") from None
    if not ours:
        os.close(pidfd)
        raise NsdashError(f"machine '{name}' stopped while we joined it (PID {leader} is no longer its leader)",
                          f"see 'nsdash status {name}'")
    return pidfd


def still_running(pidfd: int) -> bool:
    """A pidfd polls readable once its process has exited."""
    return not readable([pidfd], 0)


def exit_status(wait_status: int) -> int:
    """A shell's $? for a wait status: the exit code, or 128 + the signal."""
    if os.WIFEXITED(wait_status):
        return os.WEXITSTATUS(wait_status)
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return 1


def _leader_limits(leader: int) -> tuple[int, bool, bool]:
    """The machine PID 1's capability bounding set, no_new_privs flag and whether it is filtered."""
    bounding, no_new_privs, filtered = 0, False, False
    with open(f"/proc/{leader}/status", errors="surrogateescape") as f:  # Name: the guest's bytes
        for line in f:
            if line.startswith("CapBnd:"):
                bounding = int(line.split()[1], 16)
            elif line.startswith("NoNewPrivs:"):
                no_new_privs = line.split()[1] == "1"
            elif line.startswith("Seccomp:"):
                filtered = line.split()[1] == "2"
    return bounding, no_new_privs, filtered


def _machine_filters(name: str) -> bytes | None:
    """The seccomp filters the machine's PID 1 runs under, as its supervisor saved them: in its
    entry, when the entry holds the run files (its notify socket says so); else, a supervisor of
    before, in the launcher's run directory.  Never the one for the other: a run/NAME left by
    a run killed outright holds that run's filters, maybe looser ones."""
    entry = paths.machine_path(name)
    directory = entry if os.path.lexists(os.path.join(entry, NOTIFY_FILE)) else \
        os.path.join(paths.state_path(), "run", name)
    try:
        with open(os.path.join(directory, SECCOMP_FILE), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _limit_capabilities(bounding: int, no_new_privs: bool) -> None:
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


@dataclass
class Machine:
    """A running machine, opened to be joined: its namespaces, root, limits and filters.

    open() reads everything from the leader's /proc before anything is joined
    (/proc changes under us); close() (or the with-block) lets them go.
    """

    name: str
    cgroup: MachineCgroup
    namespaces: list[tuple[str, int]] = field(default_factory=list)
    root_fd: int = -1
    bounding: int = 0
    no_new_privs: bool = False
    seccomp: bytes | None = None

    @classmethod
    def open(cls, name: str, leader: int, cgroup_path: str | None = None) -> Machine:
        """Pin LEADER (checked to be in the machine's cgroup) and open what joining it takes."""
        ensure_sealed_exe()
        machine = cls(name, MachineCgroup(name, path=cgroup_path))
        pidfd = pin_leader(name, leader, machine.cgroup.path)
        try:
            for ns in NAMESPACES:
                shared = shares_host_namespace(leader, ns)
                if shared is None:
                    raise FileNotFoundError(leader)
                if shared:
                    continue  # shared with the host (e.g. no private network)
                machine.namespaces.append((ns, os.open(f"/proc/{leader}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)))
            machine.root_fd = os.open(f"/proc/{leader}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            machine.bounding, machine.no_new_privs, filtered = _leader_limits(leader)
            machine.seccomp = _machine_filters(name)
            if not still_running(pidfd):
                raise FileNotFoundError(leader)  # what we opened may be another process's
        except FileNotFoundError:
            machine.close()
            raise NsdashError(f"machine '{name}' stopped while we joined it") from None
        finally:
            os.close(pidfd)
        if filtered and not machine.seccomp:
            # Fail closed: the command would run inside without the filter its PID 1 is under.
            machine.close()
            raise NsdashError(f"machine '{name}' runs under a system-call filter, but its saved copy is missing",
                              f"restart the machine ('nsdash reboot {name}') so nsdash can join it filtered")
        return machine

    def close(self) -> None:
        for _, fd in self.namespaces:
            os.close(fd)
        self.namespaces = []
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def spawn(self, argv: list[str], env: dict[str, str], stdio: tuple[int, int, int]) -> int:
        """Fork the helper that joins the machine and runs ARGV (the root's login shell if
        empty) with STDIO as its 0, 1, 2; its PID.  Its exit status is the command's (see
        exit_status), EXIT_CANNOT_ENTER if joining failed, EXIT_CANNOT_RUN if ARGV did not run."""
        return self._fork(argv, env, lambda: _dup_stdio(stdio), controlling_tty=False)

    def spawn_in_pty(self, argv: list[str], env: dict[str, str], mode: list | None = None,
                     winsize: bytes | None = None) -> tuple[int, int | None]:
        """Like spawn, with a new PTY of the machine's devpts as the command's stdio and
        controlling terminal, set up with termios MODE and WINSIZE (TIOCGWINSZ's bytes).
        (PID, the PTY's master), or (PID, None) when the helper failed before it had one
        (it has said why on stderr; its exit status tells the rest)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = self._fork(argv, env, lambda: _new_pty(theirs, mode, winsize), controlling_tty=True)
        finally:
            theirs.close()
        try:
            _, fds, _, _ = socket.recv_fds(ours, 1, 1)
        except OSError:
            fds = []
        finally:
            ours.close()
        return pid, (fds[0] if fds else None)

    def _fork(self, argv: list[str], env: dict[str, str], stdio: Callable[[], None], controlling_tty: bool) -> int:
        pid = os.fork()
        if pid == 0:
            try:
                self._enter_and_run(argv, env, stdio, controlling_tty)
            except BaseException as e:  # noqa: BLE001 - report, never fall back into the caller's code
                with contextlib.suppress(OSError):
                    os.write(2, f"nsdash: cannot enter machine '{self.name}': {e}\n".encode())
            os._exit(EXIT_CANNOT_ENTER)
        return pid

    # ---- the helper's side (after fork) ------------------------------------

    def _enter_and_run(self, argv: list[str], env: dict[str, str], stdio: Callable[[], None],
                       controlling_tty: bool) -> None:
        # Leave the caller's session first: its terminal must be no controlling terminal
        # of anything inside (a process there opening /dev/tty would reach it).
        os.setsid()
        if controlling_tty:
            # Until the PTY is made inside, nothing of the caller's terminal but stderr
            # (for a message if joining fails) comes along.
            null = os.open("/dev/null", os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.close(null)
        else:
            stdio()
        self.cgroup.join(0)
        for _, fd in self.namespaces:
            syscalls.setns(fd, 0)
        if any(ns == "user" for ns, _ in self.namespaces):
            # -U: host root is unmapped (nobody, and capless after exec) in the machine's
            # user namespace; become the namespace's root, as its PID 1 did.
            os.setresgid(0, 0, 0)
            os.setgroups([])
            os.setresuid(0, 0, 0)
        # Take the machine's root before the capability drop and the filter below: the
        # machine's bounding set may lack CAP_SYS_CHROOT, its filter may deny chroot.
        os.fchdir(self.root_fd)
        os.chroot(".")
        os.chdir("/")
        # The command (and we, while still a host binary in its PID namespace, before
        # exec) gets no capability the machine's PID 1 lacks: were container root to take
        # us over in that window (ptrace), it would gain nothing (CAP_SYS_MODULE, ...).
        # And runs under the machine's seccomp filter, loaded as PID 1 loads it (before the
        # capability drop): an unfiltered process inside is one root there could take over.
        if self.seccomp:
            install_seccomp(self.seccomp)
        _limit_capabilities(self.bounding, self.no_new_privs)
        if controlling_tty:
            stdio()  # the PTY, made in the machine's devpts with the rights the command has
        argv = argv or [_login_shell(), "-l"]
        child_env = {"PATH": DEFAULT_PATH, "HOME": "/root", "USER": "root", "LOGNAME": "root",
                     "TERM": os.environ.get("TERM", "vt220"), "container": "nsdash", **env}
        # Only the chosen stdio goes in: any other descriptor we inherited (a host
        # directory, a pipe, the caller's terminal) would be a way out for whoever holds it.
        os.closerange(3, 1 << 20)
        inner = os.fork()  # the pid namespace applies to children only
        if inner == 0:
            try:
                if controlling_tty:
                    os.setsid()
                    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
                os.execvpe(argv[0], argv, child_env)
            except OSError as e:
                os.write(2, f"nsdash: cannot run '{argv[0]}' in machine '{self.name}': {e.strerror}\n".encode())
            os._exit(EXIT_CANNOT_RUN)

        def forward(signum: int, _frame: object) -> None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(inner, signum)

        # The caller shares no terminal with the command: its ^C (and a SIGTERM or SIGHUP
        # sent to the helper) reach the command through us.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, forward)
        while True:
            try:
                _, st = os.waitpid(inner, 0)
                break
            except InterruptedError:
                continue
        os._exit(exit_status(st))


def _dup_stdio(stdio: tuple[int, int, int]) -> None:
    for target, fd in enumerate(stdio):
        if fd != target:
            os.dup2(fd, target)


def _new_pty(channel: socket.socket, mode: list | None, winsize: bytes | None) -> None:
    """In the helper, inside the machine: a new PTY pair from its /dev/ptmx; the master goes
    back over CHANNEL, the slave becomes stdin, stdout and stderr."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    st = os.fstat(master)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != PTMX:  # the guest's /dev is the guest's
        raise NsdashError("the machine's /dev/ptmx is not the PTY multiplexer")
    os.set_blocking(master, True)
    fcntl.ioctl(master, syscalls.TIOCSPTLCK, struct.pack("i", 0))
    slave = fcntl.ioctl(master, syscalls.TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    if not stat.S_ISCHR(os.fstat(slave).st_mode) or os.major(os.fstat(slave).st_rdev) not in PTY_SLAVE_MAJORS:
        raise NsdashError("the machine's /dev/ptmx gave no PTY")
    if mode is not None:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(slave, termios.TCSANOW, mode)
    if winsize is not None:
        with contextlib.suppress(OSError):
            fcntl.ioctl(slave, termios.TIOCSWINSZ, winsize)
    socket.send_fds(channel, [b"m"], [master])
    os.close(master)
    channel.close()
    _dup_stdio((slave, slave, slave))
    os.close(slave)


def _login_shell() -> str:
    """root's shell from the machine's /etc/passwd (read after chroot), else /bin/sh."""
    try:
        with open("/etc/passwd") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if parts[0] == "root" and len(parts) >= 7 and parts[6]:
                    return parts[6]
    except OSError:
        pass
    return "/bin/sh"
