"""`nsdash spawn` options: systemd-nspawn's names, short forms, syntax and meaning.

The options themselves are rows of one table (nsdash.launcher.optable); this
module reads a command line with them and turns options and .nspawn settings
into a ContainerSpec.  spec_from(argv) is the one way to build a spec: `nsdash
spawn`, `nsdash start` and the dashboard's spawn form all call it, so they
accept and refuse the same names and read .nspawn files the same way (command
line wins group by group; untrusted files cannot grant privileges).  All bad
input raises UsageError/SpecError with one line naming the problem and the fix.

The command line is read by a small getopt_long work-alike rather than
argparse: it keeps nspawn's exact rules (options stop at the first non-option,
a value may start with '-', unique prefixes of long names) and spares the
spawn path argparse's imports (argparse pulls in shutil on first use).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from nsdash.errors import PrivilegeError, SpecError, UsageError
from nsdash.launcher import optable as t
from nsdash.launcher import validate as v
from nsdash.launcher.optable import (  # noqa: F401  (re-exported: callers and tests name them here)
    CONSOLE,
    LINK_JOURNAL,
    MASK_GROUPS,
    NO_ARG,
    OPTIONAL,
    OPTIONS,
    REBOOT,
    REQUIRED,
    RESOLV_CONF,
    SETTINGS,
    TIMEZONE,
)
from nsdash.launcher.spec import Bind, ContainerSpec, OverlayMount
from nsdash.launcher.values import check_unique_credentials, parse_absolute, parse_tmpfs  # noqa: F401

TYPE_CHECKING = False  # typing costs the spawn path ~3 ms to import; mypy reads this as True
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

Opt = t.Setting  # the row type, by its old name

# Where systemd-nspawn looks for an image named by -M when -D is not given.

# Settings keys that are not ContainerSpec fields, and why nothing is lost.
NOT_SPEC_FIELDS = frozenset({
    "help", "version", "no_pager",  # handled while reading the command line
    "directory", "machine", "settings",  # spec_from's own inputs
    "bind_specs", "overlay_specs",  # become `binds` and `overlays` once the tree is known
    "template",  # acted on by spec_from before the tree is checked: the spec holds the tree made
})


def _usage(text: str) -> UsageError:
    return UsageError(f"spawn: {v.printable(text)}", "run 'nsdash spawn --help' for the options")


def _find_long(name: str) -> t.Setting:
    """An exact name, or a unique prefix of one, as getopt_long accepts."""
    if name in t.BY_LONG:
        return t.BY_LONG[name]
    matches = [o for n, o in t.BY_LONG.items() if n.startswith(name)]
    if len({id(o) for o in matches}) == 1 and name:
        return matches[0]
    if matches and name:
        names = ", ".join(sorted(f"--{o.long}" for o in matches))
        raise _usage(f"option '--{name}' is ambiguous; possibilities: {names}")
    raise _usage(f"unrecognized option '--{name}'")


def _exit_printing(text: str) -> SystemExit:
    sys.stdout.write(text)
    return SystemExit(0)


def _help() -> SystemExit:
    return _exit_printing(t.help_text())


def getopt(argv: list[str]) -> tuple[list[tuple[t.Setting, Any]], list[str]]:
    """systemd-nspawn's getopt_long("+...") semantics: options until the first
    non-option argument or '--'; -abc bundles; -Dvalue and -D value; --name=value
    and --name value; optional arguments only as --name=value.  A flag's value is
    None (its row's const applies)."""
    found: list[tuple[t.Setting, Any]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            return found, argv[i:]
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            opt = _find_long(name)
            if opt.key == "help" and not eq:
                raise _help()  # at once, as nspawn's option loop does: later errors don't matter
            if opt.arg == NO_ARG:
                if eq:
                    raise _usage(f"option '--{opt.long}' doesn't allow an argument")
                found.append((opt, None))
            elif eq:
                found.append((opt, value))
            elif opt.arg == OPTIONAL:
                found.append((opt, None))
            elif i < len(argv):
                found.append((opt, argv[i]))
                i += 1
            else:
                raise _usage(f"option '--{opt.long}' requires an argument")
        elif arg.startswith("-") and arg != "-":
            j = 1
            while j < len(arg):
                short = t.BY_SHORT.get(arg[j])
                if short is None:
                    raise _usage(f"invalid option -- '{arg[j]}'")
                j += 1
                if short.key == "help":
                    raise _help()
                if short.arg == NO_ARG:
                    found.append((short, None))
                    continue
                if j < len(arg):
                    found.append((short, arg[j:]))
                elif i < len(argv):
                    found.append((short, argv[i]))
                    i += 1
                else:
                    raise _usage(f"option requires an argument -- '{short.short}'")
                break
        else:
            return found, argv[i - 1:]
    return found, []


# ------------------------------------------------------------------ storing values

def store(values: dict[str, Any], row: t.Setting, parsed: Any, how: str) -> None:
    """Put a parsed value into VALUES the way the row says (t.SET, t.APPEND, ...)."""
    key = row.key
    if how == t.UPDATE:
        values.update(parsed)
        return
    if how == t.ADD:
        for k, names in parsed.items():  # each use adds to its list, as in nspawn
            values[k] = tuple(values.get(k, ())) + tuple(names)
        return
    assert key is not None
    if how == t.SET:
        if parsed is None:
            values.pop(key, None)  # an empty -M, Volatile=no: back to the default
        else:
            values[key] = parsed
    elif how == t.APPEND:
        values[key] = [*values.get(key, []), parsed]
    elif how == t.EXTEND:
        values[key] = [*values.get(key, []), *parsed]
    elif how == t.UNION:
        values[key] = frozenset(values.get(key, frozenset())) | parsed
    elif how == t.MERGE:
        values[key] = {**values.get(key, {}), **parsed}
    else:  # pragma: no cover - a row with an unknown store kind is a programming error
        raise AssertionError(how)


def refuse_unsupported(row: t.Setting, label: str) -> UsageError:
    return UsageError(f"{label} is not supported by nsdash: {row.unsupported}",
                      "the README lists what nsdash leaves out")


def apply_option(values: dict[str, Any], row: t.Setting, raw: str | None) -> None:
    """One command-line option (RAW None: a flag, or an optional argument left out)."""
    label = row.label
    if row.unsupported:
        raise refuse_unsupported(row, label)
    if row.key == "version":
        from nsdash import __version__

        raise _exit_printing(f"nsdash {__version__} (systemd-nspawn 252's options)\n")
    if raw is None:
        parsed = row.const
    elif raw == "help" and row.help_list is not None:
        raise _exit_printing("".join(f"{item}\n" for item in row.help_list()))
    else:
        assert row.parse is not None
        parsed = row.parse(raw, label)
    store(values, row, parsed, row.store)


def apply_file_key(values: dict[str, Any], row: t.Setting, key: str, raw: str) -> None:
    """One .nspawn assignment KEY=RAW (KEY as written, for messages)."""
    label = f"{key}="
    if row.unsupported:
        raise refuse_unsupported(row, label)
    if raw == "" and row.file_reset:
        for k in row.keys:  # an empty assignment resets the list (unit-file rule)
            values[k] = [] if row.file_store in (t.APPEND, t.EXTEND) else ()
        return
    parse = row.file_parse or row.parse
    assert parse is not None
    store(values, row, parse(raw, label), row.file_store)


class Options:
    """Settings gathered from the command line or a .nspawn file before they
    become a ContainerSpec.  None means "not given here"."""

    def __init__(self, values: dict[str, Any] | None = None, override: bool = False) -> None:
        self.values: dict[str, Any] = values if values is not None else {}
        self.override = override  # --settings=override: these win over the command line

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None else value


def parse_args(argv: Sequence[str]) -> Options:
    """The command line alone, validated (no settings file, directory unchecked)."""
    found, command = getopt(list(argv))
    values: dict[str, Any] = {}
    for row, raw in found:
        apply_option(values, row, raw)
    if command:
        values["command"] = list(command)
    return Options(values)


# ------------------------------------------------------------------ binds

def _refuse_nul(value: str, option: str) -> None:
    """A NUL cannot be in a path (the kernel would cut it there); a .nspawn file or the form can hold one."""
    if "\0" in value:
        raise UsageError(f"invalid {option} {value!r}: NUL in a path", "remove it")


def parse_bind(value: str, read_only: bool, tree: Path | None, option: str = "--bind") -> Bind:
    """SRC[:DST[:OPTIONS]] with '+SRC' relative to the image, '\\:' for a colon, and an
    empty SRC for a temporary directory (removed at exit), as nspawn takes them."""
    syntax = f"use {option.rstrip('=')}=SRC[:DST[:OPTIONS]]"
    _refuse_nul(value, option)
    parts = v.split_escaped(value)
    if len(parts) > 3:
        raise UsageError(f"invalid {option} {value!r}: too many ':'", f"{syntax} (escape ':' in paths as '\\:')")
    source = parts[0]
    target = parts[1] if len(parts) > 1 else None
    opts = parts[2] if len(parts) > 2 else ""
    if not source and target is None:
        raise UsageError(f"invalid {option} {value!r}: empty source", syntax)
    if target is not None and not target:
        raise UsageError(f"invalid {option} {value!r}: empty target", syntax)
    host_source: Path | None
    if not source:
        host_source = None  # nspawn: a temporary directory, made at start and removed at exit
    elif source.startswith("+"):
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
    assert target is not None
    if not v.is_absolute_path(target):
        raise UsageError(f"invalid {option} {value!r}: target {target!r} is not an absolute path", syntax)
    recursive, idmap = True, False
    for opt in filter(None, opts.split(",")):
        if opt in ("rbind", "norbind"):
            recursive = opt == "rbind"
        elif opt in ("idmap", "rootidmap", "noidmap"):
            # without a user namespace every mapping is the identity; with one, the plan refuses
            # ID-mapped binds (not implemented), so idmap and rootidmap need no difference here
            idmap = opt != "noidmap"
        elif opt == "owneridmap":
            raise UsageError(f"{option} option {opt!r} is not supported by nsdash (systemd 252 has no such option)",
                             "use idmap, rootidmap or noidmap")
        else:
            raise UsageError(f"invalid {option} option {opt!r} in {value!r}",
                             "use rbind, norbind, idmap, rootidmap or noidmap")
    if host_source is not None and not host_source.exists():
        raise SpecError(f"{option} source {v.printable(host_source)} does not exist", "create it or fix the path")
    return Bind(source=host_source, target=v.normalize_path(target), read_only=read_only, recursive=recursive,
                idmap=idmap)


def _host_path(path: str, tree: Path, option: str, value: str) -> Path:
    """An --overlay source: +PATH inside the image (followed there, never out of it),
    else absolute, or relative to the current directory (nspawn's rule for overlays)."""
    _refuse_nul(value, option)
    if path.startswith("+"):
        from nsdash.launcher.mounts import resolve_in_root

        return Path(resolve_in_root(str(tree), v.normalize_path("/" + path[1:])))
    return Path(os.path.abspath(path))


def parse_overlay(value: str, read_only: bool, tree: Path, option: str = "--overlay") -> OverlayMount:
    """LOWER[:LOWER...]:UPPER:DEST, or SOURCE:DEST (DEST's host path is then the top too)."""
    syntax = f"use {option.rstrip('=')}=LOWER[:LOWER...]:UPPER:DEST or SOURCE:DEST"
    _refuse_nul(value, option)
    parts = v.split_escaped(value)
    if len(parts) < 2:
        raise UsageError(f"invalid {option} {value!r}: at least two paths are needed", syntax)
    target = parts[-1]
    if not v.is_absolute_path(target):
        raise UsageError(f"invalid {option} {value!r}: the destination {target!r} is not an absolute path", syntax)
    sources = parts[:-1] if len(parts) > 2 else [parts[0], target]
    temporary = not read_only and sources[-1] == ""
    if any(not p for p in (sources[:-1] if temporary else sources)):
        raise UsageError(f"invalid {option} {value!r}: an empty path", f"{syntax} (only the upper may be empty)")
    paths = [None if not p else _host_path(p, tree, option, value) for p in sources]
    for p in paths:
        if p is not None and not p.is_dir():
            raise SpecError(f"{option} source {v.printable(p)} is not a directory", "create it or fix the path")
    if read_only:
        return OverlayMount(lower=tuple(p for p in paths if p is not None), upper=None,
                            target=v.normalize_path(target), read_only=True)
    return OverlayMount(lower=tuple(p for p in paths[:-1] if p is not None), upper=paths[-1],
                        target=v.normalize_path(target), temporary=temporary)


# ------------------------------------------------------------------ the spec

def find_directory(machine: str | None) -> str:
    """nspawn without -D: the image named by -M in the image search path, else the current directory."""
    if machine:
        from nsdash.system.paths import image_dirs
        search = image_dirs()
        denied = []
        for base in search:
            candidate = base / machine
            try:
                if stat.S_ISDIR(os.stat(candidate).st_mode):
                    return str(candidate)
            except PermissionError:  # /var/lib/machines is 0700: a user cannot look, not "no image"
                denied.append(base)
            except (OSError, ValueError):
                continue
        if denied and os.geteuid() != 0:
            raise _out_of_reach(str(denied[0]))
        raise UsageError(f"no image named {machine!r} in {', '.join(map(str, search))}",
                         "pass the tree with -D DIR")
    return os.getcwd()


def _out_of_reach(path: str) -> PrivilegeError:
    return PrivilegeError(f"nsdash spawn needs root: {v.printable(path)} is out of this user's reach",
                          "run it with sudo")


def check_directory(path: str) -> Path:
    try:
        mode = os.stat(path).st_mode
    except PermissionError:  # a tree in a root-only directory exists; saying it does not misleads
        if os.geteuid() != 0:
            raise _out_of_reach(path) from None
        raise SpecError(f"directory {v.printable(path)} cannot be reached: permission denied",
                        "check the file system's permissions for root (NFS root_squash, say)") from None
    except (OSError, ValueError):
        raise SpecError(f"directory {v.printable(path)} does not exist", "pass an existing OS tree with -D DIR") from None
    if not stat.S_ISDIR(mode):
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


def merge_layers(weak: dict[str, Any], strong: dict[str, Any]) -> dict[str, Any]:
    """STRONG over WEAK, group by group as nspawn's settings mask does; per-entry for
    dicts (each resource limit is its own group in nspawn)."""
    weak = dict(weak)
    for group in MASK_GROUPS:
        if group & strong.keys():
            for key in group:
                weak.pop(key, None)
    for k, val in strong.items():
        if val is None:
            continue
        weak[k] = {**weak[k], **val} if isinstance(val, dict) and isinstance(weak.get(k), dict) else val
    return weak


def _spec_value(key: str, value: Any) -> Any:
    """A settings value in the form its ContainerSpec field takes."""
    if isinstance(value, dict):  # rlimits: {NAME: (soft, hard)}
        return tuple((name, *limits) for name, limits in sorted(value.items()))
    if isinstance(value, frozenset | set):
        return frozenset(value)
    if isinstance(value, list):
        return tuple(value)
    return value


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
    if v.is_host_root(directory) and not merged.get("ephemeral"):
        # nspawn's rule: the host's own root may only be run as a throwaway copy
        raise SpecError("spawning a container on the host's root directory is not supported",
                        "add --ephemeral (-x) to run on a discarded copy of it")
    machine = merged.get("machine") or derive_machine_name(directory, bool(merged.get("ephemeral")))
    if merged.get("boot") and merged.get("as_pid2"):
        raise UsageError("--boot and --as-pid2 may not be combined", "pick one of -b and -a")
    if merged.get("volatile", "no") != "no" and merged.get("ephemeral"):
        raise UsageError(f"--volatile={merged['volatile']} cannot be combined with --ephemeral",
                         "pick one (--volatile=overlay is like -x)")
    if merged.get("private_users") == "pick" and merged.get("private_users_ownership") is None:
        # nspawn 252: with pick, ownership defaults to auto (an ID-mapped root where the file system
        # can, chown otherwise), not off, so a root-owned 0700 tree still starts (checked by hand)
        merged["private_users_ownership"] = "auto"
    _network_implications(merged)
    binds = tuple(parse_bind(value, ro, directory, label) for value, ro, label in merged.get("bind_specs", []))
    overlays = tuple(parse_overlay(value, ro, directory, label)
                     for value, ro, label in merged.get("overlay_specs", []))
    check_unique_credentials(merged.get("credentials", ()))
    fields = ContainerSpec._fields
    kwargs = {k: _spec_value(k, val) for k, val in merged.items()
              if k in fields and k not in ("directory", "machine") and val is not None}
    return ContainerSpec(directory=directory, machine=machine, binds=binds, overlays=overlays, **kwargs)


# Networking options that make or move links: none of them goes with a joined namespace.
_LINK_OPTIONS = (("network_veth", "--network-veth"), ("network_zone", "--network-zone"),
                 ("network_bridge", "--network-bridge"), ("network_interface", "--network-interface"),
                 ("network_macvlan", "--network-macvlan"), ("network_ipvlan", "--network-ipvlan"),
                 ("network_veth_extra", "--network-veth-extra"))


def _network_implications(merged: dict[str, Any]) -> None:
    """nspawn 252's networking rules, checked once on the merged settings: a bridge and a
    zone exclude each other and each means a veth; links of its own mean a network of its
    own; --network-namespace-path goes with --private-network only (the joined namespace
    is private already: checked against systemd-nspawn 252); --port needs a veth."""
    if merged.get("network_bridge") and merged.get("network_zone"):
        raise UsageError("--network-bridge and --network-zone may not be combined", "pick one")
    if merged.get("network_namespace_path"):
        given = [name for key, name in _LINK_OPTIONS if merged.get(key)]
        if given:
            raise UsageError(f"--network-namespace-path cannot be combined with {given[0]}",
                             "the joined namespace is the container's network: pick one")
    if merged.get("network_bridge") or merged.get("network_zone"):
        merged["network_veth"] = True
    if any(merged.get(key) for key, _ in _LINK_OPTIONS):
        merged["private_network"] = True
    if merged.get("port") and not merged.get("network_veth"):
        raise UsageError("--port needs --network-veth (-n) or --network-zone: ports are forwarded to the machine's "
                         "veth link",
                         "add -n")


def _warn_to_stderr(message: str) -> None:
    sys.stderr.write(f"nsdash: warning: {v.printable(message)}\n")


def _from_template(cli: Options) -> None:
    """--template=DIR: make the tree (-D, else the image home's NAME for -M NAME) from the
    template if it does not exist yet, as nspawn does before anything else."""
    from nsdash.launcher import template
    from nsdash.system import paths

    if cli.get("ephemeral"):
        raise UsageError("--template= cannot be combined with --ephemeral",
                         "an ephemeral machine leaves no tree to make; boot the template with -x instead")
    directory = cli.get("directory")
    if not directory:
        machine = cli.get("machine")
        if not machine:
            raise UsageError("--template= needs the tree to make", "name it with -D DIR or -M NAME")
        found = [str(base / machine) for base in paths.image_dirs()]
        directory = next((c for c in found if os.path.isdir(c)), str(paths.image_home() / machine))
        cli.values["directory"] = directory
    if cli.get("dry_run") and not os.path.lexists(directory):
        raise UsageError(f"--template: {v.printable(directory)} does not exist yet, and --dry-run makes nothing",
                         "run without --dry-run once to create it")
    template.populate(cli.get("template"), directory, bool(cli.get("quiet")))


def _from_image(cli: Options) -> Path:
    """--image=FILE, checked as systemd-nspawn checks it before anything is attached: not with
    -D or --template, an image that exists and that nsdash can dissect (launcher.dissect, pure:
    nothing is attached).  The machine is named after the file (less ".raw"), the image is
    read-only where it cannot be written or its root partition is marked so (as nspawn implies
    --read-only), and the spec's directory is where launcher.image will mount it.  Returns the
    image's path (its directory holds NAME.nspawn)."""
    from nsdash.launcher import dissect, image

    if cli.get("directory"):
        raise UsageError("--directory= and --image= may not be combined",
                         "pick one: -D for a directory tree, -i for a disk image")
    if cli.get("template"):
        raise UsageError("--template= may not be combined with --image=", "a template makes a directory tree: use -D")
    if cli.get("pivot_root"):
        raise UsageError("--pivot-root= together with --image= is not supported by nsdash", "leave one of them out")
    path = Path(os.path.abspath(cli.get("image")))
    ephemeral = bool(cli.get("ephemeral"))
    if ephemeral and cli.get("volatile", "no") != "no":
        raise UsageError(f"--volatile={cli.get('volatile')} cannot be combined with --ephemeral",
                         "pick one (--volatile=overlay is like -x)")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not hang us
    except FileNotFoundError:
        raise SpecError(f"--image: {v.printable(path)} does not exist", "pass an existing disk image file") from None
    except OSError as e:
        raise SpecError(f"--image: cannot open {v.printable(path)}: {e.strerror}", None) from None
    try:
        found = dissect.dissect_open(fd, v.printable(path))
    finally:
        os.close(fd)
    if not cli.get("read_only") and (found.root.read_only or (not ephemeral and not _writable(path))):
        cli.values["read_only"] = True  # nspawn: a read-only image implies --read-only
    if not cli.get("machine"):
        stem = path.name[:-4] if path.name.endswith(".raw") else path.name
        cli.values["machine"] = derive_machine_name(path.with_name(stem), ephemeral)
    for spec in [*cli.get("bind_specs", []), *cli.get("overlay_specs", [])]:
        if spec[0].startswith("+") or ":+" in spec[0]:
            raise UsageError(f"{spec[2]} {v.printable(spec[0])!r}: paths relative to the image ('+') are not "
                             "supported with --image by nsdash", "bind a host path")
    cli.values["image"] = path
    cli.values["directory"] = str(image.root_dir(cli.values["machine"]))
    return path


def _raw_image_named(machine: str) -> str | None:
    """NAME.raw in the image search path, unless a tree NAME comes first (machinectl's order)."""
    from nsdash.system.paths import image_dirs
    for base in image_dirs():
        if (base / machine).is_dir():
            return None
        candidate = base / f"{machine}.raw"
        if candidate.is_file():
            return str(candidate)
    return None


def _writable(path: Path) -> bool:
    """Whether the image is writable: not marked read-only (machinectl read-only takes a raw
    image's write bits), not immutable, not on a read-only file system."""
    try:
        if not os.stat(path).st_mode & 0o222:
            return False
        os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))
    except OSError:
        return False
    return True


