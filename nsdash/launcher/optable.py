"""The option table: one row per systemd-nspawn setting, everything derived from it.

Each `Setting` row names an option as the command line spells it (long and
short name, argument kind), how its value is parsed and stored, the .nspawn
file key that sets the same thing (Section.Key), whether an untrusted .nspawn
file may set it, which of nspawn's settings-mask groups it belongs to, its
--help line, and the ContainerSpec field it fills (its `key`).  From the rows:

- getopt's long and short names (nsdash.launcher.options),
- the .nspawn keys (nsdash.launcher.settings),
- the merge groups and the trust rule (MASK_GROUPS, PRIVILEGED),
- `nsdash spawn --help` (help_text()), and
- the dashboard's spawn form choices (choices_of()).

A row with `unsupported` set is an nspawn option nsdash recognises and refuses
with one line saying why (the README lists them).  Like mkosi's ConfigSetting,
but for nspawn's options and written for nsdash.

Rows are plain objects (no dataclass, no typing import): this module is on
the spawn path, where every import millisecond counts.
"""

from __future__ import annotations

from nsdash.errors import UsageError
from nsdash.launcher import validate as v
from nsdash.launcher import values as pv

TYPE_CHECKING = False  # typing costs the spawn path ~3 ms to import; mypy reads this as True
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from nsdash.launcher.modes import (
        ConsoleMode,
        LinkJournal,
        Ownership,
        Register,
        ResolvConf,
        Timezone,
        Volatile,
    )

# getopt_long's argument kinds
NO_ARG, REQUIRED, OPTIONAL = 0, 1, 2

# How a parsed value is stored in the settings dict (Options.values / Settings.values).
SET = "set"  # replace
APPEND = "append"  # one more item in a list
EXTEND = "extend"  # several more items in a list
UNION = "union"  # frozenset union
MERGE = "merge"  # dict update (per-entry: rlimits)
UPDATE = "update"  # the value is a dict of keys to set (one option setting several fields)
ADD = "add"  # the value is a dict of keys to tuples to extend (the allow- and deny-lists)

LINK_JOURNAL: tuple[LinkJournal, ...] = ("no", "host", "try-host", "guest", "try-guest", "auto")
RESOLV_CONF: tuple[ResolvConf, ...] = (
    "off", "copy-host", "copy-static", "copy-uplink", "copy-stub",
    "replace-host", "replace-static", "replace-uplink", "replace-stub",
    "bind-host", "bind-static", "bind-uplink", "bind-stub", "delete", "auto")
TIMEZONE: tuple[Timezone, ...] = ("off", "copy", "bind", "symlink", "delete", "auto")
CONSOLE: tuple[ConsoleMode, ...] = ("interactive", "read-only", "passive", "pipe", "autopipe")
SETTINGS = ("yes", "no", "override", "trusted")
REBOOT = ("restart", "exit")
REGISTER: tuple[Register, ...] = ("yes", "no", "auto")
OWNERSHIP: tuple[Ownership, ...] = ("off", "chown", "map", "auto")
VOLATILE: tuple[Volatile, ...] = ("no", "yes", "state", "overlay")
PERSONALITY = ("x86", "x86-64")


