"""`nsdash spawn` options: systemd-nspawn's names, short forms, syntax and meaning.

parse_spawn_args(argv) turns a command line into a frozen ContainerSpec, merging
the machine's .nspawn settings file the way systemd-nspawn does (command-line
options win; untrusted files cannot grant privileges).  All bad input raises
UsageError/SpecError with one line naming the problem and the fix.

The command line is read by a small getopt_long work-alike rather than
argparse: it keeps nspawn's exact rules (options stop at the first non-option,
a value may start with '-', unique prefixes of long names) and spares the
spawn path argparse's imports (argparse pulls in shutil on first use).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

from nsdash.errors import SpecError, UsageError
from nsdash.launcher import validate as v
from nsdash.launcher.spec import Bind, ContainerSpec, TmpfsMount

TYPE_CHECKING = False  # typing costs the spawn path ~3 ms to import; mypy reads this as True
if TYPE_CHECKING:
    from typing import Any

LINK_JOURNAL = ("no", "host", "try-host", "guest", "try-guest", "auto")
RESOLV_CONF = ("off", "copy-host", "copy-static", "copy-uplink", "copy-stub",
               "replace-host", "replace-static", "replace-uplink", "replace-stub",
               "bind-host", "bind-static", "bind-uplink", "bind-stub", "delete", "auto")
TIMEZONE = ("off", "copy", "bind", "symlink", "delete", "auto")
CONSOLE = ("interactive", "read-only", "passive", "pipe", "autopipe")
SETTINGS = ("yes", "no", "override", "trusted")
REBOOT = ("restart", "exit")

# Where systemd-nspawn looks for an image named by -M when -D is not given.
IMAGE_SEARCH_PATH = ("/etc/machines", "/run/machines", "/var/lib/machines",
                     "/var/lib/container", "/usr/local/lib/machines", "/usr/lib/machines")

HELP = """\
usage: nsdash spawn [OPTIONS...] [COMMAND [ARGS...]]

