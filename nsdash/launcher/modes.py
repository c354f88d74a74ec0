"""The closed sets of nspawn's mode options, as Literal types mypy checks.

Types only: the spawn path imports this module under TYPE_CHECKING (typing
costs it ~3 ms), so the run-time lists of accepted values stay the tuples in
nsdash.launcher.optable, which parse and --help read.  A unit test
(tests/unit/test_modes.py) holds each Literal equal to its tuple, so the two
cannot drift.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

ConsoleMode: TypeAlias = Literal["interactive", "read-only", "passive", "pipe", "autopipe"]
Register: TypeAlias = Literal["yes", "no", "auto"]
LinkJournal: TypeAlias = Literal["no", "host", "try-host", "guest", "try-guest", "auto"]
ResolvConf: TypeAlias = Literal[
    "off", "copy-host", "copy-static", "copy-uplink", "copy-stub",
    "replace-host", "replace-static", "replace-uplink", "replace-stub",
    "bind-host", "bind-static", "bind-uplink", "bind-stub", "delete", "auto"]
Timezone: TypeAlias = Literal["off", "copy", "bind", "symlink", "delete", "auto"]
Ownership: TypeAlias = Literal["off", "chown", "map", "auto"]
Volatile: TypeAlias = Literal["no", "yes", "state", "overlay"]
# How one run of a container ended (launcher.container.Outcome.kind).
OutcomeKind: TypeAlias = Literal["exited", "poweroff", "reboot", "killed"]
