"""ContainerSpec -> LaunchPlan: everything the child will do, decided before fork.

The plan is data: namespace flags, an ordered list of mount operations
(nsdash.launcher.mounts), argv, environment, user, capabilities.  Building it
reads the tree and a few host files (os-release, resolv.conf, localtime), all
relative to parameters so unit tests use fixture trees; it makes no changes.
`describe()` is what `nsdash spawn --dry-run` prints.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
from pathlib import Path

from nsdash.errors import SpecError
from nsdash.launcher import mountopts, sandbox
from nsdash.launcher import mounts as m
from nsdash.launcher.spec import ContainerSpec, OverlayMount
from nsdash.launcher.validate import is_host_root
from nsdash.system import confined
from nsdash.system.idfiles import OS_RELEASE_PATHS, normalise_id, parse_os_release
from nsdash.system.syscalls import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_STRICTATIME,
)

TYPE_CHECKING = False  # mypy reads this as True; typing stays off the spawn path
if TYPE_CHECKING:
    from nsdash.launcher.modes import Ownership, ResolvConf, Timezone, Volatile

# systemd-nspawn's PATH for the payload (DEFAULT_PATH_COMPAT: works for split and merged /usr).
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NOTIFY_PATH = "/run/host/notify"
CREDENTIALS_PATH = "/run/host/credentials"  # $CREDENTIALS_DIRECTORY of PID 1, as nspawn's
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
BOOT_ID_FILE = "boot_id"  # in the run's state directory: this boot's ID, bound over BOOT_ID_PATH
NOTIFY_FILE = "notify"  # in the run's state directory: the sd_notify socket, bound at NOTIFY_PATH
# Directories of temporary layers in the run's state directory: --ephemeral's overlay, --bind's
# with an empty source, --overlay's with an empty upper.
EPHEMERAL_DIR, BIND_TEMP_DIR, OVERLAY_TEMP_DIR = "ephemeral", "bind-temp", "overlay-temp"
INIT_CANDIDATES = ("/usr/lib/systemd/systemd", "/lib/systemd/systemd", "/sbin/init")

CAPABILITIES = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

# systemd-nspawn(1), --capability=: "the following capabilities will be granted in any way".
DEFAULT_CAPABILITIES = frozenset({
    "CAP_AUDIT_CONTROL", "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER", "CAP_FSETID", "CAP_IPC_OWNER", "CAP_KILL", "CAP_LEASE", "CAP_LINUX_IMMUTABLE",
    "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_RAW", "CAP_SETFCAP",
    "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_CHROOT",
    "CAP_SYS_NICE", "CAP_SYS_PTRACE", "CAP_SYS_RESOURCE", "CAP_SYS_TTY_CONFIG",
})

DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
# The console: the first PTY of the container's own devpts instance (PID 1 opens it
# before anything else in the container can), as systemd-nspawn's /dev/console -> pts/0.
CONSOLE_PTS = "pts/0"

# $container and /run/systemd/container: what guests' own detection keys on (systemd's
# ConditionVirtualization and systemd-detect-virt, OpenRC's rc_sys, virt-what).  nsdash
# implements systemd-nspawn's Container Interface, so it says systemd-nspawn: guests then
# behave as under nspawn (OpenRC skips the cgroup mounts it cannot make; systemd says
# "systemd-nspawn", not "container-other").  systemd reads /run/host/container-manager
# before $container, so it says the same, as the Container Interface asks.
CONTAINER = "systemd-nspawn"
MACHINE_ID_MAX = 256  # bytes: /etc/machine-id is 33; anything longer is not one

# /proc entries systemd-nspawn makes inaccessible or read-only (nspawn-mount.c's mount table).
PROC_MASKED = ("/proc/kallsyms", "/proc/kcore", "/proc/keys", "/proc/sysrq-trigger", "/proc/timer_list")
PROC_READ_ONLY = ("/proc/acpi", "/proc/apm", "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq",
                  "/proc/scsi")

API_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC


class User(m.Frozen):
    name: str
    uid: int
    gid: int
    home: str
    shell: str
    groups: tuple[int, ...] = ()


class ProcessSettings(m.Frozen):
    """Per-process settings of the payload, applied by PID 1 before it locks itself down
    (launcher.child.apply_process_settings): --rlimit, --oom-score-adjust,
    --cpu-affinity and --personality."""

    rlimits: tuple[tuple[str, int, int], ...] = ()  # (NOFILE, soft, hard); -1 is infinity
    oom_score_adjust: int | None = None
    cpu_affinity: tuple[int, ...] | None = None
    personality: str | None = None  # x86 | x86-64

    def describe(self) -> str:
        parts = [f"rlimit {n}={_limit(s)}:{_limit(h)}" for n, s, h in self.rlimits]
        if self.oom_score_adjust is not None:
            parts.append(f"oom_score_adj {self.oom_score_adjust}")
        if self.cpu_affinity is not None:
            parts.append("cpus " + ",".join(map(str, self.cpu_affinity)))
        if self.personality is not None:
            parts.append(f"personality {self.personality}")
        return "; ".join(parts) or "inherited"


class Hardening(m.Frozen):
    """What PID 1 verifies and locks in before exec (launcher.child.harden)."""

    verify_masked: tuple[str, ...] = ()  # paths that must be inaccessible
    verify_read_only: tuple[str, ...] = ()  # paths that must be mounted read-only
    no_new_privileges: bool = False
    seccomp: bytes = b""  # the packed filters (sandbox.pack_filters); empty: none
    syscall_filter: str = "no filter"  # how --dry-run names the filter


class UserNamespace(m.Frozen):
    """-U: the container's ID range on the host and how the tree's owners meet it."""

    base: int
    size: int
    ownership: Ownership  # chown | map (userns.effective_ownership has settled auto)

    @property
    def range(self) -> tuple[int, int]:
        return self.base, self.size


def _limit(value: int) -> str:
    return "infinity" if value < 0 else str(value)


class LaunchPlan(m.Frozen):
    """What the child does, in order, and what the parent sets up around it."""

    machine: str
    hostname: str
    tree: str  # the OS tree on the host
    root: str  # where the container's root is mounted (the tree, or the ephemeral overlay)
    namespaces: int
    mounts: tuple[m.MountOp, ...]
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    chdir: str
    user: User
    capabilities: frozenset[str]
    boot: bool
    as_pid2: bool
    kill_signal: int
    network: str  # "host" | "private" | "veth" | "netns" (--network-namespace-path)
    uuid: str  # 32 hex digits
    ephemeral_dir: str | None = None  # holds upper/, work/ and root/ for --ephemeral
    created_paths: tuple[str, ...] = ()  # host paths in the tree the mounts create; removed after exit
    host_journal_dir: str | None = None  # --link-journal=host: made on the host before start
    host_journal_link: tuple[str, str] | None = None  # guest: (host symlink, its target)
    boot_id: str | None = None  # this boot's ID (8-4-4-4-12), written to the run dir before start
    hardening: Hardening = Hardening()
    userns: UserNamespace | None = None  # -U; None: the host's user namespace
    process: ProcessSettings = ProcessSettings()
    netns_path: str | None = None  # --network-namespace-path: joined instead of a new one
    ambient_capabilities: frozenset[str] = frozenset()  # --ambient-capability: raised for the payload
    console: bool = False  # PID 1 opens the console PTY in its devpts (child.open_console)

    @property
    def ambient_numbers(self) -> tuple[int, ...]:
        return tuple(sorted(CAPABILITIES[c] for c in self.ambient_capabilities if c in CAPABILITIES))

    @property
    def capability_numbers(self) -> tuple[int, ...]:
        return tuple(sorted(CAPABILITIES[c] for c in self.capabilities if c in CAPABILITIES))

    def describe(self) -> str:
        ns = [n for n, f in (("mnt", CLONE_NEWNS), ("uts", CLONE_NEWUTS), ("ipc", CLONE_NEWIPC),
                             ("cgroup", CLONE_NEWCGROUP), ("pid", CLONE_NEWPID), ("net", CLONE_NEWNET))
              if self.namespaces & f]
        lines = [
            f"machine:      {self.machine}",
            f"directory:    {self.tree}",
            f"root:         {self.root}",
            f"hostname:     {self.hostname}",
            f"namespaces:   {' '.join(ns)}",
            f"network:      {self.network}",
            f"command:      {' '.join(self.argv)}" + ("  (as PID 2 under a stub init)" if self.as_pid2 else ""),
            f"user:         {self.user.name} ({self.user.uid}:{self.user.gid})",
            f"chdir:        {self.chdir}",
            f"kill signal:  {signal_name(self.kill_signal)}",
            f"capabilities: {' '.join(sorted(self.capabilities))}",
            *([f"ambient:      {' '.join(sorted(self.ambient_capabilities))}"] if self.ambient_capabilities else []),
            f"syscalls:     {self.hardening.syscall_filter}",
            f"process:      {self.process.describe()}",
            "environment:",
            *(f"  {k}={v}" for k, v in self.env),
            "mounts:",
            *(f"  {op.describe()}" for op in self.mounts),
        ]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- tree lookups

# systemd-nspawn's limits on the file systems it mounts (systemd's TMPFS_LIMITS_*): a
# container cannot fill the host's memory through /dev/shm or /tmp.  A --tmpfs on the
# same path (or the payload's own mount) replaces them, as with nspawn.
TMPFS_LIMITS_DEV = "size=4m,nr_inodes=1m"
TMPFS_LIMITS_RUN = "size=20%,nr_inodes=800k"
TMPFS_LIMITS_TMP = "size=10%,nr_inodes=400k"
TMPFS_LIMITS_SHM = "size=10%,nr_inodes=1m"

_ACCOUNTS_MAX = 16 << 20  # /etc/passwd and /etc/group: generous, but bounded


def _read(path: str | Path) -> bytes | None:
    """A regular file's bytes, else None.  O_NONBLOCK: a FIFO planted in a tree (as
    /etc/machine-id, say) must not hang the start waiting for a writer."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with open(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError:
        return None
    finally:
        os.close(fd)


