"""Which machine to talk to: its name, its init's host PID and cgroup, as the host sees them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nsdash.errors import MachineNotFound
from nsdash.machines import state as machine_state
from nsdash.system.paths import machine_dir


@dataclass(frozen=True)
class Target:
    """A running machine, seen from the host."""

    name: str
    leader: int  # host PID of the machine's init (PID 1 inside)
    cgroup: str | None = None  # the machine's cgroup (its cgroup namespace root), if recorded
    proc: Path = Path("/proc")

    @property
    def root(self) -> Path:
        """The machine's root directory through its init's /proc entry (follows pivot_root)."""
        return self.proc / str(self.leader) / "root"

    def alive(self) -> bool:
        return (self.proc / str(self.leader)).exists()


def resolve(name: str) -> Target:
    """The running machine called NAME (from nsdash's state directory), or MachineNotFound."""
    directory = machine_dir(name)
    state = machine_state.read_state(directory)
    if state is None or not machine_state.supervisor_alive(directory):
        raise MachineNotFound(f"no running machine called '{name}'",
                              "see 'nsdash list' for the running machines")
    if not state.leader:
        raise MachineNotFound(f"machine '{name}' has no running init right now (it is {state.state})",
                              "wait until it has booted, then retry")
    target = Target(name, state.leader, state.cgroup or None)
    if not target.alive():
        raise MachineNotFound(f"machine '{name}' is not running (its init {state.leader} is gone)",
                              "see 'nsdash list'")
    return target
