"""ContainerSpec: a frozen, validated description of one container to run.

Built from systemd-nspawn-style options (see nsdash.launcher.options) and
.nspawn settings files (nsdash.launcher.settings).  Everything downstream
(the mount plan, the child, the supervisor) reads only this.
"""

from __future__ import annotations

from pathlib import Path

from nsdash.system.frozen import Frozen

TYPE_CHECKING = False  # mypy reads this as True; typing stays off the spawn path
if TYPE_CHECKING:
    from nsdash.launcher.modes import (
        ConsoleMode,
        LinkJournal,
        Ownership,
        Register,
        ResolvConf,
        Timezone,
        Volatile,
    )


class Bind(Frozen):
    """--bind / --bind-ro: SRC[:DST[:OPTIONS]]."""

    source: Path | None  # None: an empty SRC, a temporary directory removed at exit (as nspawn)
    target: str  # absolute path inside the container
    read_only: bool = False
    recursive: bool = True  # rbind (default) or norbind
    idmap: bool = False  # idmap: the container's user namespace maps the source's owners


class TmpfsMount(Frozen):
    """--tmpfs PATH[:OPTIONS] (mount(8) options: flags and tmpfs data, split by launcher.mountopts)."""

    target: str
    options: str = "mode=0755"


class OverlayMount(Frozen):
    """--overlay / --overlay-ro: host trees stacked at a container path."""

    lower: tuple[Path, ...]  # bottom first
    upper: Path | None  # the writable top (None: read-only, or a temporary directory when temporary)
    target: str
    read_only: bool = False
    temporary: bool = False  # an empty upper: a temporary directory removed at exit


class Credential(Frozen):
    """--set-credential / --load-credential: a file in /run/host/credentials."""

    id: str
    data: bytes


class ContainerSpec(Frozen):
    directory: Path  # the OS tree; with --image, where the image is mounted while the machine starts
    machine: str
    image: Path | None = None  # --image: the disk image file (launcher.image attaches and mounts it)
    hostname: str | None = None  # defaults to the machine name
    uuid: str | None = None  # 32 hex digits, no dashes
    boot: bool = False
    as_pid2: bool = False
    command: tuple[str, ...] = ()  # command, or init's arguments with boot
    chdir: str | None = None
    setenv: tuple[tuple[str, str], ...] = ()
    user: str | None = None
    binds: tuple[Bind, ...] = ()
    tmpfs: tuple[TmpfsMount, ...] = ()
    inaccessible: tuple[str, ...] = ()
    overlays: tuple[OverlayMount, ...] = ()
    read_only: bool = False
    ephemeral: bool = False
    volatile: Volatile = "no"  # no | yes (tmpfs root, the tree's /usr read-only) | state (read-only, tmpfs /var)
    private_network: bool = False
    network_veth: bool = False
    network_namespace_path: str | None = None  # --network-namespace-path: join it instead
    network_zone: str | None = None  # --network-zone: the veth joins bridge vz-NAME (launcher/network.py)
    network_bridge: str | None = None  # --network-bridge: the veth joins this existing bridge
    network_interface: tuple[str, ...] = ()  # --network-interface: host links moved in, given back at exit
    network_macvlan: tuple[str, ...] = ()  # --network-macvlan: mv-IF made on each host link
    network_ipvlan: tuple[str, ...] = ()  # --network-ipvlan: iv-IF made on each host link
    network_veth_extra: tuple[str, ...] = ()  # --network-veth-extra, normalised HOSTIF:CONTAINERIF
    port: tuple[str, ...] = ()  # --port, normalised PROTOCOL:HOSTPORT:CONTAINERPORT (launcher/network.py)
    link_journal: LinkJournal = "no"
    resolv_conf: ResolvConf = "auto"
    timezone: Timezone = "auto"
    register: Register = "auto"
    kill_signal: int | None = None  # None: SIGRTMIN+3 with boot, else SIGKILL
    console: ConsoleMode = "interactive"
    quiet: bool = False
    capabilities: frozenset[str] = frozenset()  # added to the default set
    drop_capabilities: frozenset[str] = frozenset()
    ambient_capabilities: frozenset[str] = frozenset()  # raised in the payload's ambient set
    reboot_exit: bool = False  # --reboot=exit: exit 133 on reboot instead of restarting
    no_new_privileges: bool = False
    syscall_allow: tuple[str, ...] = ()  # --system-call-filter names and @groups added
    syscall_deny: tuple[str, ...] = ()  # ... and those taken away ('~' lists)
    private_users: str = "no"
    private_users_ownership: Ownership = "off"  # -U implies auto
    detach: bool = False  # --detach: the supervisor runs in the background
    wait: bool = False  # --wait (with --detach): return once the guest is up
    wait_timeout: float = 90.0  # --wait-timeout: how long --wait waits, in seconds
    notify_ready: bool = False  # --notify-ready: the payload says READY=1 when it is up
    dry_run: bool = False  # --dry-run: print the launch plan, run nothing
    # per-process settings of the payload (launcher.child.apply_process_settings)
    rlimits: tuple[tuple[str, int, int], ...] = ()  # (NOFILE, soft, hard); -1 is infinity
    oom_score_adjust: int | None = None
    cpu_affinity: tuple[int, ...] | None = None
    personality: str | None = None  # x86 | x86-64
    suppress_sync: bool = False
    pivot_root: tuple[str, ...] = ()  # --pivot-root=NEW[:OLD]: (NEW,) or (NEW, OLD)
    credentials: tuple[Credential, ...] = ()
    slice: str | None = None  # -S/--slice: the slice of the machine's scope (default machine.slice)
    properties: tuple[str, ...] = ()  # --property=NAME=VALUE assignments, checked (launcher.properties)
    keep_unit: bool = False  # --keep-unit: stay in the caller's unit, make no scope or service

    @property
    def effective_hostname(self) -> str:
        return self.hostname or self.machine