def _tree_read(tree: str, path: str, limit: int = confined.SMALL) -> bytes:
    """A tree file's bytes, confined to the tree (its symlinks cannot reach the host's
    files), b"" when it is missing or refused: the tree is the guest's, even before it runs."""
    try:
        return confined.read_bytes(tree, path, limit)
    except OSError:
        return b""


def find_executable(tree: str, command: str, path: str = CONTAINER_PATH, cwd: str = "/") -> str | None:
    """The container path of COMMAND as the container's execvp would find it, or None.

    A relative name with a slash (./run.sh) is looked up from CWD, the payload's working directory."""
    if "/" in command:
        candidates = [command if command.startswith("/") else f"{cwd.rstrip('/')}/{command}"]
    else:
        candidates = [f"{d}/{command}" for d in path.split(":") if d]
    for cand in candidates:
        if not cand.startswith("/"):
            continue
        host = m.resolve_in_root(tree, cand)
        try:
            st = os.stat(host)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return cand
    return None


def lookup_user(tree: str, name: str | None) -> User:
    """A user from the tree's /etc/passwd (and its groups from /etc/group)."""
    if name is None or name in ("root", "0"):
        name = "root"
    passwd = _tree_read(tree, "/etc/passwd", _ACCOUNTS_MAX).decode(errors="replace")
    for line in passwd.splitlines():
        f = line.split(":")
        if len(f) >= 7 and (f[0] == name or f[2] == name):
            try:
                uid, gid = int(f[2]), int(f[3])
            except ValueError:
                continue
            return User(f[0], uid, gid, f[5] or "/", f[6] or "/bin/sh", _groups_of(tree, f[0], gid))
    if name == "root":
        return User("root", 0, 0, "/root", "/bin/sh")
    if name.isdigit():
        return User(name, int(name), int(name), "/", "/bin/sh")
    raise SpecError(f"user '{name}' does not exist in the container's /etc/passwd",
                    "pick a user the tree defines, or a numeric UID, with -u")


def _groups_of(tree: str, user: str, gid: int) -> tuple[int, ...]:
    text = _tree_read(tree, "/etc/group", _ACCOUNTS_MAX).decode(errors="replace")
    found = [gid]
    for line in text.splitlines():
        f = line.split(":")
        if len(f) >= 4 and user in f[3].split(","):
            with contextlib.suppress(ValueError):
                found.append(int(f[2]))
    return tuple(dict.fromkeys(found))


