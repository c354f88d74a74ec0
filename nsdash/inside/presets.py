"""Unit file presets (systemd.preset(5)) read from the machine's own tree, for list-unit-files' PRESET column.

There is no bulk D-Bus call for presets, so like systemctl we evaluate the
preset files ourselves: files by name across the directories (an earlier
directory overrides a same-named file), the first matching line decides, and
a unit nothing matches is "enabled".  The files are the guest's: they are
read confined to the machine's root (nsdash.system.confined), each bounded.
"""

from __future__ import annotations

from nsdash.system import confined
from nsdash.system.wildcard import fnmatchcase

TYPE_CHECKING = False  # pathlib costs `systemctl list-units` (which imports this module) 3 ms
if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

PRESET_DIRS = ("etc/systemd/system-preset", "run/systemd/system-preset", "usr/local/lib/systemd/system-preset",
               "usr/lib/systemd/system-preset", "lib/systemd/system-preset")

# (The states shown with "-" for a preset are render.NO_PRESET_STATES: how a row is shown.)


def parse_rules(texts: Iterable[str]) -> list[tuple[str, str]]:
    """(action, pattern) pairs in order, from preset file contents already in precedence order."""
    rules = []
    for text in texts:
        for line in text.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in ("enable", "disable") and not line.lstrip().startswith(("#", ";")):
                rules.append((words[0], words[1]))
    return rules


def preset_of(name: str, rules: list[tuple[str, str]]) -> str:
    for action, pattern in rules:
        if fnmatchcase(name, pattern):
            return "enabled" if action == "enable" else "disabled"
    return "enabled"


def read_rules(root: str | Path) -> list[tuple[str, str]]:
    """The preset rules of the machine whose root is ROOT (files refused or missing are skipped)."""
    chosen: dict[str, str] = {}
    for d in PRESET_DIRS:
        try:
            names = sorted(confined.list_dir(root, d))
        except OSError:
            continue
        for name in names:
            if name.endswith(".preset") and name not in chosen:
                chosen[name] = f"{d}/{name}"
    texts = []
    for fname in sorted(chosen):
        try:
            texts.append(confined.read_text(root, chosen[fname], limit=confined.SMALL * 16))
        except OSError:
            continue
    return parse_rules(texts)