class Setting:
    """One nspawn option/.nspawn key.  See the module docstring for the fields."""

    __slots__ = ("long", "short", "arg", "metavar", "key", "parse", "const", "store", "file", "file_parse",
                 "file_store", "file_reset", "privileged", "mask", "group", "help", "nsdash", "unsupported",
                 "choices", "help_list", "hidden", "keys")

    def __init__(self, long: str | None, short: str | None = None, *, arg: int = REQUIRED, metavar: str = "",
                 key: str | None = None, parse: Callable[[str, str], Any] | None = None, const: Any = True,
                 store: str = SET, file: str | tuple[str, ...] = (), file_parse: Callable[[str, str], Any] | None = None,
                 file_store: str | None = None, file_reset: bool = False,
                 privileged: bool | tuple[str, ...] = False, mask: str | None = None, group: str = "",
                 help: str = "", nsdash: str = "", unsupported: str | None = None,
                 choices: tuple[str, ...] | None = None, help_list: Callable[[], list[str]] | None = None,
                 hidden: bool = False, keys: tuple[str, ...] = ()) -> None:
        self.long, self.short, self.arg, self.metavar = long, short, arg, metavar
        self.key = key  # the settings key; a ContainerSpec field unless build_spec maps it
        self.choices = choices
        self.parse = parse or (_choice(choices) if choices else None)
        self.const = const  # what a flag (or an optional argument left out) stores
        self.store = store
        self.file = (file,) if isinstance(file, str) else file  # "Section.Key" names
        self.file_parse = file_parse  # a .nspawn value's parser, when it differs from the option's
        self.file_store = file_store or store
        self.file_reset = file_reset  # an empty assignment in a file clears the list (unit-file rule)
        self.keys = keys or ((key,) if key else ())  # every key the row may set (for UPDATE rows)
        self.privileged = self.keys if privileged is True else (privileged or ())
        self.mask = mask  # nspawn's SETTING_* group; keys of one group are overridden together
        self.group, self.help, self.nsdash = group, help, nsdash
        self.unsupported = unsupported  # why nsdash refuses it (None: supported)
        self.help_list = help_list or ((lambda: list(choices)) if choices else None)
        self.hidden = hidden  # an old spelling kept working but not shown in --help

    @property
    def dest(self) -> str | None:
        return self.key

    @property
    def label(self) -> str:
        return f"--{self.long}" if self.long else f"-{self.short}"