def tree_machine_id(tree: str, spec_uuid: str | None) -> str | None:
    """The machine's ID as systemd-nspawn settles it: the tree's /etc/machine-id when set (it
    wins even over --uuid), else --uuid, else None.  Journals are linked by it."""
    return normalise_id(_tree_read(tree, "/etc/machine-id", 256).decode(errors="replace")) or normalise_id(spec_uuid)


def host_os_release(host_root: str = "/") -> bytes:
    for p in OS_RELEASE_PATHS:
        data = _read(os.path.join(host_root, p.lstrip("/")))
        if data is not None:
            return data
    return b""


# ---------------------------------------------------------------- validation

def _check_tree(spec: ContainerSpec) -> str:
    tree = os.path.abspath(spec.directory)
    if not os.path.exists(tree):
        raise SpecError(f"directory {tree} does not exist", "pass the OS tree's directory with -D")
    if not os.path.isdir(tree):
        raise SpecError(f"{tree} is not a directory", "pass the OS tree's directory with -D")
    if is_host_root(tree) and not spec.ephemeral:
        # nspawn's rule, on the resolved directory: every route to a spec passes here
        raise SpecError("spawning a container on the host's root directory is not supported",
                        "add --ephemeral (-x) to run on a discarded copy of it")
    # A symlinked /proc, /sys or /dev could aim the API mounts elsewhere: refuse the tree.
    sandbox.refuse_symlinked_api_dirs(tree)
    if not os.path.isdir(m.resolve_in_root(tree, "/usr")):
        raise SpecError(f"{spec.image or tree} does not look like an OS tree (it has no /usr)",
                        "point -D at the root of an OS tree (for example one made with debootstrap)")
    return tree


def _command(spec: ContainerSpec, tree: str, user: User) -> tuple[str, ...]:
    where = spec.image or tree  # an image is named as the user gave it, not where it is mounted
    if spec.boot:
        for init in INIT_CANDIDATES:
            if find_executable(tree, init):
                return (init, *spec.command)
        raise SpecError(f"no init found in {where} (looked for {', '.join(INIT_CANDIDATES)})",
                        "install an init system in the tree, or run a command without -b")
    if spec.command:
        cwd = spec.chdir or ("/" if spec.boot else user.home)
        if find_executable(tree, spec.command[0], cwd=cwd) is None:
            raise SpecError(f"command '{spec.command[0]}' not found in {where}",
                            "give a program that exists inside the tree (its path inside the container)")
        return spec.command
    # No command: a login shell, as systemd-nspawn starts one.
    for shell in (user.shell, "/bin/bash", "/bin/sh"):
        if shell and find_executable(tree, shell):
            return (shell, "-l")
    raise SpecError(f"no shell found in {where}", "give the command to run after the options")


def _missing_chain(tree: str, host_path: str) -> list[str]:
    """The components of HOST_PATH that do not exist yet, outermost first."""
    missing: list[str] = []
    p = host_path
    while p != tree and p.startswith(tree + "/") and not os.path.lexists(p):
        missing.append(p)
        p = os.path.dirname(p)
    return missing[::-1]


def _bind_ops(spec: ContainerSpec, tree: str, state_dir: str | None,
              userns: bool) -> tuple[list[m.MountOp], list[str], list[str]]:
    """The user's mounts, the mount points they create in the tree, and what they create
    on the host outside it (overlay work directories, removed at exit even with -x)."""
    _refuse_root_mounts(spec)
    ops: list[m.Bind | m.Filesystem | m.Overlay | m.Mask] = []
    created: list[str] = []
    host_created: list[str] = []
    for i, b in enumerate(spec.binds):
        if b.source is None:
            # nspawn: an empty source is a fresh temporary directory, removed after exit
            if state_dir is None:
                raise SpecError(f"--bind with an empty source ({b.target}) needs a state directory",
                                "set NSDASH_STATE_DIR or run as root")
            src = os.path.join(state_dir, BIND_TEMP_DIR, str(i))
        else:
            src = os.path.abspath(b.source)
            if not os.path.exists(src):
                raise SpecError(f"bind source {src} does not exist", "create it, or fix the --bind/--bind-ro value")
        if b.idmap and userns:
            raise SpecError(f"the bind options idmap/rootidmap ({b.target}) with --private-users are not supported "
                            "by nsdash",
                            "leave idmap out and chown the source to the container's range, or bind read-only")
        created += _mount_point(tree, "bind", b.target)
        ops.append(m.Bind(src, b.target, read_only=b.read_only, recursive=b.recursive,
                          flags=MS_NOSUID | MS_NODEV if b.read_only else 0, make_source=b.source is None))
    for t in spec.tmpfs:
        created += _mount_point(tree, "tmpfs", t.target)
        # ro, noexec, ... are mount flags, the rest tmpfs's own data (one place splits them)
        flags, data = mountopts.split(t.options, MS_NOSUID | MS_NODEV)
        ops.append(m.Filesystem("tmpfs", t.target, flags, data or None))
    for i, o in enumerate(spec.overlays):
        if userns:
            raise SpecError("--overlay together with --private-users is not supported by nsdash",
                            "leave one of them out")
        ops.append(_overlay_op(i, o, state_dir, host_created))
        created += _mount_point(tree, "overlay", o.target)
    ops += [m.Mask(path, missing_ok=False) for path in spec.inaccessible]
    # nspawn mounts them by destination, parents first, whatever the order of the options
    # (custom_mount_compare): a --bind under a --tmpfs lands in it rather than under it.
    ops.sort(key=_by_destination)
    mounts: list[m.MountOp] = [*ops]
    return mounts, created, host_created


def _refuse_root_mounts(spec: ContainerSpec) -> None:
    """A --bind, --tmpfs, --overlay or --inaccessible onto the machine's root itself: nspawn
    then replaces the root; nsdash does not, and set-up failed later with an unclear error
    (/dev/pts/ptmx missing under the new root).  Refused before anything is made."""
    kinds = (("--bind", [b.target for b in spec.binds]), ("--tmpfs", [t.target for t in spec.tmpfs]),
             ("--overlay", [o.target for o in spec.overlays]), ("--inaccessible", list(spec.inaccessible)))
    for option, targets in kinds:
        if any(t.rstrip("/") == "" for t in targets):
            raise SpecError(f"{option} onto the machine's root '/' is not supported by nsdash",
                            "give the root with -D/--directory or -i/--image (--volatile=yes for a tmpfs root), "
                            "and mount below it")


