"""Which machine to talk to: its name, its init's host PID and its root as the host sees it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from nsdash.errors import MachineNotFound
from nsdash.system.paths import machine_dir, state_root


@dataclass(frozen=True)
class Target:
    """A running machine, seen from the host."""

    name: str
    leader: int  # host PID of the machine's init (PID 1 inside)
    proc: Path = Path("/proc")

    @property
    def root(self) -> Path:
        """The machine's root directory through its init's /proc entry (follows pivot_root)."""
        return self.proc / str(self.leader) / "root"

    def alive(self) -> bool:
        return (self.proc / str(self.leader)).exists()


def _leader_from_state(data: dict) -> int | None:
    for key in ("leader", "leader_pid", "pid"):
        value = data.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _from_registry(name: str) -> int | None:
    """Ask the machines registry, when it offers a lookup; None when it does not know NAME."""
    try:
        from nsdash.machines import registry  # type: ignore[attr-defined]
    except ImportError:
        return None
    find = getattr(registry, "find", None) or getattr(registry, "get", None)
    if find is None:
        return None
    try:
        machine = find(name)
    except MachineNotFound:
        return None
    leader = getattr(machine, "leader", None) if machine is not None else None
    return leader if isinstance(leader, int) and leader > 0 else None


def resolve(name: str) -> Target:
    """The running machine called NAME, or MachineNotFound with a hint."""
    leader = _from_registry(name)
    if leader is None:
        state = machine_dir(name) / "state.json"
        try:
            leader = _leader_from_state(json.loads(state.read_text()))
        except (OSError, ValueError):
            leader = None
    if leader is None or not os.path.exists(f"/proc/{leader}"):
        raise MachineNotFound(f"no running machine called '{name}'",
                              "see 'nsdash list' for the running machines")
    return Target(name, leader)


def known_names() -> list[str]:
    """Names with a state entry, for error hints and completion."""
    base = state_root() / "machines"
    return sorted(p.name for p in base.iterdir()) if base.is_dir() else []
