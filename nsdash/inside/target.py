"""Which machine to talk to: its name, its init's host PID and cgroup, as the host sees them."""

from __future__ import annotations

import posix
import time

from nsdash.errors import MachineNotFound
from nsdash.machines import registry
from nsdash.system.frozen import Frozen

TYPE_CHECKING = False  # pathlib costs `systemctl list-units` 3 ms: the hot paths use strings
if TYPE_CHECKING:
    from pathlib import Path


class Target(Frozen):
    """A running machine, seen from the host."""

    name: str
    leader: int  # host PID of the machine's init (PID 1 inside)
    cgroup: str | None = None  # the machine's cgroup (its cgroup namespace root), if recorded
    proc: str = "/proc"

    @property
    def root_dir(self) -> str:
        """The machine's root directory through its init's /proc entry (follows pivot_root)."""
        return f"{self.proc}/{self.leader}/root"

    @property
    def root(self) -> Path:
        """root_dir as a Path."""
        from pathlib import Path

        return Path(self.root_dir)

    def _stat(self) -> str:
        with open(f"{self.proc}/{self.leader}/stat", errors="surrogateescape") as f:  # (comm): the guest's bytes
            return f.read()

    def started_us(self) -> int | None:
        """When the machine's init started (realtime µs, to a clock tick): where its current boot begins.

        /proc/PID/stat counts from boot in CLOCK_BOOTTIME ticks; mapping through both clocks read
        now avoids /proc/stat's btime, which is rounded to the second.
        """
        try:
            stat = self._stat()
        except OSError:
            return None
        ticks = int(stat[stat.rfind(")") + 2 :].split()[19])  # field 22, starttime
        now_real, now_boot = time.time(), time.clock_gettime(time.CLOCK_BOOTTIME)
        return int((now_real - (now_boot - ticks / posix.sysconf("SC_CLK_TCK"))) * 1_000_000)

    def alive(self) -> bool:
        """The init still runs (a zombie waiting for its supervisor to reap it does not count)."""
        try:
            stat = self._stat()
        except OSError:
            return False
        return stat[stat.rfind(")") + 2 :][:1] not in ("Z", "X", "")


def resolve(name: str) -> Target:
    """The running machine called NAME (nsdash's own, or one registered with machined)."""
    machine = registry.lookup(name, details=False)  # its leader and cgroup: no os-release, no addresses
    if machine.orphan:
        raise MachineNotFound(f"machine '{name}' is not running (its supervisor is gone)",
                              f"start it again, or clean up with 'nsdash terminate {name}'")
    if not machine.leader:
        state = machine.state.state if machine.state else "starting"
        raise MachineNotFound(f"machine '{name}' has no running init right now (it is {state})",
                              "wait until it has booted, then retry")
    cgroup = machine.state.cgroup if machine.state and machine.state.cgroup else None
    target = Target(name, machine.leader, cgroup)
    if not target.alive():
        raise MachineNotFound(f"machine '{name}' is not running (its init {machine.leader} is gone)",
                              "see 'nsdash list'")
    return target
