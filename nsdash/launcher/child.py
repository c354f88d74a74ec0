"""What runs after fork: the middle child (or none), and the container's PID 1 before exec.

Standard library, nsdash.system.syscalls and nsdash.errors only (a test checks
it): this code runs in a forked copy of the supervisor, where importing
anything heavy would be slow or unsafe.  The plan's mount operations were
built and imported by the parent; here they are only executed.

Failures before exec are written to ERR_FD (close-on-exec, so the parent reads
EOF when exec succeeds) as "message\\0hint", and the process exits.
"""

from __future__ import annotations

import _socket  # the C module: socket.py would pull in selectors and enum for one ioctl
import contextlib
import fcntl
import os
import resource  # imported now: after pivot_root the host's library is out of reach
import signal
import struct
import sys
import termios

from nsdash.launcher import sandbox
from nsdash.system import syscalls as sc

TYPE_CHECKING = False  # typing itself costs 2 ms to import; annotations are strings anyway
if TYPE_CHECKING:  # types only: the plan and its operations come built from the parent
    from typing import NoReturn, TypeGuard

    from nsdash.launcher.mounts import Bind, MountOp
    from nsdash.launcher.plan import Hardening, LaunchPlan, ProcessSettings

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def fail(err_fd: int, message: str, hint: str = "", code: int = 1) -> NoReturn:
    with contextlib.suppress(OSError):
        os.write(err_fd, f"{message}\0{hint}".encode(errors="replace")[:4000])
    os._exit(code)


def middle(plan: LaunchPlan, cgroup_dirs: list[str], info_fd: int, go_fd: int, err_fd: int,
           console_fd: int, place_fd: int = -1) -> NoReturn:
    """Join the cgroup, enter new namespaces, fork PID 1, report its host PID, exit.

    The cgroup namespace takes the cgroups its maker is in at that moment as its
    root, in every hierarchy, so it is made only once the container is in its own
    cgroup everywhere: otherwise a v1 hierarchy mounted inside shows the host's
    tree above the machine (and other machines' cgroups).  CGROUP_DIRS (all of
    them but the cgroup2 one a clone3 put us in) are joined here, before anything;
    PID 1, forked after, is born in them.
    PLACE_FD (when >= 0) holds us until the parent has had us moved into a cgroup
    someone else makes (systemd's scope): "1" goes on, EOF gives up.  CONSOLE_FD (when
    >= 0, with plan.console): the socket PID 1 sends its console's master over.
    """
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)  # the parent's self-pipe is not ours to write to
    if place_fd >= 0:
        placed = os.read(place_fd, 1)
        os.close(place_fd)
        if placed != b"1":
            os._exit(1)  # the parent reports why
    _join_cgroups(cgroup_dirs, err_fd)
    try:
        join_network_namespace(plan.netns_path)
        sc.unshare(plan.namespaces)
        pid = os.fork()
    except OSError as e:
        fail(err_fd, f"cannot create the container's namespaces: {e.strerror or e}", NAMESPACES_HINT)
    if pid == 0:
        os.close(info_fd)
        container_init(plan, go_fd, err_fd, console_fd)
    os.write(info_fd, struct.pack("i", pid))
    os._exit(0)


NAMESPACES_HINT = "nsdash needs root on a kernel with mount, PID, UTS, IPC and cgroup namespaces"


def born_pid1(plan: LaunchPlan, cgroup_dirs: list[str], go_fd: int, err_fd: int, console_fd: int) -> NoReturn:
    """PID 1 that the parent's clone3 made straight into the machine's cgroup2 directory and
    into the plan's new namespaces but the cgroup one (Container._clone_pid1): the middle
    child's work without its fork, its copy of the parent's memory and its exit.  It joins
    CGROUP_DIRS (a hybrid host's v1 hierarchies) and only then makes its cgroup namespace, for
    the reason middle() gives, then goes on as container_init."""
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)  # the parent's self-pipe is not ours to write to
    _join_cgroups(cgroup_dirs, err_fd)
    try:
        sc.unshare(plan.namespaces & sc.CLONE_NEWCGROUP)
    except OSError as e:
        fail(err_fd, f"cannot create the container's namespaces: {e.strerror or e}", NAMESPACES_HINT)
    container_init(plan, go_fd, err_fd, console_fd)