_KIND_ORDER = (m.Bind, m.Filesystem, m.Overlay, m.Mask)  # nspawn's, for one destination


def _by_destination(op: m.Bind | m.Filesystem | m.Overlay | m.Mask) -> tuple[tuple[str, ...], int]:
    return tuple(p for p in op.target.split("/") if p), _KIND_ORDER.index(type(op))


def _mount_point(tree: str, what: str, target: str) -> list[str]:
    """The mount point of the user's WHAT mount on TARGET: the components it makes in TREE, or
    a SpecError when TARGET's symlinks climb out of the tree."""
    try:
        return _missing_chain(tree, m.resolve_in_root(tree, target, strict=True))
    except m.EscapeError:
        raise SpecError(f"{what} target {target} escapes the container root through a symlink",
                        "mount it on a path that stays inside the tree") from None


def _overlay_op(i: int, o: OverlayMount, state_dir: str | None, created: list[str]) -> m.Overlay:
    """The mount for --overlay I; a user-given upper gets its work directory as a sibling
    (made at start, removed at exit: it goes into CREATED), a temporary one lives in the
    run's state directory."""
    lower = tuple(str(p) for p in o.lower)
    if o.read_only:
        if len(lower) < 2:
            raise SpecError(f"--overlay-ro for {o.target} needs two or more source paths",
                            "overlayfs stacks at least two read-only layers")
        return m.Overlay(lower, o.target, read_only=True)
    if o.temporary:
        if state_dir is None:
            raise SpecError(f"--overlay with an empty upper ({o.target}) needs a state directory",
                            "set NSDASH_STATE_DIR or run as root")
        base = os.path.join(state_dir, OVERLAY_TEMP_DIR, str(i))
        return m.Overlay(lower, o.target, os.path.join(base, "upper"), os.path.join(base, "work"),
                         make_upper=True)
    assert o.upper is not None
    work = os.path.join(os.path.dirname(o.upper), f".#{os.path.basename(o.upper)}.nsdash-work")
    created += [work, os.path.join(work, "work"), os.path.join(work, "index")]
    return m.Overlay(lower, o.target, str(o.upper), work)


# ---------------------------------------------------------------- the plan

