""".nspawn settings files, as systemd.nspawn(5) describes them.

Found where systemd-nspawn looks: /etc/systemd/nspawn/NAME.nspawn, then
/run/systemd/nspawn/NAME.nspawn (both trusted), then NAME.nspawn next to the
image directory (untrusted unless --settings=trusted).

Which keys exist, how each value is parsed and whether an untrusted file may
set it are columns of the option table (nsdash.launcher.optable): an
untrusted file cannot grant privileges (its Capability=, custom mounts,
[Network] settings, resource limits and the calls its SystemCallFilter= would
allow are dropped, as nspawn drops them; a '~' deny-list only narrows, so it
stays).  What is dropped, and keys or sections nsdash does not know, are
reported as warnings (nspawn warns too), never silently ignored; a key nsdash
knows but does not support is refused with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

from nsdash.errors import UsageError
from nsdash.launcher.optable import PRIVILEGED  # the trust rule is a column of the table

TYPE_CHECKING = False  # typing costs the spawn path ~3 ms to import; mypy reads this as True
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

TRUSTED_DIRS = ("/etc/systemd/nspawn", "/run/systemd/nspawn")


class Settings:
    """What a .nspawn file set, as option values keyed like options.Options."""

    def __init__(self, values: dict[str, Any], path: str | None = None, warnings: list[str] | None = None) -> None:
        self.values = values
        self.path = path
        self.warnings = warnings if warnings is not None else []

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
    """Parse a .nspawn file's text into option values (validated), through the
    option table's .nspawn keys.  A key or section nsdash does not know is
    not applied and is reported in Settings.warnings (nspawn warns likewise)."""
    from nsdash.launcher import optable, options

    values: dict[str, Any] = {}
    warnings: list[str] = []
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
        row = optable.BY_FILE_KEY.get(f"{section}.{key}")
        if row is None:
            where = f"[{section}]" if section else "outside any section"
            warnings.append(f"{path}:{lineno}: unknown setting {key}= {where}, not applied")
            continue
        try:
            options.apply_file_key(values, row, key, value)
        except UsageError as e:
            raise UsageError(f"{path}:{lineno}: {e.message}", e.hint) from None
    return Settings(values, path, warnings)


def restrict(settings: Settings, trusted: bool) -> Settings:
    """Drop what an untrusted file may not grant.  DropCapability= and the
    [Files] settings that only narrow (ReadOnly=) stay."""
    if trusted:
        return settings
    kept = {k: val for k, val in settings.values.items() if k not in PRIVILEGED}
    from nsdash.launcher.optable import ROWS

    dropped = sorted({f.split(".", 1)[1] + "=" for r in ROWS for f in r.file for k in settings.values
                      if k in PRIVILEGED and k in r.privileged})
    warnings = list(settings.warnings)
    if dropped:
        warnings.append(f"{settings.path}: not trusted (next to the image), so these are not applied: "
                        f"{', '.join(dropped)}; move it to /etc/systemd/nspawn or pass --settings=trusted")
    return Settings(kept, settings.path, warnings)


def load_for(machine: str, directory: Path, mode: str,
             trusted_dirs: tuple[str, ...] = TRUSTED_DIRS, warn: Callable[[str], None] | None = None) -> Any:
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
    for message in settings.warnings:
        if warn is not None:
            warn(message)
    return Options(dict(settings.values), override=(mode == "override"))
