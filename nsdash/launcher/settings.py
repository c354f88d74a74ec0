""".nspawn settings files, as systemd.nspawn(5) describes them.

Found where systemd-nspawn looks: /etc/systemd/nspawn/NAME.nspawn, then
/run/systemd/nspawn/NAME.nspawn (both trusted), then NAME.nspawn next to the
image directory (untrusted unless --settings=trusted).  An untrusted file
cannot grant privileges: its Capability=, Bind=, BindReadOnly=,
TemporaryFileSystem=, Inaccessible= and [Network] settings and the calls its
SystemCallFilter= would allow are ignored, as nspawn ignores them (a '~'
deny-list only narrows, so it stays).  Unknown sections and keys are ignored like nspawn does
(with a warning in nspawn's debug log; quietly here).
"""

from __future__ import annotations

import os
from pathlib import Path

from nsdash.errors import UsageError
from nsdash.launcher import validate as v

TYPE_CHECKING = False  # typing costs the spawn path ~3 ms to import; mypy reads this as True
if TYPE_CHECKING:
    from typing import Any

TRUSTED_DIRS = ("/etc/systemd/nspawn", "/run/systemd/nspawn")

# Keys an untrusted file may not set (they widen what the container can reach).
PRIVILEGED = frozenset({"capabilities", "bind_specs", "tmpfs", "inaccessible",
                        "private_network", "network_veth", "syscall_allow"})


class Settings:
    """What a .nspawn file set, as option values keyed like options.Options."""

    def __init__(self, values: dict[str, Any], path: str | None = None) -> None:
        self.values = values
        self.path = path

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None else value


def find(machine: str, directory: Path, trusted_dirs: tuple[str, ...] = TRUSTED_DIRS) -> tuple[str, bool] | None:
    """(path, trusted) of MACHINE's settings file, or None."""
    filename = f"{machine}.nspawn"
    for base in trusted_dirs:
        path = os.path.join(base, filename)
        if os.path.isfile(path):
            return path, True
    if str(directory) != "/":
        path = os.path.join(os.path.dirname(os.path.abspath(directory)), filename)
        if os.path.isfile(path):
            return path, False
    return None


def _bad(path: str, lineno: int, key: str, value: str, hint: str) -> UsageError:
    return UsageError(f"{path}:{lineno}: invalid {key}= value {value!r}", hint)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, stripped text) of each logical line: only '\n' ends
    a line, and a trailing backslash joins the next one with a space, as in
    systemd's unit-file syntax (comment lines are never continued)."""
    result: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not pending:
            start = lineno
            if line[:1] in ("#", ";"):
                result.append((lineno, line))
                continue
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        result.append((start, " ".join(pending).strip()))
        pending = []
    if pending:
        result.append((start, " ".join(pending).strip()))
    return result


def parse(text: str, path: str = "<settings>") -> Settings:
    """Parse a .nspawn file's text into option values (validated)."""
    from nsdash.launcher import options as opt

    values: dict[str, Any] = {}
    section = ""
    for lineno, line in _logical_lines(text):
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, eq, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            raise UsageError(f"{path}:{lineno}: expected KEY=VALUE, got {line!r}", "fix the settings file")
        try:
            _apply(values, section, key, value, opt)
        except UsageError as e:
            raise UsageError(f"{path}:{lineno}: {e.message}", e.hint) from None
    return Settings(values, path)


def _bool(value: str, key: str) -> bool:
    return v.parse_boolean(value, f"{key}=")


def _words(value: str, key: str) -> list[str]:
    import shlex  # only when a file has Parameters= or Environment=: shlex costs a few ms

    try:
        return shlex.split(value)
    except ValueError as e:
        raise UsageError(f"invalid {key}= value {value!r}: {e}", "fix the quoting") from None