def spec_from(argv: Sequence[str], *, trusted_dirs: tuple[str, ...] | None = None,
              warn: Callable[[str], None] | None = None) -> ContainerSpec:
    """The one way to a ContainerSpec: systemd-nspawn's command line (plus nsdash's
    own options) merged with the machine's .nspawn file.

    `nsdash spawn` passes its arguments; `nsdash start NAME` and the dashboard's
    form write theirs as the same options.  TRUSTED_DIRS replaces
    /etc/systemd/nspawn and /run/systemd/nspawn (tests); WARN receives what a
    .nspawn file sets that nsdash does not apply (default: stderr)."""
    cli = parse_args(argv)
    if not cli.get("image") and not cli.get("directory") and not cli.get("template") and cli.get("machine"):
        raw = _raw_image_named(cli.get("machine"))
        if raw is not None:
            cli.values["image"] = raw  # nspawn -M NAME boots NAME.raw when there is no tree NAME
    if cli.get("image"):
        directory = settings_dir = _from_image(cli)
    else:
        if cli.get("template"):
            _from_template(cli)
        raw_dir = cli.get("directory") or find_directory(cli.get("machine"))
        directory = settings_dir = check_directory(raw_dir)
        cli.values["directory"] = str(directory)
    settings_mode = cli.get("settings", "yes")
    settings: Options | None = None
    if settings_mode != "no":
        from nsdash.launcher import settings as nspawn_settings

        name = cli.get("machine") or derive_machine_name(directory, False)
        settings = nspawn_settings.load_for(name, settings_dir, settings_mode,
                                            trusted_dirs if trusted_dirs is not None else nspawn_settings.TRUSTED_DIRS,
                                            warn=warn or _warn_to_stderr)
    return build_spec(cli, settings)


parse_spawn_args = spec_from  # the command line's name for it