def build_plan(spec: ContainerSpec, *, console: bool = False, state_dir: str | None = None,
               host_root: str = "/", host_term: str | None = None,
               available_caps: frozenset[str] | None = None,
               session_uuid: str | None = None) -> LaunchPlan:
    """Turn SPEC into a LaunchPlan.

    console: PID 1 makes the first PTY of the container's own devpts its console,
    with /dev/console a symlink to it (systemd-nspawn's arrangement: see
    child.open_console); False for none.  session_uuid: the container UUID to use when the tree
    has no machine ID and no --uuid was given.  state_dir: the run's private directory under the state
    root (ephemeral layers, the notify socket).  host_root: where to read the
    host's own files.  available_caps: what this process may keep (None: all).
    """
    tree = _check_tree(spec)
    user_range, ownership = _private_users(spec, tree)
    view, pivot_ops, pivot_created = _pivot(spec, tree, user_range is not None)  # what the container sees as /
    user = lookup_user(view, spec.user)
    argv = _command(spec, view, user)
    bind_ops, created, host_created = _bind_ops(spec, view, state_dir, user_range is not None)
    created = pivot_created + created
    # $container_uuid: the machine ID (tree's, else --uuid), else one for the session (kept across
    # reboots by the caller, so systemd derives the same transient machine ID), else a new one.
    machine_id = tree_machine_id(view, spec.uuid)
    uuid_hex = (machine_id or session_uuid or new_uuid()).replace("-", "").lower()

    namespaces = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP | CLONE_NEWPID
    network = "host"
    if spec.network_namespace_path:
        _check_netns(spec.network_namespace_path)
        network = "netns"
    elif spec.network_veth:
        network = "veth"
    elif spec.private_network:
        network = "private"
    if network not in ("host", "netns"):
        namespaces |= CLONE_NEWNET
    if user_range:
        namespaces |= CLONE_NEWUSER

    ephemeral_dir = None
    root = tree
    ops: list[m.MountOp] = []
    if spec.ephemeral and spec.image is None:  # an --image is copied instead (launcher.image)
        if state_dir is None:
            raise SpecError("--ephemeral needs a state directory", "set NSDASH_STATE_DIR or run as root")
        ephemeral_dir = os.path.join(state_dir, EPHEMERAL_DIR)
        root = os.path.join(ephemeral_dir, "root")
        ops.append(m.RootOverlay(tree, os.path.join(ephemeral_dir, "upper"),
                                 os.path.join(ephemeral_dir, "work"), root))
    else:
        ops.append(m.RootBind(tree, tree))
    ops += pivot_ops
    ops += _volatile_ops(spec.volatile)

    # /run first: the inaccessible nodes that mask /proc entries live there.
    ops += [
        m.tmpfs("/run", "0755", extra=TMPFS_LIMITS_RUN),
        m.InaccessibleNodes(),
        m.Filesystem("proc", "/proc", API_FLAGS),
        m.ReadOnly("/proc/sys", API_FLAGS, missing_ok=False),
    ]
    if network != "host":
        # nspawn keeps /proc/sys/net writable when the container has its own network.
        ops.insert(-1, m.Bind("/proc/sys/net", "/proc/sys/net", source_in_root=True))
    ops += [m.Mask(p) for p in PROC_MASKED]
    ops += [m.ReadOnly(p) for p in PROC_READ_ONLY]
    boot_id = None
    if state_dir is not None:
        # A fresh boot ID for every boot, as systemd-nspawn gives (journald and `journalctl -b`
        # tell boots apart by it); the host's would make every boot of every container the same.
        boot_id = format_uuid(new_uuid())
        ops.append(m.Bind(os.path.join(state_dir, BOOT_ID_FILE), BOOT_ID_PATH, read_only=True,
                          recursive=False, flags=API_FLAGS))
    ops += [
        # sysfs may only be mounted by a user namespace that owns the network namespace too.
        m.HostSysReadOnly() if user_range and network in ("host", "netns")
        else m.Filesystem("sysfs", "/sys", API_FLAGS | MS_RDONLY),
        m.Filesystem("cgroup2", "/sys/fs/cgroup", API_FLAGS, "nsdelegate"),
        m.tmpfs("/dev", "0755", MS_NOSUID | MS_STRICTATIME, TMPFS_LIMITS_DEV),
    ]
    dev = os.path.join(host_root, "dev")
    nodes = [n for n in DEV_NODES if os.path.exists(os.path.join(dev, n))]
    if os.path.exists(os.path.join(dev, "net/tun")):
        nodes.append("net/tun")
    # Made with mknod, as nspawn does; a user namespace may not make device nodes (and its
    # tmpfs would not honour them): there they are bound from the host.
    ops += [m.Bind(f"/dev/{n}", f"/dev/{n}", recursive=False) if user_range else m.DeviceNode(f"/dev/{n}", f"/dev/{n}")
            for n in nodes]
    ops += _dev_char_links(dev, nodes)
    ops += [
        m.Filesystem("devpts", "/dev/pts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"),
        m.Symlink("/dev/ptmx", "pts/ptmx"),
        # A symlink, not a bind of a host PTY: a guest's shutdown unmounts every devpts mount
        # outside /dev/pts (Debian's umountnfs.sh), and a bound console went with it.
        *([m.Symlink("/dev/console", CONSOLE_PTS)] if console else []),
        m.tmpfs("/dev/shm", "1777", extra=TMPFS_LIMITS_SHM),
        m.Filesystem("mqueue", "/dev/mqueue", API_FLAGS),
        m.Symlink("/dev/fd", "/proc/self/fd"),
        m.Symlink("/dev/stdin", "/proc/self/fd/0"),
        m.Symlink("/dev/stdout", "/proc/self/fd/1"),
        m.Symlink("/dev/stderr", "/proc/self/fd/2"),
        m.tmpfs("/tmp", "1777", extra=TMPFS_LIMITS_TMP),
    ]
    # The Container Interface: who runs us, and the host's identity.
    os_release = host_os_release(host_root)
    ops += [
        m.WriteFile("/run/host/os-release", os_release),
        m.WriteFile("/run/host/container-manager", f"{CONTAINER}\n".encode()),
        m.WriteFile("/run/host/container-uuid", f"{format_uuid(uuid_hex)}\n".encode()),
        m.WriteFile("/run/systemd/container", f"{CONTAINER}\n".encode()),
    ]
    if spec.credentials:
        ops.append(m.MakeDir(CREDENTIALS_PATH, 0o700))  # the mount point, made before /run/host turns read-only
    if state_dir is not None:
        ops.append(m.WriteFile(NOTIFY_PATH, b""))  # the mount point, made before /run/host turns read-only
    ops.append(m.ReadOnly("/run/host", MS_NOSUID | MS_NODEV, missing_ok=False, recursive=False))
    if state_dir is not None:
        ops.append(m.Bind(os.path.join(state_dir, NOTIFY_FILE), NOTIFY_PATH, recursive=False))
    ops += _credential_ops(spec)  # on top of the read-only /run/host (a plain bind would hide them)

    # --volatile=state keeps the tree read-only too (only /var is in memory): "auto" binds
    # the host's files there rather than writing into the tree, as for --read-only
    writable = not spec.read_only and spec.volatile != "state"
    host_files = _resolv_conf_ops(spec.resolv_conf, network, writable, host_root)
    host_files += _timezone_ops(spec.timezone, view, writable, host_root)
    journal = _journal(spec, view, machine_id, host_root)
    if not writable:
        # A read-only tree is not changed (nspawn's mkdir and writes fail with EROFS): it goes on
        # without the host's files, as nspawn does, but refuses the user's own mounts, as nspawn does.
        host_files, _ = _kept_out(view, ops, host_files)
        journal = _journal_kept_out(spec, view, ops + host_files, journal)
        _refuse_new_mount_points(spec, view, ops + host_files + journal[0], bind_ops)
    journal_ops, host_journal_dir, host_journal_link = journal
    ops += host_files
    ops += journal_ops
    ops += bind_ops
    if spec.read_only or spec.volatile == "state":
        ops.append(m.RemountRoot(root))

    caps = set(DEFAULT_CAPABILITIES)
    if network != "host":
        caps.add("CAP_NET_ADMIN")
    caps |= set(spec.capabilities)
    caps -= set(spec.drop_capabilities)
    caps |= set(spec.ambient_capabilities)  # nspawn retains what it raises in the ambient set
    if available_caps is not None:
        caps &= available_caps

    env = _environment(spec, user, uuid_hex, os_release, console, host_term, state_dir)
    kill = spec.kill_signal if spec.kill_signal is not None else (
        signal.SIGRTMIN + 3 if spec.boot else signal.SIGKILL)
    chdir = spec.chdir or ("/" if spec.boot else user.home)
    return LaunchPlan(
        machine=spec.machine, hostname=spec.effective_hostname, tree=tree, root=root,
        namespaces=namespaces, mounts=tuple(ops), argv=tuple(argv), env=tuple(env), chdir=chdir,
        user=user, capabilities=frozenset(caps), boot=spec.boot, as_pid2=spec.as_pid2,
        kill_signal=int(kill), network=network, uuid=uuid_hex, ephemeral_dir=ephemeral_dir,
        netns_path=spec.network_namespace_path, ambient_capabilities=frozenset(spec.ambient_capabilities) & caps,
        created_paths=(tuple(created) if not spec.ephemeral else ()) + tuple(host_created),
        host_journal_dir=host_journal_dir, host_journal_link=host_journal_link, boot_id=boot_id,
        process=ProcessSettings(rlimits=spec.rlimits, oom_score_adjust=spec.oom_score_adjust,
                                cpu_affinity=spec.cpu_affinity, personality=spec.personality),
        hardening=_hardening(spec, frozenset(caps)), console=console,
        userns=UserNamespace(*user_range, ownership) if user_range else None)


NS_GET_NSTYPE = 0xB703  # ioctl on a namespace file: which kind it is


