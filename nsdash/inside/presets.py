"""Unit file presets (systemd.preset(5)) read from the machine's own tree, for list-unit-files' PRESET column.

There is no bulk D-Bus call for presets, so like systemctl we evaluate the
preset files ourselves: files by name across the directories (an earlier
directory overrides a same-named file), the first matching line decides, and
a unit nothing matches is "enabled".
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from pathlib import Path

PRESET_DIRS = ("etc/systemd/system-preset", "run/systemd/system-preset", "usr/local/lib/systemd/system-preset",
               "usr/lib/systemd/system-preset", "lib/systemd/system-preset")

# States for which systemctl prints "-" instead of a preset.
NO_PRESET_STATES = frozenset({"alias", "static", "generated", "transient"})


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
        if fnmatch.fnmatchcase(name, pattern):
            return "enabled" if action == "enable" else "disabled"
    return "enabled"


def read_rules(root: Path) -> list[tuple[str, str]]:
    chosen: dict[str, Path] = {}
    for d in PRESET_DIRS:
        try:
            entries = sorted((root / d).iterdir())
        except OSError:
            continue
        for p in entries:
            if p.name.endswith(".preset") and p.name not in chosen:
                chosen[p.name] = p
    texts = []
    for fname in sorted(chosen):
        try:
            texts.append(chosen[fname].read_text(errors="replace"))
        except OSError:
            continue
    return parse_rules(texts)