def _choice(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    return lambda value, option: v.parse_choice(value, choices, option)


def _bool(value: str, option: str) -> bool:
    return v.parse_boolean(value, option)


def _slice(value: str, option: str) -> str:
    from nsdash.launcher import properties  # only when asked: not on every spawn's path

    return properties.parse_slice(value, option)


def _property(value: str, option: str) -> str:
    from nsdash.launcher import properties

    return properties.parse(value, option).assignment


def _tristate_register(value: str, option: str) -> str:
    return "auto" if value == "auto" else ("yes" if v.parse_boolean(value, option) else "no")


def _seconds(value: str, option: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86400:
        raise UsageError(f"{option} takes seconds (0 < SECS <= 86400), not {v.printable(value)!r}",
                         f"for example {option}=90")
    return seconds


def _settings_mode(value: str, option: str) -> str:
    return value if value in ("override", "trusted") else ("yes" if v.parse_boolean(value, option) else "no")


IMAGE, EXEC, IDENTITY, PROPS, USERNS, NET, SECURITY, RESOURCES, INTEGRATION, MOUNTS, IO, CREDS = (
    "Image", "Execution", "System Identity", "Properties", "User Namespacing", "Networking", "Security",
    "Resources", "Integration", "Mounts", "Input/Output", "Credentials")
DIRS_ONLY = "nsdash sets up no dm-verity (boot the image without it, or a tree with -D DIR)"
NO_SELINUX = "nsdash sets no SELinux labels"

ROWS: tuple[Setting, ...] = (
    Setting("help", "h", arg=NO_ARG, key="help", help="Show this help"),
    Setting("version", None, arg=NO_ARG, key="version", help="Print version string"),
    Setting("quiet", "q", arg=NO_ARG, key="quiet", help="Do not show status information"),
    Setting("no-pager", None, arg=NO_ARG, key="no_pager", help="Do not pipe output into a pager (nsdash never pages)"),
    Setting("settings", None, metavar="BOOLEAN", key="settings", parse=_settings_mode,
            help="Load additional settings from .nspawn file (yes, no, override or trusted)"),
    Setting("dry-run", None, arg=NO_ARG, key="dry_run", nsdash="[nsdash]",
            help="Print the launch plan and exit without running it"),
    Setting("detach", None, arg=NO_ARG, key="detach", nsdash="[nsdash]",
            help="Run the container in the background"),
    Setting("wait", None, arg=NO_ARG, key="wait", nsdash="[nsdash]",
            help="With --detach: return once the guest is up (READY=1, or its init runs)"),
    Setting("wait-timeout", None, metavar="SECS", key="wait_timeout", parse=_seconds, nsdash="[nsdash]",
            help="How long --wait waits for the guest (default 90)"),

    # --- Image
    Setting("directory", "D", group=IMAGE, metavar="PATH", key="directory", parse=lambda s, o: pv.nonempty(s, o, "PATH"),
            help="Root directory for the container"),
    Setting("template", None, group=IMAGE, metavar="PATH", key="template", parse=pv.parse_absolute,
            help="Initialize root directory from template directory, if missing (a copy, with reflinks "
            "where the file system has them)"),
    Setting("ephemeral", "x", group=IMAGE, arg=NO_ARG, key="ephemeral", file="Exec.Ephemeral",
            file_parse=_bool, nsdash="[nsdash: overlayfs]",
            help="Run container with snapshot of root directory, and remove it after exit"),
    Setting("image", "i", group=IMAGE, metavar="PATH", key="image", parse=lambda s, o: pv.nonempty(s, o, "PATH"),
            help="Root file system disk image (or device node) for the container"),
    Setting("oci-bundle", None, group=IMAGE, metavar="PATH", key="oci_bundle",
            unsupported="OCI bundles are not read; pass the bundle's rootfs with -D",
            help="OCI bundle directory"),
    Setting("read-only", None, group=IMAGE, arg=NO_ARG, key="read_only", file="Files.ReadOnly", file_parse=_bool,
            help="Mount the root directory read-only"),
    Setting("volatile", None, group=IMAGE, arg=OPTIONAL, const={"volatile": "yes"}, metavar="[=MODE]",
            store=UPDATE, keys=("volatile", "ephemeral"), choices=VOLATILE, parse=pv.parse_volatile,
            file="Files.Volatile", mask="VOLATILE", nsdash="[nsdash: overlay is -x's]",
            help="Run the system in volatile mode (no, yes, state or overlay)"),
    Setting("root-hash", None, group=IMAGE, metavar="HASH", key="root_hash", unsupported=DIRS_ONLY,
            help="Specify verity root hash for root disk image"),
    Setting("root-hash-sig", None, group=IMAGE, metavar="SIG", key="root_hash_sig", unsupported=DIRS_ONLY,
            help="Specify pkcs7 signature of root hash for verity"),
    Setting("verity-data", None, group=IMAGE, metavar="PATH", key="verity_data", unsupported=DIRS_ONLY,
            help="Specify hash device for verity"),
    Setting("pivot-root", None, group=IMAGE, metavar="PATH[:PATH]", key="pivot_root", file="Exec.PivotRoot",
            parse=pv.parse_pivot_root, help="Pivot root to given directory in the container"),

    # --- Execution
    Setting("as-pid2", "a", group=EXEC, arg=NO_ARG, key="as_pid2", file="Exec.ProcessTwo", file_parse=_bool,
            mask="START_MODE", help="Maintain a stub init as PID1, invoke binary as PID2"),
    Setting("boot", "b", group=EXEC, arg=NO_ARG, key="boot", file="Exec.Boot", file_parse=_bool,
            mask="START_MODE", help="Boot up full system (i.e. invoke init)"),
    Setting(None, None, key="command", file="Exec.Parameters", file_parse=pv.words, mask="START_MODE",
            help="the command, or init's arguments"),
    Setting("chdir", None, group=EXEC, metavar="PATH", key="chdir", file="Exec.WorkingDirectory",
            parse=pv.parse_absolute, help="Set working directory in the container"),
    Setting("setenv", "E", group=EXEC, metavar="NAME[=VALUE]", key="setenv", store=APPEND,
            parse=lambda s, o: v.parse_setenv(s), file="Exec.Environment", file_parse=pv.environment,
            file_store=EXTEND, file_reset=True, help="Pass an environment variable to PID 1"),
    Setting("user", "u", group=EXEC, metavar="USER", key="user", parse=lambda s, o: v.parse_user(s) if s else None,
            file="Exec.User", help="Run the command under specified user or UID"),
    Setting("kill-signal", None, group=EXEC, metavar="SIGNAL", key="kill_signal", parse=v.parse_signal,
            file="Exec.KillSignal", help="Select signal to use for shutting down PID 1"),
    Setting("notify-ready", None, group=EXEC, metavar="BOOLEAN", key="notify_ready", parse=_bool,
            file="Exec.NotifyReady",
            help="Receive notifications from the child init process"),
    Setting("suppress-sync", None, group=EXEC, metavar="BOOLEAN", key="suppress_sync", parse=_bool,
            file="Exec.SuppressSync", help="Suppress any form of disk data synchronization"),
    Setting("reboot", None, group=EXEC, metavar="restart|exit", key="reboot_exit",
            parse=lambda s, o: v.parse_choice(s, REBOOT, o) == "exit", help_list=lambda: list(REBOOT),
            nsdash="[nsdash]", help="What a reboot inside does: restart the container in this process "
            "(default) or exit with 133 as nspawn does under its service unit"),

    # --- System identity
    Setting("machine", "M", group=IDENTITY, metavar="NAME", key="machine",
            parse=lambda s, o: v.parse_machine_name(s, o) if s else None,
            help="Set the machine name for the container"),
    Setting("hostname", None, group=IDENTITY, metavar="NAME", key="hostname", parse=v.parse_machine_name,
            file="Exec.Hostname", help="Override the hostname for the container"),
    Setting("uuid", None, group=IDENTITY, metavar="UUID", key="uuid", parse=lambda s, o: v.parse_uuid(s, o),
            file="Exec.MachineID", privileged=True, help="Set a specific machine UUID for the container"),

    # --- Properties (slice, property and keep-unit are command-line only: systemd.nspawn(5) has no keys)
    Setting("slice", "S", group=PROPS, metavar="SLICE", key="slice", parse=_slice,
            help="Place the container in the specified slice"),
    Setting("property", None, group=PROPS, metavar="NAME=VALUE", key="properties", parse=_property,
            store=APPEND, nsdash="[nsdash]", help="Set scope unit property (without systemd on the host: "
            "CPUQuota, CPUWeight, MemoryMax, MemoryHigh, MemoryLow, MemoryMin, MemorySwapMax, TasksMax "
            "and IOWeight, written to the machine's cgroup files)"),
    Setting("register", None, group=PROPS, metavar="BOOLEAN", key="register", parse=_tristate_register,
            nsdash="[nsdash: auto]", help="Register container as machine (yes, no or auto: register if "
            "systemd-machined is reachable)"),
    Setting("keep-unit", None, group=PROPS, arg=NO_ARG, key="keep_unit",
            help="Do not register a scope for the machine, reuse the service unit nsdash was invoked "
            "from (a detached machine then also stays in the caller's unit)"),

    # --- User namespacing
    Setting("private-users", None, group=USERNS, arg=OPTIONAL, const="yes",
            metavar="=no|yes|pick|identity|UIDBASE[:NUIDS]", key="private_users",
            parse=lambda s, o: v.parse_private_users(s), file="Exec.PrivateUsers", mask="USERNS", privileged=True,
            help="Run within user namespace"),
    Setting("private-users-ownership", None, group=USERNS, metavar="MODE", key="private_users_ownership",
            parse=lambda s, o: v.parse_private_users_ownership(s), help_list=lambda: list(OWNERSHIP),
            file="Files.PrivateUsersOwnership", mask="USERNS", privileged=True,
            help="Adjust ('chown') or map ('map') OS tree ownership to private UID/GID range"),
    Setting("private-users-chown", None, group=USERNS, arg=NO_ARG, const="chown", key="private_users_ownership",
            file="Files.PrivateUsersChown", file_parse=lambda s, o: "chown" if _bool(s, o) else "off",
            mask="USERNS", privileged=True, hidden=True, help="The older spelling of --private-users-ownership=chown"),
    Setting(None, "U", group=USERNS, arg=NO_ARG, store=UPDATE,
            const={"private_users": "pick", "private_users_ownership": "auto"},
            keys=("private_users", "private_users_ownership"), mask="USERNS",
            help="Equivalent to --private-users=pick and --private-users-ownership=auto"),

    # --- Networking
    Setting("private-network", None, group=NET, arg=NO_ARG, key="private_network", file="Network.Private",
            file_parse=_bool, privileged=True, mask="NETWORK",
            help="Disable network in container (only a loopback device)"),
    Setting("network-interface", None, group=NET, metavar="INTERFACE", key="network_interface", store=APPEND,
            parse=pv.parse_ifname, file="Network.Interface", privileged=True, mask="NETWORK",
            help="Assign an existing network interface to the container"),
    Setting("network-macvlan", None, group=NET, metavar="INTERFACE", key="network_macvlan", store=APPEND,
            parse=pv.parse_ifname, file="Network.MACVLAN", privileged=True, mask="NETWORK",
            help="Create a macvlan network interface based on an existing one"),
    Setting("network-ipvlan", None, group=NET, metavar="INTERFACE", key="network_ipvlan", store=APPEND,
            parse=pv.parse_ifname, file="Network.IPVLAN", privileged=True, mask="NETWORK",
            help="Create an ipvlan network interface based on an existing one"),
    Setting("network-veth", "n", group=NET, arg=NO_ARG, key="network_veth", file="Network.VirtualEthernet",
            file_parse=_bool, privileged=True, mask="NETWORK",
            help="Add a virtual Ethernet connection between host (ve-NAME) and container (host0)"),
    Setting("network-veth-extra", None, group=NET, metavar="HOSTIF[:CONTAINERIF]", key="network_veth_extra",
            store=APPEND, parse=pv.parse_veth_extra, file="Network.VirtualEthernetExtra", privileged=True,
            mask="NETWORK",
            help="Add an additional virtual Ethernet link between host and container"),
    Setting("network-bridge", None, group=NET, metavar="INTERFACE", key="network_bridge",
            file="Network.Bridge", parse=pv.parse_ifname, privileged=True, mask="NETWORK",
            help="Add a veth to the container and attach it to an existing bridge on the host"),
    Setting("network-zone", None, group=NET, metavar="NAME", key="network_zone", file="Network.Zone",
            parse=pv.parse_zone, privileged=True, mask="NETWORK",
            help="Similar, but attach it to an automatically managed bridge"),
    Setting("network-namespace-path", None, group=NET, metavar="PATH", key="network_namespace_path",
            parse=pv.parse_absolute, mask="NETWORK",
            help="Set network namespace to the one represented by the specified file node"),
    Setting("port", "p", group=NET, metavar="[PROTOCOL:]HOSTPORT[:CONTAINERPORT]", key="port",
            file="Network.Port", privileged=True, store=APPEND, parse=pv.parse_port, mask="EXPOSE_PORTS",
            help="Expose a container IP port on the host (needs -n: nsdash adds a DNAT rule)"),

    # --- Security
    Setting("capability", None, group=SECURITY, metavar="CAP", key="capabilities", store=UNION,
            parse=v.parse_capabilities, help_list=pv.capability_list, file="Exec.Capability", privileged=True,
            mask="CAPABILITY", help="In addition to the default, retain specified capability"),
    Setting("drop-capability", None, group=SECURITY, metavar="CAP", key="drop_capabilities", store=UNION,
            parse=v.parse_capabilities, help_list=pv.capability_list, file="Exec.DropCapability",
            mask="CAPABILITY", help="Drop the specified capability from the default set"),
    Setting("ambient-capability", None, group=SECURITY, metavar="CAP", key="ambient_capabilities", store=UNION,
            parse=v.parse_capabilities, help_list=pv.capability_list, file="Exec.AmbientCapability",
            privileged=True, mask="CAPABILITY",
            help="Sets the specified capability for the started process. Not useful if booting a machine."),
    Setting("no-new-privileges", None, group=SECURITY, arg=OPTIONAL, const=True, metavar="[=BOOLEAN]",
            key="no_new_privileges", parse=_bool, file="Exec.NoNewPrivileges",
            help="Set PR_SET_NO_NEW_PRIVS flag for container payload"),
    Setting("system-call-filter", None, group=SECURITY, metavar="LIST|~LIST", store=ADD,
            keys=("syscall_allow", "syscall_deny"), parse=pv.syscall_filter, file="Exec.SystemCallFilter",
            file_reset=True, privileged=("syscall_allow",), mask="SYSCALL_FILTER",
            help="Permit/prohibit specific system calls"),
    Setting("selinux-context", "Z", group=SECURITY, metavar="SECLABEL", key="selinux_context",
            unsupported=NO_SELINUX, help="Set the SELinux security context of the container's processes"),
    Setting("selinux-apifs-context", "L", group=SECURITY, metavar="SECLABEL", key="selinux_apifs_context",
            unsupported=NO_SELINUX, help="Set the SELinux context of the API/tmpfs file systems"),

    # --- Resources
    Setting("rlimit", None, group=RESOURCES, metavar="NAME=LIMIT", key="rlimits", store=MERGE,
            parse=pv.parse_rlimit_option, file=tuple(f"Exec.Limit{n}" for n in pv.RLIMITS),
            file_parse=pv.parse_rlimit_key, privileged=True, help_list=lambda: [f"RLIMIT_{n}" for n in pv.RLIMITS],
            help="Set a resource limit for the payload"),
    Setting("oom-score-adjust", None, group=RESOURCES, metavar="VALUE", key="oom_score_adjust",
            parse=pv.parse_oom_score_adjust, file="Exec.OOMScoreAdjust", privileged=True,
            help="Adjust the OOM score value for the payload"),
    Setting("cpu-affinity", None, group=RESOURCES, metavar="CPUS", key="cpu_affinity",
            parse=pv.parse_cpu_set, file="Exec.CPUAffinity", privileged=True,
            help="Adjust the CPU affinity of the container"),
    Setting("personality", None, group=RESOURCES, metavar="ARCH", key="personality",
            choices=PERSONALITY, parse=pv.parse_personality, file="Exec.Personality",
            help="Pick personality for this container"),

    # --- Integration
    Setting("resolv-conf", None, group=INTEGRATION, metavar="MODE", key="resolv_conf", choices=RESOLV_CONF,
            file="Exec.ResolvConf", help="Select mode of /etc/resolv.conf initialization"),
    Setting("timezone", None, group=INTEGRATION, metavar="MODE", key="timezone", choices=TIMEZONE,
            file="Exec.Timezone", help="Select mode of /etc/localtime initialization"),
    Setting("link-journal", None, group=INTEGRATION, metavar="MODE", key="link_journal", choices=LINK_JOURNAL,
            file="Exec.LinkJournal",
            help="Link up guest journal, one of no, auto, guest, host, try-guest, try-host"),
    Setting(None, "j", group=INTEGRATION, arg=NO_ARG, const="try-guest", key="link_journal",
            help="Equivalent to --link-journal=try-guest"),

    # --- Mounts
    Setting("bind", None, group=MOUNTS, metavar="PATH[:PATH[:OPTIONS]]", key="bind_specs", store=APPEND,
            parse=lambda s, o: pv.bind_spec(s, False, o), file="Files.Bind",
            file_parse=lambda s, o: pv.bind_spec(s, False, o), privileged=True, mask="CUSTOM_MOUNTS",
            help="Bind mount a file or directory from the host into the container (OPTIONS: rbind, "
            "norbind, noidmap, idmap, rootidmap; an empty source is a temporary directory; a '+' before the source "
            "makes it relative to the image; escape ':' as '\\:')"),
    Setting("bind-ro", None, group=MOUNTS, metavar="PATH[:PATH[:OPTIONS]]", key="bind_specs", store=APPEND,
            parse=lambda s, o: pv.bind_spec(s, True, o), file="Files.BindReadOnly",
            file_parse=lambda s, o: pv.bind_spec(s, True, o), privileged=True, mask="CUSTOM_MOUNTS",
            help="Similar, but creates a read-only bind mount"),
    Setting("inaccessible", None, group=MOUNTS, metavar="PATH", key="inaccessible", store=APPEND,
            parse=pv.parse_absolute, file="Files.Inaccessible", privileged=True, mask="CUSTOM_MOUNTS",
            help="Over-mount file node with inaccessible node to mask it"),
    Setting("tmpfs", None, group=MOUNTS, metavar="PATH[:OPTIONS]", key="tmpfs", store=APPEND,
            parse=pv.parse_tmpfs, file="Files.TemporaryFileSystem", privileged=True, mask="CUSTOM_MOUNTS",
            help="Mount an empty tmpfs to the specified directory (OPTIONS: mount(8)'s, e.g. ro,size=1M)"),
    Setting("overlay", None, group=MOUNTS, metavar="PATH[:PATH...]:PATH", key="overlay_specs", store=APPEND,
            parse=lambda s, o: pv.overlay_spec(s, False, o), file="Files.Overlay", privileged=True,
            mask="CUSTOM_MOUNTS", help="Create an overlay mount from the host to the container (an empty "
            "upper path is a temporary directory; '+' makes a path relative to the image)"),
    Setting("overlay-ro", None, group=MOUNTS, metavar="PATH[:PATH...]:PATH", key="overlay_specs", store=APPEND,
            parse=lambda s, o: pv.overlay_spec(s, True, o), file="Files.OverlayReadOnly", privileged=True,
            mask="CUSTOM_MOUNTS", help="Similar, but creates a read-only overlay mount"),
    Setting("bind-user", None, group=MOUNTS, metavar="NAME", key="bind_user", file="Files.BindUser",
            privileged=True,
            unsupported="host users are not bound in; bind the home with --bind and add the user inside",
            help="Bind user from host to container"),

    # --- Input/Output
    Setting("console", None, group=IO, metavar="MODE", key="console", choices=CONSOLE,
            help="Select how stdin/stdout/stderr and /dev/console are set up for the container "
            "(interactive, read-only, passive, pipe, autopipe)"),
    Setting("pipe", "P", group=IO, arg=NO_ARG, const="pipe", key="console", help="Equivalent to --console=pipe"),

    # --- Credentials
    Setting("set-credential", None, group=CREDS, metavar="ID:VALUE", key="credentials", store=APPEND,
            parse=pv.parse_set_credential, mask="CREDENTIALS",
            help="Pass a credential with literal value to container"),
    Setting("load-credential", None, group=CREDS, metavar="ID:PATH", key="credentials", store=APPEND,
            parse=pv.parse_load_credential, mask="CREDENTIALS",
            help="Load credential to pass to container from file"),
)

# ------------------------------------------------------------------ derived indexes

OPTIONS: tuple[Setting, ...] = tuple(r for r in ROWS if r.long or r.short)
BY_LONG: dict[str, Setting] = {r.long: r for r in OPTIONS if r.long}
BY_SHORT: dict[str, Setting] = {r.short: r for r in OPTIONS if r.short}
BY_FILE_KEY: dict[str, Setting] = {name: r for r in ROWS for name in r.file}
# Keys an untrusted .nspawn file may not set (they widen what the container can reach).
PRIVILEGED: frozenset[str] = frozenset(k for r in ROWS for k in r.privileged)


def _mask_groups() -> tuple[frozenset[str], ...]:
    groups: dict[str, set[str]] = {}
    for r in ROWS:
        if r.mask:
            groups.setdefault(r.mask, set()).update(r.keys)
    return tuple(frozenset(g) for g in groups.values())


# Settings that systemd-nspawn masks together (its SETTING_* bits): when the
# stronger side sets any of a group, the weaker side's whole group is dropped.
MASK_GROUPS: tuple[frozenset[str], ...] = _mask_groups()


def choices_of(key: str) -> tuple[str, ...]:
    """The closed set of values of KEY (for the dashboard's form)."""
    for r in ROWS:
        if r.key == key and r.choices:
            return r.choices
    raise KeyError(key)


# ------------------------------------------------------------------ --help

_WIDTH = 79
_TEXT_COL = 28


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line] if line else lines


def _help_row(r: Setting) -> list[str]:
    short = f"-{r.short} " if r.short else "   "
    name = f"--{r.long}" if r.long else ""
    if r.long and r.arg == REQUIRED:
        name += f"={r.metavar}"
    elif r.long and r.arg == OPTIONAL:
        name += r.metavar if r.metavar.startswith(("[", "=")) else f"[={r.metavar}]"
    left = f"  {short}{name}".rstrip()
    note = "[nsdash: not supported]" if r.unsupported else r.nsdash
    text = _wrap(r.help, _WIDTH - _TEXT_COL)
    if note:  # the marker stays whole: on the last line if it fits, else on its own
        if len(text[-1]) + 1 + len(note) <= _WIDTH - _TEXT_COL:
            text[-1] += f" {note}"
        else:
            text.append(note)
    if len(left) >= _TEXT_COL - 1:
        return [left, *(" " * _TEXT_COL + t for t in text)]
    return [left.ljust(_TEXT_COL) + text[0], *(" " * _TEXT_COL + t for t in text[1:])]


def help_text() -> str:
    """`nsdash spawn --help`, derived from the rows, grouped as nspawn's."""
    out = ["usage: nsdash spawn [OPTIONS...] [COMMAND [ARGS...]]", "",
           "Spawn a command or OS in a light-weight container (systemd-nspawn's options).", ""]
    group = None
    for r in OPTIONS:
        if r.hidden:
            continue
        if r.group != group:
            group = r.group
            out += ["", f"{group}:"] if group else []
        out += _help_row(r)
    out += ["", *_wrap("Where nsdash differs from systemd-nspawn: $container is \"nsdash\"; --image "
                       "reads GPT and bare file-system images, not LUKS or dm-verity; a reboot inside restarts the container in the same "
                       "process unless --reboot=exit; --register=auto is the default; --bind, --tmpfs, --overlay and "
                       "--inaccessible onto / itself are refused (nspawn replaces the root); --dry-run and --detach "
                       "are nsdash's own; options marked [nsdash: not supported] are refused with the reason "
                       "(the README lists them).", _WIDTH)]
    return "\n".join(out) + "\n"
