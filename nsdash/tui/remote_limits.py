"""A far machine's limits in the machine view over -H: read with `status -o json`, set with `set-property`.

The same verbs the command line runs there (`nsdash -H HOST status -o json
M`, `nsdash -H HOST set-property M CPUQuota=50%`), so the far host applies
its own rule (systemd's scope, or the cgroup files nsdash made).  The values
are the far host's text: only the four known limits are taken, short, and
escaped for the screen.
"""

from __future__ import annotations

import json

from nsdash.errors import NsdashError
from nsdash.remote.session import Session
from nsdash.remote.target import Target
from nsdash.system.text import escape

LIMITS = ("CPUQuota", "MemoryMax", "MemoryHigh", "TasksMax")  # as machines/units.py names them
VALUE_WIDTH = 32  # characters of a far value kept (a number, a percentage, "infinity")
TIMEOUT = 20.0


def limits_of(stdout: bytes) -> dict[str, str]:
    """The limits in a far `status -o json MACHINE` answer ({} when it names none or is not one)."""
    try:
        status = json.loads(stdout)
    except ValueError:
        return {}
    found = status.get("limits") if isinstance(status, dict) else None
    if not isinstance(found, dict):
        return {}
    return {key: escape(value)[:VALUE_WIDTH] for key, value in found.items()
            if key in LIMITS and isinstance(value, str) and value}


def far_limits(target: Target, machine: str) -> dict[str, str]:
    """MACHINE's limits in force on TARGET."""
    with Session(target, TIMEOUT) as session:
        (result,) = session.run(["status", "-o", "json", "-n", "1", machine])
    if result.code != 0:
        lines = [line.strip() for line in result.stderr.decode(errors="replace").splitlines() if line.strip()]
        raise NsdashError(f"{target}: {escape(lines[-1]) if lines else f'status exited {result.code}'}")
    return limits_of(result.stdout)