def _check_netns(path: str) -> None:
    """--network-namespace-path must name a network namespace (e.g. /run/netns/NAME)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise SpecError(f"--network-namespace-path {path}: {e.strerror}", "give a file such as /run/netns/NAME") from None
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        kind = None
    finally:
        os.close(fd)
    if kind != CLONE_NEWNET:
        raise SpecError(f"--network-namespace-path {path} is not a network namespace",
                        "give a file such as /run/netns/NAME or /proc/PID/ns/net")


def _volatile_ops(mode: Volatile) -> list[m.MountOp]:
    """--volatile=yes: a tmpfs root holding the tree's /usr; state: a tmpfs /var (the root
    turns read-only at the end, as with --read-only).  Nothing written survives the run."""
    if mode == "yes":
        return [m.VolatileRoot()]
    if mode == "state":
        return [m.tmpfs("/var", "0755")]
    return []


def _pivot(spec: ContainerSpec, tree: str, userns: bool) -> tuple[str, list[m.MountOp], list[str]]:
    """--pivot-root=NEW[:OLD]: the host path of what the container sees as its root, the
    operation that makes it so, and the mount point it creates for OLD."""
    if not spec.pivot_root:
        return tree, [], []
    new, old = spec.pivot_root[0], (spec.pivot_root[1] if len(spec.pivot_root) > 1 else None)
    if userns:
        raise SpecError("--pivot-root together with --private-users is not supported by nsdash",
                        "leave one of them out")
    try:
        view = m.resolve_in_root(tree, new, strict=True)
    except m.EscapeError:
        raise SpecError(f"--pivot-root {new} escapes the tree through a symlink", "name a directory inside it") from None
    if not os.path.isdir(view):
        raise SpecError(f"--pivot-root: {new} is not a directory in {tree}", "name an existing directory of the tree")
    created: list[str] = []
    if old:
        try:
            created = _missing_chain(view, m.resolve_in_root(view, old, strict=True))
        except m.EscapeError:
            raise SpecError(f"--pivot-root: {old} escapes the new root through a symlink",
                            "name a directory inside it") from None
    return view, [m.PivotInto(new, old)], created


def _private_users(spec: ContainerSpec, tree: str) -> tuple[tuple[int, int] | None, Ownership]:
    """--private-users / -U: the (base, size) of the container's user namespace (or None) and
    the ownership mode to use (userns.effective_ownership)."""
    from nsdash.launcher import userns

    opt = userns.parse_private_users(spec.private_users)
    if not opt.enabled:
        return None, "off"
    user_range = userns.resolve_range(opt, spec.machine, Path(tree), userns.host_ranges())
    assert user_range is not None
    ownership = userns.effective_ownership(spec.private_users_ownership, os.stat(tree).st_uid,
                                           *user_range, spec.ephemeral)
    return user_range, ownership


def _hardening(spec: ContainerSpec, caps: frozenset[str]) -> Hardening:
    """What the child verifies and locks in before exec (nsdash.launcher.child.harden)."""
    return Hardening(
        verify_masked=PROC_MASKED,
        verify_read_only=("/proc/sys", "/sys", *PROC_READ_ONLY),
        no_new_privileges=spec.no_new_privileges,
        # the bounding set decides which capability-tied call groups open, as in nspawn
        seccomp=seccomp_program(caps, spec.syscall_allow, spec.syscall_deny, spec.suppress_sync),
        syscall_filter=" ".join(["nspawn's allow-list", *(f"+{n}" for n in spec.syscall_allow),
                                 *(f"-{n}" for n in spec.syscall_deny),
                                 *(["(sync calls suppressed)"] if spec.suppress_sync else [])]),
    )


def seccomp_program(capabilities: frozenset[str], allow: tuple[str, ...] = (),
                    deny: tuple[str, ...] = (), suppress_sync: bool = False) -> bytes:
    """The compiled seccomp filters (sandbox.pack_filters), from a cache under the state root when fresh.

    Importing libseccomp's binding and compiling costs more than the rest of a
    spawn; the result depends only on seccomp.py and syscall_groups.py, the
    container's capability set and its --system-call-filter lists, so it is
    kept, keyed by the two modules' identities (mtime, size, inode), the
    machine architecture, the capabilities as a bit mask and a digest of the
    lists.  The state root is root's.
    """
    from nsdash.system import paths

    try:
        ids = "-".join(f"{st.st_mtime_ns}.{st.st_size}.{st.st_ino}" for st in (
            Path(__file__).with_name(name).stat() for name in ("seccomp.py", "syscall_groups.py")))
        mask = sum(1 << i for i, cap in enumerate(CAPABILITIES) if cap in capabilities)
        key = f"{ids}-{os.uname().machine}-{mask:x}" + ("-nosync" if suppress_sync else "")
        if allow or deny:
            import hashlib  # only with --system-call-filter: hashlib costs the spawn path ~2 ms

            lists = f"{' '.join(sorted(set(allow)))}~{' '.join(sorted(set(deny)))}"
            key += "-" + hashlib.sha256(lists.encode()).hexdigest()[:16]
        cached = paths.state_root() / "cache" / f"seccomp2-{key}.bpf"
        data = _read(cached)
        if data:
            sandbox.unpack_filters(data)
            return data
    except (OSError, sandbox.SandboxError):
        cached = None
    from nsdash.launcher.seccomp import compile_filters  # libseccomp: parent side only

    program = sandbox.pack_filters(compile_filters(capabilities, allow, deny, suppress_sync))
    if cached is not None:
        with contextlib.suppress(OSError):
            cached.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
            tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(program)
            os.replace(tmp, cached)
    return program


def _credential_ops(spec: ContainerSpec) -> list[m.MountOp]:
    """--set-credential/--load-credential as nspawn passes them: a ramfs (never swapped) at
    /run/host/credentials, one read-only file per credential, the directory read-only."""
    if not spec.credentials:
        return []
    ops: list[m.MountOp] = [m.Filesystem("ramfs", CREDENTIALS_PATH, API_FLAGS, "mode=0700", mode=0o700)]
    ops += [m.WriteFile(f"{CREDENTIALS_PATH}/{c.id}", c.data, mode=0o400) for c in spec.credentials]
    ops.append(m.ReadOnly(CREDENTIALS_PATH, API_FLAGS, missing_ok=False, recursive=False))
    return ops


def _environment(spec: ContainerSpec, user: User, uuid_hex: str, os_release: bytes, tty: bool,
                 host_term: str | None, state_dir: str | None) -> list[tuple[str, str]]:
    env: dict[str, str] = {
        "PATH": CONTAINER_PATH,
        "container": CONTAINER,
        "container_uuid": format_uuid(uuid_hex),
        "TERM": (host_term or "vt220") if tty else "dumb",
        "HOME": user.home,
        "USER": user.name,
        "LOGNAME": user.name,
    }
    if spec.user:
        env["SHELL"] = user.shell
    if state_dir is not None:
        env["NOTIFY_SOCKET"] = NOTIFY_PATH
    release = parse_os_release(os_release)
    for key in ("ID", "VERSION_ID", "BUILD_ID", "VARIANT_ID", "IMAGE_ID", "IMAGE_VERSION"):
        if release.get(key):
            env[f"container_host_{key.lower()}"] = release[key]
    if spec.credentials:
        env["CREDENTIALS_DIRECTORY"] = CREDENTIALS_PATH
    for k, v in spec.setenv:
        env[k] = v
    return list(env.items())


def _kept_out(tree: str, before: list[m.MountOp], ops: list[m.MountOp]) -> tuple[list[m.MountOp], list[m.MountOp]]:
    """OPS split in two for a read-only tree (--read-only, --volatile=state): those it can take,
    and those that would change it on the host, which the user asked to keep as it is: a mount
    whose mount point it lacks, a file written, linked or deleted in it (--resolv-conf=copy-host,
    --timezone=symlink: nspawn's write fails there, and it goes on).  BEFORE: the mounts made
    first (what lands under /run or /tmp lands in their tmpfs, not in the tree)."""
    over = _mounted_over(tree, before)
    kept: list[m.MountOp] = []
    out: list[m.MountOp] = []
    for op in ops:
        if isinstance(op, (m.Bind, m.Filesystem, m.Overlay)):
            changes = _lands_in_tree(tree, op.target, over)
        elif isinstance(op, (m.WriteFile, m.Symlink, m.Delete, m.MakeDir)):  # the file itself, not what a link names
            target = os.path.join(m.resolve_in_root(tree, os.path.dirname(op.target)), os.path.basename(op.target))
            changes = not _covered(target, over) and not (isinstance(op, m.MakeDir) and os.path.isdir(target))
        else:
            changes = False
        if changes:
            out.append(op)
        else:
            kept.append(op)
            over += _mounted_over(tree, [op])
    return kept, out


def _refuse_new_mount_points(spec: ContainerSpec, tree: str, before: list[m.MountOp],
                             ops: list[m.MountOp]) -> None:
    """The user's --bind/--tmpfs/--overlay on a read-only tree: each target must be there already
    (or under a file system mounted before it), else the run is refused, as systemd-nspawn refuses
    it ("Failed to create mount point ...: Read-only file system"), before anything is made."""
    _, refused = _kept_out(tree, before, ops)
    if refused:
        op = refused[0]
        assert isinstance(op, (m.Bind, m.Filesystem, m.Overlay))  # (OPS: the user's mounts)
        option = "--bind" if isinstance(op, m.Bind) else "--tmpfs" if isinstance(op, m.Filesystem) else "--overlay"
        why = _read_only_option(spec)
        raise SpecError(f"{option} target {op.target} does not exist in the tree, and {why} keeps the tree "
                        "unchanged: nsdash makes no mount point in it",
                        f"create {op.target} in the tree first, or leave out {why}")


def _journal_kept_out(spec: ContainerSpec, tree: str, before: list[m.MountOp], journal: _Journal) -> _Journal:
    """--link-journal on a read-only tree that lacks /var/log/journal/MACHINE-ID: systemd-nspawn
    links nothing for try-guest, try-host and auto (and makes nothing on the host either), and
    refuses guest and host ("Failed to create /var/log/journal: Read-only file system")."""
    if not _kept_out(tree, before, journal[0])[1]:
        return journal
    mode = spec.link_journal
    if mode.startswith("try-") or mode == "auto":
        return [], None, None
    why = _read_only_option(spec)
    raise SpecError(f"--link-journal={mode} needs /var/log/journal/MACHINE-ID in the tree, and {why} keeps the "
                    "tree unchanged: nsdash makes no directory in it",
                    f"create it in the tree first, or use --link-journal=try-{mode}")


def _read_only_option(spec: ContainerSpec) -> str:
    """The option that keeps the tree read-only, as messages name it."""
    return "--read-only" if spec.read_only else "--volatile=state"


def _mounted_over(tree: str, ops: list[m.MountOp]) -> list[str]:
    """The host paths (in TREE) that OPS mount a file system over: what is made under them later
    is made in that file system, not in the tree."""
    if any(isinstance(op, m.VolatileRoot) for op in ops):
        return [tree]
    return [m.resolve_in_root(tree, op.target) for op in ops
            if isinstance(op, (m.Bind, m.Filesystem, m.Overlay, m.HostSysReadOnly))]


def _lands_in_tree(tree: str, target: str, over: list[str]) -> bool:
    """Would a mount on TARGET make its mount point in TREE on the host?  When the tree lacks it
    (symlinks followed as the container sees them, a dangling one too: the mount point is made
    behind it), outside every file system mounted over the tree before it (OVER)."""
    host = m.resolve_in_root(tree, target)
    return not os.path.lexists(host) and not _covered(host, over)


def _covered(host: str, over: list[str]) -> bool:
    """Whether HOST (a path in the tree) lies in a file system mounted over the tree (OVER)."""
    return any(host == o or host.startswith(o.rstrip("/") + "/") for o in over)


def _resolv_conf_ops(mode: ResolvConf, network: str, writable: bool, host_root: str) -> list[m.MountOp]:
    """--resolv-conf, as systemd-nspawn(1) describes it."""
    if mode == "auto":
        if network != "host":
            return []
        stub = os.path.exists(os.path.join(host_root, "run/systemd/resolve/stub-resolv.conf"))
        mode = ("copy-stub" if stub else "copy-host") if writable else ("bind-stub" if stub else "bind-host")
    if mode == "off":
        return []
    if mode == "delete":
        return [m.Delete("/etc/resolv.conf")]
    action, _, kind = mode.partition("-")
    sources = {"host": "etc/resolv.conf", "static": "usr/lib/systemd/resolv.conf",
               "uplink": "run/systemd/resolve/resolv.conf", "stub": "run/systemd/resolve/stub-resolv.conf"}
    if kind not in sources or action not in ("copy", "replace", "bind"):
        raise SpecError(f"unknown --resolv-conf mode '{mode}'",
                        "use auto, off, delete, or copy-/replace-/bind- with host, static, uplink or stub")
    source = os.path.join(host_root, sources[kind])
    if action == "bind":
        return [m.Bind(os.path.realpath(source), "/etc/resolv.conf", read_only=True,
                       recursive=False, flags=MS_NOSUID | MS_NODEV)]
    data = _read(source)
    if data is None:
        return []
    return [m.WriteFile("/etc/resolv.conf", data, 0o644, replace=(action == "replace"))]


def _timezone_ops(mode: Timezone, tree: str, writable: bool, host_root: str) -> list[m.MountOp]:
    """--timezone, as systemd-nspawn(1) describes it."""
    localtime = os.path.join(host_root, "etc/localtime")
    if mode == "auto":
        mode = "symlink" if os.path.islink(localtime) else ("copy" if writable else "bind")
        if mode == "symlink" and not writable:
            mode = "bind"
    if mode == "off":
        return []
    if mode == "delete":
        return [m.Delete("/etc/localtime")]
    if not os.path.exists(localtime):
        return []
    if mode == "symlink":
        link = os.readlink(localtime) if os.path.islink(localtime) else ""
        zone = link.split("zoneinfo/", 1)[1] if "zoneinfo/" in link else None
        if zone and os.path.exists(m.resolve_in_root(tree, f"/usr/share/zoneinfo/{zone}")):
            return [m.Symlink("/etc/localtime", f"../usr/share/zoneinfo/{zone}", replace=True)]
        mode = "copy"  # the tree lacks the zone file: a copy keeps the time right
    if mode == "copy":
        data = _read(localtime) or b""
        return [m.WriteFile("/etc/localtime", data, 0o644, replace=True)]
    if mode == "bind":
        return [m.Bind(os.path.realpath(localtime), "/etc/localtime", read_only=True, recursive=False,
                       flags=MS_NOSUID | MS_NODEV)]
    raise SpecError(f"unknown --timezone mode '{mode}'", "use auto, copy, bind, symlink, delete or off")


_Journal = tuple[list[m.MountOp], str | None, tuple[str, str] | None]  # ops, host directory, host link


def _journal(spec: ContainerSpec, tree: str, machine_id: str | None, host_root: str) -> _Journal:
    """--link-journal: share the guest's journal directory with the host (nspawn semantics)."""
    mode = spec.link_journal
    if mode == "no":
        return [], None, None
    try_ = mode.startswith("try-") or mode == "auto"
    if machine_id is None:
        if try_:
            return [], None, None
        raise SpecError(f"--link-journal={mode} needs a machine ID, and {tree}/etc/machine-id has none",
                        "give the tree a machine ID (systemd-machine-id-setup --root=DIR) or pass --uuid")
    host_journal = os.path.join(host_root, "var/log/journal")
    host_dir = os.path.join(host_journal, machine_id)
    guest_path = f"/var/log/journal/{machine_id}"
    if mode == "auto":
        if os.path.isdir(host_dir) and not os.path.islink(host_dir):
            return [m.Bind(host_dir, guest_path)], None, None
        return [], None, None
    if spec.ephemeral or not os.path.isdir(host_journal):
        if try_:
            return [], None, None
        raise SpecError(f"--link-journal={mode} needs a persistent host journal ({host_journal})"
                        + (" and a non-ephemeral container" if spec.ephemeral else ""),
                        f"create {host_journal}, or use --link-journal=try-{mode}")
    kind = mode.removeprefix("try-")
    if kind == "host":
        if os.path.islink(host_dir):
            if try_:
                return [], None, None
            raise SpecError(f"{host_dir} is a symlink (linked to a guest before)",
                            "remove it or use --link-journal=guest")
        return [m.Bind(host_dir, guest_path)], host_dir, None
    if spec.image is not None:
        # the image is mounted for the machine only: a host symlink into it would dangle
        if try_:
            return [], None, None
        raise SpecError("--link-journal=guest needs a directory tree: the host has no path into an --image",
                        "use --link-journal=host, or try-guest (which then links nothing)")
    # guest: the journal stays in the tree; the host gets a symlink to it, whose target is
    # resolved as the container sees it (symlinks in the tree stay inside the tree), so a tree
    # whose /var/log points at /etc or climbs with ../ cannot aim the host's link at host files.
    guest_host_path = m.resolve_in_root(tree, guest_path)
    if os.path.exists(host_dir) and not os.path.islink(host_dir):
        if try_:
            return [], None, None
        raise SpecError(f"{host_dir} exists on the host and is not a symlink",
                        "remove it or use --link-journal=host")
    return [m.MakeDir(guest_path, 0o2755)], None, (host_dir, guest_host_path)


def _dev_char_links(dev: str, nodes: list[str]) -> list[m.MountOp]:
    """/dev/char/MAJOR:MINOR -> ../NODE for the device nodes the container gets, as nspawn
    and udev make them (libudev and systemd's device lookups go through /dev/char)."""
    ops: list[m.MountOp] = []
    for node in nodes:
        try:
            rdev = os.stat(os.path.join(dev, node)).st_rdev
        except OSError:
            continue
        ops.append(m.Symlink(f"/dev/char/{os.major(rdev)}:{os.minor(rdev)}", "../" + node))
    return ops


def signal_name(sig: int) -> str:
    """SIGTERM, SIGRTMIN+3, ...: how systemd-nspawn's man page names signals."""
    if signal.SIGRTMIN < sig <= signal.SIGRTMAX:
        return f"SIGRTMIN+{sig - signal.SIGRTMIN}"
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def new_uuid() -> str:
    """A random (version 4) UUID as 32 hex digits; the uuid module would pull in platform."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


def format_uuid(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:32]}"
