"""ContainerSpec: a frozen, validated description of one container to run.

Built from systemd-nspawn-style options (see nsdash.launcher.options) and
.nspawn settings files (nsdash.launcher.settings).  Everything downstream
(the mount plan, the child, the supervisor) reads only this.
"""

from __future__ import annotations

from pathlib import Path

from nsdash.system.frozen import Frozen


class Bind(Frozen):
    """--bind / --bind-ro: SRC[:DST[:OPTIONS]]."""

    source: Path
    target: str  # absolute path inside the container
    read_only: bool = False
    recursive: bool = True  # rbind (default) or norbind


class TmpfsMount(Frozen):
    """--tmpfs PATH[:OPTIONS]."""

    target: str
    options: str = "mode=0755"


class ContainerSpec(Frozen):
    directory: Path
    machine: str
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
    read_only: bool = False
    ephemeral: bool = False
    private_network: bool = False
    network_veth: bool = False
    link_journal: str = "no"  # no|host|try-host|guest|try-guest|auto
    resolv_conf: str = "auto"  # auto|copy-host|bind-host|off|...
    timezone: str = "auto"  # auto|copy|bind|off|...
    register: str = "auto"  # yes|no|auto
    kill_signal: int | None = None  # None: SIGRTMIN+3 with boot, else SIGKILL
    console: str = "interactive"  # interactive|read-only|passive|pipe|autopipe
    quiet: bool = False
    capabilities: frozenset[str] = frozenset()  # added to the default set
    drop_capabilities: frozenset[str] = frozenset()
    reboot_exit: bool = False  # --reboot=exit: exit 133 on reboot instead of restarting
    no_new_privileges: bool = False
    syscall_allow: tuple[str, ...] = ()  # --system-call-filter names and @groups added
    syscall_deny: tuple[str, ...] = ()  # ... and those taken away ('~' lists)
    private_users: str = "no"
    private_users_ownership: str = "off"  # off|chown|map|auto (-U implies auto)
    detach: bool = False  # --detach: the supervisor runs in the background
    wait: bool = False  # --wait (with --detach): return once the guest is up
    wait_timeout: float = 90.0  # --wait-timeout: how long --wait waits, in seconds
    notify_ready: bool = False  # --notify-ready: the payload says READY=1 when it is up
    dry_run: bool = False  # --dry-run: print the launch plan, run nothing

    @property
    def effective_hostname(self) -> str:
        return self.hostname or self.machine