def _join_cgroups(cgroup_dirs: list[str], err_fd: int) -> None:
    d = ""
    try:
        for d in cgroup_dirs:
            join_self(d)
    except OSError as e:
        fail(err_fd, f"cannot move the container into cgroup {d}: {e.strerror or e}",
             "check that the cgroup hierarchies under /sys/fs/cgroup are writable by root")


def join_self(cgroup_dir: str) -> None:
    """Move the calling process, which must be single-threaded (a fork's child), into CGROUP_DIR.

    In a v1 hierarchy this writes 0 to `tasks`: moving the caller's own thread is the one
    move the kernel makes without the global threadgroup lock, whose write side waits for
    an RCU grace period on each cgroup.procs write (10-15 ms here, per spawn); with one
    thread, the thread is the process.  cgroup2 has no `tasks`: cgroup.procs there."""
    try:
        fd = os.open(os.path.join(cgroup_dir, "tasks"), os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = os.open(os.path.join(cgroup_dir, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)


def container_init(plan: LaunchPlan, go_fd: int, err_fd: int, console_fd: int) -> NoReturn:
    """PID 1 of the container: set up the root, wait for the parent's go, lock down, exec."""
    try:
        # Until exec, signals must neither kill Python with a traceback nor be lost.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)
        os.setsid()
        userns = plan.userns
        tree_fd = None
        if userns:
            # The parent writes our ID maps before go; until then we are host root, unmapped
            # here, and could create nothing on the file systems we are about to mount.
            # With ownership map/auto, go may bring the idmapped tree (userns.idmapped_tree).
            if userns.ownership in ("map", "auto"):
                tree_fd = _await_go_with_fd(go_fd)
            else:
                _await_go(go_fd)
        setup_root(plan, err_fd, become_userns_root=userns is not None, tree_fd=tree_fd)
        if plan.console:
            open_console(console_fd)
        sc.sethostname(plan.hostname)
        if plan.network not in ("host", "netns"):  # a joined namespace's links are its owner's
            loopback_up()
        # The mounts are ours alone; what follows needs the parent's host-side set-up (veth) done.
        if not userns:
            _await_go(go_fd)
        apply_process_settings(plan.process)
        harden(plan.hardening)
        drop_capabilities(plan)
    except sandbox.SandboxError as e:
        fail(err_fd, e.message, e.hint or "")
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        fail(err_fd, f"cannot set up the container:{where} {e.strerror or e}",
             "run with NSDASH_DEBUG=1 for details")
    except Exception as e:  # noqa: BLE001 - anything here must reach the parent as one line
        fail(err_fd, f"cannot set up the container: {e}")
    if plan.as_pid2:
        stub_init(plan, err_fd)
    exec_payload(plan, err_fd)


def open_console(channel: int) -> None:
    """The console, made as systemd-nspawn makes it: the first PTY of the container's own
    devpts (pts/0, where the plan's /dev/console symlink points) becomes stdin, stdout,
    stderr and the controlling terminal, and its master goes to the parent over CHANNEL
    (SCM_RIGHTS).  Nothing of the guest runs yet, so pts/0 is ours.  Being the guest's own,
    the console survives whatever the guest unmounts; a host PTY bound at /dev/console is
    a devpts mount that shutdown scripts take away, and with it the init's last words."""
    master = os.open("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, sc.TIOCSPTLCK, struct.pack("i", 0))
        number = struct.unpack("i", fcntl.ioctl(master, sc.TIOCGPTN, b"\0" * 4))[0]
        if number != 0:
            raise OSError(0, f"the container's devpts gave pts/{number} for the console, not pts/0",
                          "/dev/pts")
        slave = fcntl.ioctl(master, sc.TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # until the host sets it
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        if slave > 2:
            os.close(slave)
        sock = _socket.socket(fileno=channel)
        try:
            sock.sendmsg([b"c"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", master))])
        finally:
            sock.close()
    finally:
        os.close(master)


def _await_go(go_fd: int) -> None:
    if os.read(go_fd, 1) != b"1":
        os._exit(1)  # the parent gave up; it reports why
    os.close(go_fd)


def _await_go_with_fd(go_fd: int) -> int | None:
    """_await_go on the socket pair that may carry one fd with the go byte."""
    sock = _socket.socket(fileno=go_fd)
    try:
        data, ancillary, _, _ = sock.recvmsg(1, _socket.CMSG_SPACE(4))
    finally:
        sock.close()
    fds = [struct.unpack("i", d[:4])[0] for level, kind, d in ancillary
           if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(d) >= 4]
    if data != b"1":
        os._exit(1)  # the parent gave up; it reports why
    return fds[0] if fds else None


def setup_root(plan: LaunchPlan, err_fd: int, become_userns_root: bool = False,
               tree_fd: int | None = None) -> None:
    # Nothing we mount may propagate back to the host, but host unmounts still reach us.
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_SLAVE)
    root, ops = plan.root, list(plan.mounts)
    if become_userns_root:
        root, ops = _switch_to_userns_root(plan, ops, err_fd, tree_fd)
    for op in ops:
        try:
            op.execute(root)
        except OSError as e:
            fail(err_fd, f"cannot set up the container: {op.describe()}: {e.strerror or e}",
                 _hint_for(op))
    os.chdir(root)
    # pivot_root(".", ".") stacks the old root under the new one; detaching it leaves no view of the host.
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def _switch_to_userns_root(plan: LaunchPlan, ops: list[MountOp], err_fd: int,
                           tree_fd: int | None = None) -> tuple[str, list[MountOp]]:
    """-U: become root of the user namespace (uid 0 = the range's base), keeping a way in.

    As host root (unmapped here) we could not create files on the file systems we
    mount; as the namespace's root we may not search the host directories above
    the tree or a bind source.  So the root bind and every host-side bind source
    are opened first, and used afterwards through /proc/self/fd.  TREE_FD, when
    given, is the tree's idmapped mount: it takes the root bind's place.  With
    -x the overlay is mounted after the switch, as the namespace's root, over
    its upper and work directories (owned by the range).  Returns the new root
    path and the remaining operations.
    """
    first = ops.pop(0)
    overlay = type(first).__name__ == "RootOverlay"
    try:
        if tree_fd is not None:
            # The tree's own path, in our mount namespace only: the root itself, or -x's lower layer.
            sc.move_mount(tree_fd, plan.tree)
            os.close(tree_fd)
        elif not overlay:
            first.execute(plan.root)  # the tree bound onto itself (no files created)
    except OSError as e:
        fail(err_fd, f"cannot set up the container: {first.describe()}: {e.strerror or e}", _hint_for(first))
    keep = [os.open(plan.tree if overlay else plan.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)]
    if overlay:
        assert plan.ephemeral_dir is not None  # build_plan sets it with the overlay
        keep.append(os.open(plan.ephemeral_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
    rewritten: list[MountOp] = []
    for op in ops:
        if _is_bind(op) and not op.source_in_root:
            if op.make_source:
                os.makedirs(op.source, mode=0o755, exist_ok=True)  # --bind=:/PATH's temporary directory
            fd = os.open(op.source, os.O_PATH | os.O_CLOEXEC)
            keep.append(fd)
            values = {name: getattr(op, name) for name in op._fields}
            values["source"] = f"/proc/self/fd/{fd}"
            op = type(op)(**values)
        rewritten.append(op)
    os.setresgid(0, 0, 0)
    os.setgroups([])
    os.setresuid(0, 0, 0)
    if overlay:
        eph = f"/proc/self/fd/{keep[1]}"
        try:
            # userxattr: a user namespace may not write trusted.overlay.* on the upper layer.
            sc.mount("overlay", f"{eph}/root", "overlay", 0,
                     f"lowerdir=/proc/self/fd/{keep[0]},upperdir={eph}/upper,workdir={eph}/work,userxattr")
        except OSError as e:
            fail(err_fd, f"cannot set up the container: {first.describe()}: {e.strerror or e}", _hint_for(first))
        keep.append(os.open(f"{eph}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
    return f"/proc/self/fd/{keep[-1] if overlay else keep[0]}", rewritten


def _is_bind(op: MountOp) -> TypeGuard[Bind]:
    """isinstance without importing nsdash.launcher.mounts on this side."""
    return type(op).__name__ == "Bind"


def harden(hardening: Hardening) -> None:
    """Fail closed on a sandbox that is not what the plan promised, then lock it in.

    Runs after pivot_root, with all capabilities still held: verify masks and
    read-only paths, join a fresh session keyring (before seccomp denies
    keyctl), set no_new_privs if asked, load the seccomp filter (which needs
    CAP_SYS_ADMIN or no_new_privs, hence before the capability drop).
    """
    sandbox.verify_masks("/", hardening.verify_masked)
    sandbox.verify_read_only("/", hardening.verify_read_only)
    sandbox.join_session_keyring()
    if hardening.no_new_privileges:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    if hardening.seccomp:
        sandbox.install_seccomp(hardening.seccomp)


def _hint_for(op: MountOp) -> str:
    name = type(op).__name__
    if name == "Bind":
        return "check that the bind source exists and the target's parent is a directory"
    if name == "RootOverlay":
        return "--ephemeral needs overlayfs; check that the kernel has it (modprobe overlay)"
    return "run with NSDASH_DEBUG=1 for details"


def loopback_up() -> None:
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
    try:
        req = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))
    finally:
        s.close()


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


def drop_capabilities(plan: LaunchPlan) -> None:
    """Bounding set = the plan's; then switch user; then trim the other sets to match."""
    keep = set(plan.capability_numbers)
    for cap in range(_last_cap() + 1):
        if cap not in keep:
            sc.prctl(sc.PR_CAPBSET_DROP, cap)
    with contextlib.suppress(OSError):
        sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    user = plan.user
    ambient = plan.ambient_numbers
    if user.uid != 0 or user.gid != 0:
        os.setgroups(list(user.groups))
        if ambient:
            sc.prctl(sc.PR_SET_KEEPCAPS, 1)  # keep the permitted set across setuid, for the ambient raise
        os.setgid(user.gid)
        os.setuid(user.uid)  # a non-root user ends up with no capabilities at all, or only the ambient ones
        if ambient:
            raise_ambient(ambient, only=True)
        return
    os.setgroups(list(user.groups) or [0])
    _, permitted, _ = sc.capget()
    mask = 0
    for cap in keep:
        mask |= 1 << cap
    mask &= permitted
    sc.capset(mask, mask, 0)
    if ambient:
        raise_ambient(ambient)


def _clean_process_state(err_fd: int) -> None:
    # Python ignores SIGPIPE and SIGXFSZ; ignored signals survive exec, so restore them.
    for s in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    # Only stdio and the error pipe (close-on-exec) may reach the payload.
    os.closerange(3, err_fd)
    os.closerange(err_fd + 1, 1 << 20)


def exec_payload(plan: LaunchPlan, err_fd: int) -> NoReturn:
    env = dict(plan.env)
    try:
        os.chdir(plan.chdir)
    except OSError as e:
        if plan.chdir != plan.user.home:
            fail(err_fd, f"cannot change to directory {plan.chdir} in the container: {e.strerror}",
                 "pass an existing directory to --chdir")
        os.chdir("/")
    try:
        sandbox.verify_cwd_inside_root()
        _clean_process_state(err_fd)
        sandbox.verify_fds_before_exec()
    except sandbox.SandboxError as e:
        fail(err_fd, e.message, e.hint or "")
    try:
        os.execvpe(plan.argv[0], list(plan.argv), env)
    except OSError as e:
        fail(err_fd, f"cannot run {plan.argv[0]} in the container: {e.strerror}",
             "give a program that exists inside the tree", 127)


# ---------------------------------------------------------------- per-process settings

def apply_process_settings(settings: ProcessSettings) -> None:
    """--rlimit, --oom-score-adjust, --cpu-affinity and --personality, as nspawn's inner
    child sets them: in PID 1 before exec, while it still holds CAP_SYS_RESOURCE (raising
    a hard limit or lowering the OOM score needs it) and before seccomp is loaded.  Each
    failure is a SandboxError: one line to the parent."""
    if settings.rlimits:
        for name, soft, hard in settings.rlimits:
            limits = (resource.RLIM_INFINITY if soft < 0 else soft, resource.RLIM_INFINITY if hard < 0 else hard)
            try:
                resource.setrlimit(getattr(resource, f"RLIMIT_{name}"), limits)
            except (OSError, ValueError) as e:
                raise sandbox.SandboxError(f"cannot set --rlimit={name}={soft}:{hard}: {e}",
                                           "raising a hard limit needs CAP_SYS_RESOURCE; stay within nsdash's own limits") from None
    if settings.oom_score_adjust is not None:
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(settings.oom_score_adjust))
        except OSError as e:
            raise sandbox.SandboxError(f"cannot set --oom-score-adjust={settings.oom_score_adjust}: "
                                       f"{e.strerror}", "lowering the score needs CAP_SYS_RESOURCE, which "
                                       "nsdash's own process lacks here") from None
    if settings.cpu_affinity is not None:
        try:
            os.sched_setaffinity(0, settings.cpu_affinity)
        except OSError as e:
            raise sandbox.SandboxError(f"cannot set --cpu-affinity: {e.strerror}",
                                       f"name CPUs this host has (0-{(os.cpu_count() or 1) - 1})") from None
    if settings.personality is not None:
        persona = sc.PER_LINUX32 if settings.personality == "x86" else sc.PER_LINUX
        try:
            sc.personality(persona)
        except OSError as e:
            raise sandbox.SandboxError(f"cannot set --personality={settings.personality}: {e.strerror}",
                                       "leave --personality out on this host") from None


def raise_ambient(caps: tuple[int, ...], only: bool = False) -> None:
    """--ambient-capability: CAPS into the inheritable and ambient sets, so they survive
    exec into a program without file capabilities.  ONLY (a non-root user): permitted and
    effective shrink to CAPS too."""
    wanted = 0
    for cap in caps:
        wanted |= 1 << cap
    effective, permitted, _ = sc.capget()
    if only:
        effective, permitted = wanted & permitted, wanted & permitted
    sc.capset(effective, permitted, wanted & permitted)
    for cap in caps:
        sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, cap)
    if only:
        sc.prctl(sc.PR_SET_KEEPCAPS, 0)


def join_network_namespace(path: str | None) -> None:
    """--network-namespace-path: setns() into that namespace before the others are made
    (CLONE_NEWNET is then left out of the plan's set)."""
    if path is None:
        return
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.setns(fd, sc.CLONE_NEWNET)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- --as-pid2

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGQUIT, signal.SIGCONT, signal.SIGWINCH, signal.SIGRTMIN + 3, signal.SIGRTMIN + 4)


def stub_init(plan: LaunchPlan, err_fd: int) -> NoReturn:
    """PID 1 for --as-pid2: fork the payload as PID 2, reap everything, forward signals to it."""
    child = os.fork()
    if child == 0:
        exec_payload(plan, err_fd)
    os.close(err_fd)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for s in FORWARDED:
        signal.signal(s, forward)
    for fd in range(3):
        with contextlib.suppress(OSError):
            os.close(fd)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            if os.WIFSIGNALED(status):
                os._exit(128 + os.WTERMSIG(status))
            os._exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":  # pragma: no cover - this module is imported, never run
    sys.exit("nsdash.launcher.child is not a program")