def _apply(values: dict[str, Any], section: str, key: str, value: str, opt: Any) -> None:
    if section == "Exec":
        if key == "Boot":
            values["boot"] = _bool(value, key)
        elif key == "ProcessTwo":
            values["as_pid2"] = _bool(value, key)
        elif key == "Parameters":
            # an empty assignment resets the list, as in systemd's unit syntax
            values["command"] = _words(value, key) if value else []
        elif key == "Environment":
            env = values.setdefault("setenv", [])
            if not value:
                env.clear()
            for word in _words(value, key):
                if "=" not in word:
                    raise UsageError(f"invalid Environment= assignment {word!r}", "use Environment=NAME=VALUE")
                env.append(v.parse_setenv(word))
        elif key == "User":
            values["user"] = v.parse_user(value)
        elif key == "WorkingDirectory":
            values["chdir"] = opt.parse_absolute(value, "WorkingDirectory=")
        elif key == "Hostname":
            values["hostname"] = v.parse_machine_name(value, "Hostname=")
        elif key == "KillSignal":
            values["kill_signal"] = v.parse_signal(value, "KillSignal=")
        elif key == "Capability":
            values["capabilities"] = values.get("capabilities", frozenset()) | v.parse_capabilities(value, "Capability=")
        elif key == "DropCapability":
            values["drop_capabilities"] = (values.get("drop_capabilities", frozenset())
                                           | v.parse_capabilities(value, "DropCapability="))
        elif key == "PrivateUsers":
            values["private_users"] = v.parse_private_users(value)
        elif key == "NoNewPrivileges":
            values["no_new_privileges"] = _bool(value, key)
        elif key == "SystemCallFilter":
            # several lines add up; an empty one resets both lists (unit-file rule)
            allow, deny = values.get("syscall_allow", ()), values.get("syscall_deny", ())
            if not value:
                allow, deny = (), ()
            else:
                negative, names = v.parse_syscall_filter(value, "SystemCallFilter=")
                if negative:
                    deny += names
                else:
                    allow += names
            values["syscall_allow"], values["syscall_deny"] = allow, deny
    elif section == "Files":
        if key == "ReadOnly":
            values["read_only"] = _bool(value, key)
        elif key == "Volatile":
            _volatile(values, value)
        elif key in ("Bind", "BindReadOnly"):
            if not value:
                raise UsageError(f"empty {key}= value", f"use {key}=SRC[:DST[:OPTIONS]]")
            values.setdefault("bind_specs", []).append((value, key == "BindReadOnly", f"{key}="))
        elif key == "TemporaryFileSystem":
            values.setdefault("tmpfs", []).append(opt.parse_tmpfs(value, "TemporaryFileSystem="))
        elif key == "Inaccessible":
            values.setdefault("inaccessible", []).append(opt.parse_absolute(value, "Inaccessible="))
        elif key in ("PrivateUsersOwnership", "PrivateUsersChown"):
            if key == "PrivateUsersChown":  # the older boolean spelling
                value = "chown" if _bool(value, key) else "off"
            values["private_users_ownership"] = v.parse_private_users_ownership(value)
    elif section == "Network":
        if key == "Private":
            values["private_network"] = _bool(value, key)
        elif key == "VirtualEthernet":
            values["network_veth"] = _bool(value, key)


def _volatile(values: dict[str, Any], value: str) -> None:
    """Volatile=no maps to nothing, overlay to nsdash's -x (changes discarded at
    exit); yes and state (tmpfs root / tmpfs /var) have no nsdash equivalent."""
    v_lower = value.strip().lower()
    if v_lower == "overlay":
        values["ephemeral"] = True
        return
    try:
        if not v.parse_boolean(value, "Volatile="):
            return
    except UsageError:
        if v_lower != "state":
            raise
    raise UsageError(f"Volatile={value} is not supported by nsdash",
                     "use Volatile=overlay (like -x) or Volatile=no")


def restrict(settings: Settings, trusted: bool) -> Settings:
    """Drop what an untrusted file may not grant.  DropCapability= and the
    [Files] settings that only narrow (ReadOnly=) stay."""
    if trusted:
        return settings
    kept = {k: val for k, val in settings.values.items() if k not in PRIVILEGED}
    return Settings(kept, settings.path)


def load_for(machine: str, directory: Path, mode: str,
             trusted_dirs: tuple[str, ...] = TRUSTED_DIRS) -> Any:
    """The settings that apply to MACHINE under --settings=MODE, as options.Options
    (override mode marks them to win over the command line), or None."""
    from nsdash.launcher.options import Options

    if mode == "no":
        return None
    found = find(machine, directory, trusted_dirs)
    if found is None:
        return None
    path, trusted = found
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read settings file {path}: {e}", "fix it, or pass --settings=no") from None
    settings = restrict(parse(text, path), trusted or mode == "trusted")
    return Options(dict(settings.values), override=(mode == "override"))