Spawn a command or OS in a light-weight container (systemd-nspawn's options).

  -h --help                 Show this help
     --dry-run              Print the launch plan and exit without running it      [nsdash]
     --detach               Run the container in the background                    [nsdash]
     --wait                 With --detach: return once the guest is up (READY=1, or
                            its init runs), fail if it is not within the timeout  [nsdash]
     --wait-timeout=SECS    How long --wait waits (default 90)                     [nsdash]

Image:
  -D --directory=PATH       Root directory for the container
  -x --ephemeral            Run container with snapshot of root directory, and
                            remove it after exit (an overlayfs upper layer)
     --read-only            Mount the root directory read-only

Execution:
  -a --as-pid2              Maintain a stub init as PID1, invoke binary as PID2
  -b --boot                 Boot up full system (i.e. invoke init)
     --chdir=PATH           Set working directory in the container
  -E --setenv=NAME[=VALUE]  Pass an environment variable to PID 1
  -u --user=USER            Run the command under specified user or UID
     --kill-signal=SIGNAL   Select signal to use for shutting down PID 1
     --notify-ready=BOOLEAN Whether the payload says READY=1 when it is up (a booted
                            systemd always does)
     --reboot=restart|exit  What a reboot inside does: restart the container in this
                            process (default) or exit with 133 as nspawn does under
                            its service unit                                        [nsdash]

System Identity:
  -M --machine=NAME         Set the machine name for the container
     --hostname=NAME        Override the hostname for the container
     --uuid=UUID            Set a specific machine UUID for the container

Properties:
     --register=BOOLEAN     Register container as machine (yes, no or auto:
                            register if systemd-machined is reachable)              [nsdash: auto]

User Namespacing:
     --private-users=no|yes|pick|identity|UIDBASE[:NUIDS]
                            Run within user namespace
  -U                        Equivalent to --private-users=pick and
                            --private-users-ownership=auto
     --private-users-ownership=off|chown|map|auto
                            Adjust OS tree ownership to private UID/GID range

Networking:
     --private-network      Disable network in container (only a loopback device)
  -n --network-veth         Add a virtual Ethernet connection between host
                            (ve-NAME) and container (host0)

Security:
     --capability=CAP       In addition to the default, retain specified capability
     --drop-capability=CAP  Drop the specified capability from the default set
     --no-new-privileges    Set PR_SET_NO_NEW_PRIVS flag for container payload
     --system-call-filter=LIST|~LIST
                            Permit/prohibit specific system calls

Filesystems:
     --bind=PATH[:PATH[:OPTIONS]]
                            Bind mount a file or directory from the host into
                            the container (OPTIONS: rbind or norbind; a '+' before
                            the source makes it relative to the image; escape ':'
                            in paths as '\\:')
     --bind-ro=PATH[:PATH[:OPTIONS]
                            Similar, but creates a read-only bind mount
     --inaccessible=PATH    Over-mount file node with inaccessible node to mask it
     --tmpfs=PATH[:OPTIONS] Mount an empty tmpfs to the specified directory
     --resolv-conf=MODE     Select mode of /etc/resolv.conf initialization
     --timezone=MODE        Select mode of /etc/localtime initialization
     --link-journal=MODE    Link up guest journal, one of no, auto, guest,
                            host, try-guest, try-host
  -j                        Equivalent to --link-journal=try-guest

Input/Output:
     --console=MODE         Select how stdin/stdout/stderr and /dev/console are
                            set up for the container (interactive, read-only,
                            passive, pipe, autopipe)
  -P --pipe                 Equivalent to --console=pipe
  -q --quiet                Do not show status information

Settings:
     --settings=BOOLEAN     Load additional settings from .nspawn file
                            (yes, no, override or trusted)

Where nsdash differs from systemd-nspawn: $container is "nsdash"; images are
directories only (no --image); a reboot inside restarts the container in the
same process unless --reboot=exit; --register=auto is the default; --dry-run and
--detach are nsdash's own.
"""


# getopt_long's argument kinds
NO_ARG, REQUIRED, OPTIONAL = 0, 1, 2


class Opt:
    """One option: its names, its argument kind, where it is stored.
    (A plain class: a dataclass compiles its methods with exec() at import.)"""

    __slots__ = ("long", "short", "arg", "dest", "const", "append")

    def __init__(self, long: str | None, short: str | None, arg: int, dest: str,
                 const: Any = True, append: bool = False) -> None:
        self.long, self.short, self.arg, self.dest = long, short, arg, dest
        self.const = const  # what a flag stores
        self.append = append


OPTIONS: tuple[Opt, ...] = (
    Opt("help", "h", NO_ARG, "help"),
    Opt("directory", "D", REQUIRED, "directory"),
    Opt("machine", "M", REQUIRED, "machine"),
    Opt("hostname", None, REQUIRED, "hostname"),
    Opt("uuid", None, REQUIRED, "uuid"),
    Opt("boot", "b", NO_ARG, "boot"),
    Opt("as-pid2", "a", NO_ARG, "as_pid2"),
    Opt("chdir", None, REQUIRED, "chdir"),
    Opt("setenv", "E", REQUIRED, "setenv", append=True),
    Opt("user", "u", REQUIRED, "user"),
    Opt("bind", None, REQUIRED, "bind_specs", const="--bind", append=True),
    Opt("bind-ro", None, REQUIRED, "bind_specs", const="--bind-ro", append=True),
    Opt("tmpfs", None, REQUIRED, "tmpfs", append=True),
    Opt("inaccessible", None, REQUIRED, "inaccessible", append=True),
    Opt("read-only", None, NO_ARG, "read_only"),
    Opt("ephemeral", "x", NO_ARG, "ephemeral"),
    Opt("private-network", None, NO_ARG, "private_network"),
    Opt("network-veth", "n", NO_ARG, "network_veth"),
    Opt("link-journal", None, REQUIRED, "link_journal"),
    Opt(None, "j", NO_ARG, "link_journal", const="try-guest"),
    Opt("resolv-conf", None, REQUIRED, "resolv_conf"),
    Opt("timezone", None, REQUIRED, "timezone"),
    Opt("register", None, REQUIRED, "register"),
    Opt("kill-signal", None, REQUIRED, "kill_signal"),
    Opt("console", None, REQUIRED, "console"),
    Opt("pipe", "P", NO_ARG, "console", const="pipe"),
    Opt("quiet", "q", NO_ARG, "quiet"),
    Opt("capability", None, REQUIRED, "capability", append=True),
    Opt("drop-capability", None, REQUIRED, "drop_capability", append=True),
    Opt("settings", None, REQUIRED, "settings"),
    Opt("reboot", None, REQUIRED, "reboot"),
    Opt("detach", None, NO_ARG, "detach"),
    Opt("wait", None, NO_ARG, "wait"),
    Opt("wait-timeout", None, REQUIRED, "wait_timeout"),
    Opt("dry-run", None, NO_ARG, "dry_run"),
    Opt("no-new-privileges", None, OPTIONAL, "no_new_privileges", const="yes"),
    Opt("system-call-filter", None, REQUIRED, "system_call_filter", append=True),
    Opt("private-users", None, OPTIONAL, "private_users", const="yes"),
    Opt(None, "U", NO_ARG, "private_users_pick"),
    Opt("private-users-ownership", None, REQUIRED, "private_users_ownership"),
    Opt("private-users-chown", None, NO_ARG, "private_users_ownership", const="chown"),  # the old spelling
    Opt("notify-ready", None, REQUIRED, "notify_ready"),
)
_LONG = {o.long: o for o in OPTIONS if o.long}
_SHORT = {o.short: o for o in OPTIONS if o.short}


def _usage(text: str) -> UsageError:
    return UsageError(f"spawn: {v.printable(text)}", "run 'nsdash spawn --help' for the options")


def _find_long(name: str) -> Opt:
    """An exact name, or a unique prefix of one, as getopt_long accepts."""
    if name in _LONG:
        return _LONG[name]
    matches = [o for n, o in _LONG.items() if n.startswith(name)]
    if len({id(o) for o in matches}) == 1 and name:
        return matches[0]
    if matches and name:
        names = ", ".join(f"--{o.long}" for o in matches)
        raise _usage(f"option '--{name}' is ambiguous; possibilities: {names}")
    raise _usage(f"unrecognized option '--{name}'")


def _help() -> SystemExit:
    sys.stdout.write(HELP)
    return SystemExit(0)


def getopt(argv: list[str]) -> tuple[list[tuple[Opt, Any]], list[str]]:
    """systemd-nspawn's getopt_long("+...") semantics: options until the first
    non-option argument or '--'; -abc bundles; -Dvalue and -D value; --name=value
    and --name value; optional arguments only as --name=value."""
    found: list[tuple[Opt, Any]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            return found, argv[i:]
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            opt = _find_long(name)
            if opt.dest == "help" and not eq:
                raise _help()  # at once, as nspawn's option loop does: later errors don't matter
            if opt.arg == NO_ARG:
                if eq:
                    raise _usage(f"option '--{opt.long}' doesn't allow an argument")
                found.append((opt, opt.const))
            elif eq:
                found.append((opt, value))
            elif opt.arg == OPTIONAL:
                found.append((opt, opt.const))
            elif i < len(argv):
                found.append((opt, argv[i]))
                i += 1
            else:
                raise _usage(f"option '--{opt.long}' requires an argument")
        elif arg.startswith("-") and arg != "-":
            j = 1
            while j < len(arg):
                opt = _SHORT.get(arg[j])  # type: ignore[assignment]
                if opt is None:
                    raise _usage(f"invalid option -- '{arg[j]}'")
                j += 1
                if opt.dest == "help":
                    raise _help()
                if opt.arg == NO_ARG:
                    found.append((opt, opt.const))
                    continue
                if j < len(arg):
                    found.append((opt, arg[j:]))
                elif i < len(argv):
                    found.append((opt, argv[i]))
                    i += 1
                else:
                    raise _usage(f"option requires an argument -- '{opt.short}'")
                break
        else:
            return found, argv[i - 1:]
    return found, []


def _namespace(argv: list[str]) -> SimpleNamespace:
    """The command line as attributes named by Opt.dest (None when not given)."""
    ns = SimpleNamespace(**{o.dest: None for o in OPTIONS})
    found, ns.command = getopt(argv)
    for opt, value in found:
        if opt.dest == "bind_specs":
            ro = opt.const == "--bind-ro"
            value = (value, ro, opt.const)
        if opt.append:
            current = getattr(ns, opt.dest) or []
            current.append(value)
            value = current
        setattr(ns, opt.dest, value)
    return ns


class Options:
    """Settings gathered from the command line or a .nspawn file before they
    become a ContainerSpec.  None means "not given here"."""

    def __init__(self, values: dict[str, Any] | None = None, override: bool = False) -> None:
        self.values: dict[str, Any] = values if values is not None else {}
        self.override = override  # --settings=override: these win over the command line

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None else value


def _nonempty(value: str, option: str, syntax: str) -> str:
    if value is None or not value.strip():
        raise UsageError(f"empty {option} value", f"use {option}={syntax}")
    return value


def parse_bind(value: str, read_only: bool, tree: Path | None, option: str = "--bind") -> Bind:
    """SRC[:DST[:OPTIONS]] with '+SRC' relative to the image and '\\:' for a colon."""
    syntax = f"use {option}=SRC[:DST[:OPTIONS]]"
    parts = v.split_escaped(value)
    if len(parts) > 3:
        raise UsageError(f"invalid {option} {value!r}: too many ':'", f"{syntax} (escape ':' in paths as '\\:')")
    source = parts[0]
    target = parts[1] if len(parts) > 1 else None
    opts = parts[2] if len(parts) > 2 else ""
    if not source:
        raise UsageError(f"invalid {option} {value!r}: empty source", syntax)
    if target is not None and not target:
        raise UsageError(f"invalid {option} {value!r}: empty target", syntax)
    relative = source.startswith("+")
    if relative:
        inner = v.normalize_path("/" + source[1:])
        if tree is None:
            raise UsageError(f"{option} {value!r} is relative to the image but no image is known", "pass -D DIR")
        # followed inside the tree as nspawn's chase does: neither '..' nor a
        # symlink in an untrusted image may turn +PATH into a host path
        from nsdash.launcher.mounts import resolve_in_root

        host_source = Path(resolve_in_root(str(tree), inner))
        target = target if target is not None else inner
    else:
        if not v.is_absolute_path(source):
            raise UsageError(f"invalid {option} {value!r}: source {source!r} is not an absolute path",
                             f"{syntax} with an absolute SRC (or +SRC, relative to the image)")
        host_source = Path(v.normalize_path(source))
        target = target if target is not None else str(host_source)
    if not v.is_absolute_path(target):
        raise UsageError(f"invalid {option} {value!r}: target {target!r} is not an absolute path", syntax)
    recursive = True
    for opt in filter(None, opts.split(",")):
        if opt == "rbind":
            recursive = True
        elif opt == "norbind":
            recursive = False
        elif opt in ("idmap", "noidmap", "rootidmap", "owneridmap"):
            raise UsageError(f"{option} option {opt!r} is not supported by nsdash", "use rbind or norbind")
        else:
            raise UsageError(f"invalid {option} option {opt!r} in {value!r}", "use rbind or norbind")
    if not host_source.exists():
        raise SpecError(f"{option} source {v.printable(host_source)} does not exist", "create it or fix the path")
    return Bind(source=host_source, target=v.normalize_path(target), read_only=read_only, recursive=recursive)


def parse_tmpfs(value: str, option: str = "--tmpfs") -> TmpfsMount:
    """PATH[:OPTIONS], mode=0755 unless OPTIONS say otherwise."""
    path, _, opts = value.partition(":") if "\\" not in value else _first_and_rest(value)
    if not path:
        raise UsageError(f"invalid {option} {value!r}: empty path", f"use {option}=PATH[:OPTIONS]")
    if not v.is_absolute_path(path):
        raise UsageError(f"invalid {option} {value!r}: {path!r} is not an absolute path",
                         f"use {option}=/PATH[:OPTIONS]")
    if "\0" in opts:
        raise UsageError(f"invalid {option} {value!r}: NUL in options", f"use {option}=PATH[:OPTIONS]")
    return TmpfsMount(target=v.normalize_path(path), options=opts or "mode=0755")


def _first_and_rest(value: str) -> tuple[str, str, str]:
    parts = v.split_escaped(value)
    if len(parts) == 1:
        return parts[0], "", ""
    # the options part keeps its own colons (mount options never contain escapes)
    first = parts[0]
    rest = value[value.index(":", _escaped_len(value, first)) + 1:]
    return first, ":", rest


def _escaped_len(value: str, first: str) -> int:
    i = n = 0
    while n < len(first):
        i += 2 if value[i] == "\\" else 1
        n += 1
    return i


def parse_absolute(value: str, option: str) -> str:
    if not v.is_absolute_path(value):
        raise UsageError(f"invalid {option} {value!r}: not an absolute path", f"use {option}=/PATH")
    return v.normalize_path(value)


def options_from_args(ns: SimpleNamespace) -> Options:
    """Validate each command-line value; return only what was given."""
    o: dict[str, Any] = {}
    if ns.directory is not None:
        o["directory"] = _nonempty(ns.directory, "--directory", "PATH")
    if ns.machine:  # an empty -M means "derive it", as in nspawn
        o["machine"] = v.parse_machine_name(ns.machine)
    if ns.hostname is not None:
        o["hostname"] = v.parse_machine_name(ns.hostname, "--hostname")
    if ns.uuid is not None:
        o["uuid"] = v.parse_uuid(ns.uuid)
    for key in ("boot", "as_pid2", "read_only", "ephemeral", "private_network", "network_veth",
                "quiet", "detach", "wait", "dry_run"):
        if getattr(ns, key):
            o[key] = True
    if ns.chdir is not None:
        o["chdir"] = parse_absolute(ns.chdir, "--chdir")
    if ns.setenv:
        o["setenv"] = [v.parse_setenv(item) for item in ns.setenv]
    if ns.user:  # an empty -u means the default (root), as in nspawn
        o["user"] = v.parse_user(ns.user)
    if ns.bind_specs:
        o["bind_specs"] = ns.bind_specs
    if ns.tmpfs:
        o["tmpfs"] = [parse_tmpfs(t) for t in ns.tmpfs]
    if ns.inaccessible:
        o["inaccessible"] = [parse_absolute(p, "--inaccessible") for p in ns.inaccessible]
    if ns.link_journal is not None:
        o["link_journal"] = v.parse_choice(ns.link_journal, LINK_JOURNAL, "--link-journal")
    if ns.resolv_conf is not None:
        o["resolv_conf"] = v.parse_choice(ns.resolv_conf, RESOLV_CONF, "--resolv-conf")
    if ns.timezone is not None:
        o["timezone"] = v.parse_choice(ns.timezone, TIMEZONE, "--timezone")
    if ns.register is not None:
        o["register"] = "auto" if ns.register == "auto" else (
            "yes" if v.parse_boolean(ns.register, "--register") else "no")
    if ns.kill_signal is not None:
        o["kill_signal"] = v.parse_signal(ns.kill_signal)
    if ns.console is not None:
        o["console"] = v.parse_choice(ns.console, CONSOLE, "--console")
    if ns.capability:
        o["capabilities"] = frozenset().union(*(v.parse_capabilities(c, "--capability") for c in ns.capability))
    if ns.drop_capability:
        o["drop_capabilities"] = frozenset().union(
            *(v.parse_capabilities(c, "--drop-capability") for c in ns.drop_capability))
    if ns.settings is not None:
        s = ns.settings if ns.settings in ("override", "trusted") else (
            "yes" if v.parse_boolean(ns.settings, "--settings") else "no")
        o["settings"] = s
    if ns.reboot is not None:
        o["reboot_exit"] = v.parse_choice(ns.reboot, REBOOT, "--reboot") == "exit"
    if ns.no_new_privileges is not None:
        o["no_new_privileges"] = v.parse_boolean(ns.no_new_privileges, "--no-new-privileges")
    if ns.system_call_filter:
        allow: list[str] = []
        deny: list[str] = []
        for value in ns.system_call_filter:  # each use adds to its list, as in nspawn
            negative, names = v.parse_syscall_filter(value, "--system-call-filter")
            (deny if negative else allow).extend(names)
        o["syscall_allow"], o["syscall_deny"] = tuple(allow), tuple(deny)
    if ns.private_users_pick:
        o["private_users"] = "pick"
        o["private_users_ownership"] = "auto"
    if ns.private_users is not None:
        o["private_users"] = v.parse_private_users(ns.private_users)
    if ns.private_users_ownership is not None:
        o["private_users_ownership"] = v.parse_private_users_ownership(ns.private_users_ownership)
    if ns.notify_ready is not None:
        o["notify_ready"] = v.parse_boolean(ns.notify_ready, "--notify-ready")
    if ns.wait_timeout is not None:
        o["wait_timeout"] = _parse_seconds(ns.wait_timeout, "--wait-timeout")
    command = list(ns.command or [])
    if command:
        o["command"] = command
    return Options(o)


def _parse_seconds(text: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86400:
        raise UsageError(f"{option} takes seconds (0 < SECS <= 86400), not {v.printable(text)!r}",
                         f"for example {option}=90")
    return value


def find_directory(machine: str | None) -> str:
    """nspawn without -D: the image named by -M in the image search path, else the current directory."""
    if machine:
        for base in IMAGE_SEARCH_PATH:
            candidate = os.path.join(base, machine)
            if os.path.isdir(candidate):
                return candidate
        raise UsageError(f"no image named {machine!r} in {', '.join(IMAGE_SEARCH_PATH)}",
                         "pass the tree with -D DIR")
    return os.getcwd()


def check_directory(path: str) -> Path:
    if not os.path.exists(path):
        raise SpecError(f"directory {v.printable(path)} does not exist", "pass an existing OS tree with -D DIR")
    if not os.path.isdir(path):
        raise SpecError(f"{v.printable(path)} is not a directory", "pass an OS tree's root directory with -D DIR")
    return Path(os.path.abspath(path))


def derive_machine_name(directory: Path, ephemeral: bool) -> str:
    """nspawn's rule: the directory's last component, cleaned up as a hostname;
    with -x a random suffix so several ephemeral copies of one image can run at once."""
    # nspawn names a container of the host's root after the host
    base = v.hostname_cleanup(directory.name if str(directory) != "/" else os.uname().nodename)
    if not v.is_valid_hostname(base):
        raise UsageError(f"cannot derive a machine name from directory {str(directory)!r}",
                         "pass a name with -M NAME")
    if ephemeral:
        base = f"{base[:v.HOST_NAME_MAX - 17]}-{os.urandom(8).hex()}"
    return base


_SPEC_KEYS = ("hostname", "uuid", "boot", "as_pid2", "chdir", "user", "read_only", "ephemeral",
              "private_network", "network_veth", "link_journal", "resolv_conf", "timezone", "register",
              "kill_signal", "console", "quiet", "reboot_exit", "no_new_privileges", "private_users",
              "private_users_ownership", "detach", "dry_run", "syscall_allow", "syscall_deny",
              "notify_ready", "wait", "wait_timeout")


# Settings that systemd-nspawn masks together (its SETTING_* bits): when the
# stronger side sets any of a group, the weaker side's whole group is dropped.
MASK_GROUPS: tuple[frozenset[str], ...] = (
    frozenset({"boot", "as_pid2", "command"}),  # SETTING_START_MODE (and the parameters)
    frozenset({"capabilities", "drop_capabilities"}),  # SETTING_CAPABILITY
    frozenset({"bind_specs", "tmpfs", "inaccessible"}),  # SETTING_CUSTOM_MOUNTS
    frozenset({"private_network", "network_veth"}),  # SETTING_NETWORK
    frozenset({"private_users", "private_users_ownership"}),  # SETTING_USERNS
    frozenset({"syscall_allow", "syscall_deny"}),  # SETTING_SYSCALL_FILTER
)


def merge_layers(weak: dict[str, Any], strong: dict[str, Any]) -> dict[str, Any]:
    """STRONG over WEAK, group by group as nspawn's settings mask does."""
    weak = dict(weak)
    for group in MASK_GROUPS:
        if group & strong.keys():
            for key in group:
                weak.pop(key, None)
    weak.update({k: val for k, val in strong.items() if val is not None})
    return weak


def build_spec(cli: Options, settings: Options | None = None) -> ContainerSpec:
    """Merge the command line and a .nspawn file's settings (already filtered
    for trust) into a ContainerSpec: the command line wins, unless the file
    was loaded with --settings=override."""
    if settings is None:
        merged = {k: val for k, val in cli.values.items() if val is not None}
    elif settings.override:
        merged = merge_layers(cli.values, settings.values)
    else:
        merged = merge_layers(settings.values, cli.values)
    merged["directory"] = cli.values["directory"]
    directory = Path(merged["directory"])
    if str(directory) == "/" and not merged.get("ephemeral"):
        # nspawn's rule: the host's own root may only be run as a throwaway copy
        raise SpecError("spawning a container on the host's root directory is not supported",
                        "add --ephemeral (-x) to run on a discarded copy of it")
    machine = merged.get("machine") or derive_machine_name(directory, bool(merged.get("ephemeral")))
    if merged.get("boot") and merged.get("as_pid2"):
        raise UsageError("--boot and --as-pid2 may not be combined", "pick one of -b and -a")
    tree = directory
    binds = tuple(parse_bind(value, ro, tree, label) for value, ro, label in merged.get("bind_specs", []))
    kwargs: dict[str, Any] = {k: merged[k] for k in _SPEC_KEYS if merged.get(k) is not None}
    return ContainerSpec(
        directory=directory,
        machine=machine,
        command=tuple(merged.get("command", ())),
        setenv=tuple(merged.get("setenv", ())),
        binds=binds,
        tmpfs=tuple(merged.get("tmpfs", ())),
        inaccessible=tuple(merged.get("inaccessible", ())),
        capabilities=frozenset(merged.get("capabilities", frozenset())),
        drop_capabilities=frozenset(merged.get("drop_capabilities", frozenset())),
        **kwargs,
    )


def parse_args(argv: list[str]) -> Options:
    """The command line alone, validated (no settings file, directory unchecked)."""
    return options_from_args(_namespace(list(argv)))


def parse_spawn_args(argv: list[str], *, trusted_dirs: tuple[str, ...] | None = None) -> ContainerSpec:
    """systemd-nspawn's command line (plus nsdash's own options) -> ContainerSpec.

    TRUSTED_DIRS replaces /etc/systemd/nspawn and /run/systemd/nspawn (tests)."""
    cli = parse_args(argv)
    raw_dir = cli.get("directory") or find_directory(cli.get("machine"))
    directory = check_directory(raw_dir)
    cli.values["directory"] = str(directory)
    settings_mode = cli.get("settings", "yes")
    settings: Options | None = None
    if settings_mode != "no":
        from nsdash.launcher import settings as nspawn_settings

        name = cli.get("machine") or derive_machine_name(directory, False)
        settings = nspawn_settings.load_for(name, directory, settings_mode,
                                            trusted_dirs if trusted_dirs is not None else nspawn_settings.TRUSTED_DIRS)
    spec = build_spec(cli, settings)
    return spec
