"""A machine's entry in nsdash's state directory.

    <state_root>/machines/NAME/
        lock         held (flock LOCK_EX) by the supervisor for its whole life
        state.json   MachineState, replaced atomically
        control      the supervisor's control socket (0600, root only)
        console.log  the console log (and console.log.1)

The supervisor's lock, not its recorded PID, tells whether it is alive: a PID
can be reused after a crash or a host reboot (/run is on disk here), a lock
dies with its holder.
"""

from __future__ import annotations

import errno
import fcntl
import posix

from nsdash.system import bareos, jsontext
from nsdash.system.frozen import Frozen
from nsdash.system.paths import machine_dir, machine_path, state_path, state_root

TYPE_CHECKING = False  # mypy reads this as True; typing stays off the path of the foreground spawn, which writes state too
if TYPE_CHECKING:
    from pathlib import Path  # the directories come from system/paths, which makes them
    from typing import Any, Literal, TypeAlias

    # A machine's phase as its supervisor reports it in state.json (machinectl's State column).
    Phase: TypeAlias = Literal["starting", "running", "degraded", "stopping", "rebooting"]

UP_STATES: tuple[Phase, ...] = ("running", "degraded")  # the guest is up: READY=1 said, or an init that never says it runs
STATE_FILE = "state.json"
LOCK_FILE = "lock"
CONTROL = "control"
CONSOLE_LOG = "console.log"
STATE_MODE = 0o600


class MachineState(Frozen):
    """What state.json holds (a Frozen, not a dataclass: every foreground spawn writes one,
    and dataclasses would pull inspect and ast onto that path)."""

    name: str
    root: str
    leader: int | None
    cgroup: str
    supervisor: int
    started: str  # ISO-8601 UTC: when the supervisor started the first boot
    since: str  # ISO-8601 UTC: when the current boot started
    boot: int = 1
    state: Phase = "running"
    class_: str = "container"
    service: str = "nsdash"
    uuid: str | None = None
    netif: tuple[str, ...] = ()
    boot_mode: bool = False  # -b: the tree's own init
    command: tuple[str, ...] = ()
    ephemeral: bool = False
    registered: bool = False  # with systemd-machined
    network: str | None = None  # which path -n took (the launcher's Container.network_mode)
    status_text: str | None = None  # the guest's last sd_notify STATUS= line (guest text: escape it)
    foreground: bool = False  # run in a terminal by `nsdash spawn` (its console is that terminal)

    if not TYPE_CHECKING:  # mypy checks calls against the fields (dataclass_transform), not *args
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            for name in ("netif", "command"):  # lists from callers and from JSON: one form
                object.__setattr__(self, name, tuple(getattr(self, name)))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {f: getattr(self, f) for f in self._fields}
        data["netif"], data["command"] = list(self.netif), list(self.command)
        data["class"] = data.pop("class_")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MachineState:
        data = dict(data)
        data["class_"] = data.pop("class", "container")
        return cls(**{k: v for k, v in data.items() if k in cls._fields})


def machines_root() -> Path:
    return state_root() / "machines"


def write_state(directory: Path, state: MachineState) -> None:
    """Write state.json atomically: readers see the old or the new file, never half.

    Root only (0600): it names the machine's tree, its leader and its supervisor."""
    tmp = directory / f".{STATE_FILE}.{posix.getpid()}"
    fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC | posix.O_CLOEXEC | posix.O_NOFOLLOW, STATE_MODE)
    posix.fchmod(fd, STATE_MODE)  # a leftover temporary file keeps its old mode otherwise
    with open(fd, "w") as f:
        f.write(jsontext.encode(state.to_json(), indent=1) + "\n")  # json.dump's text, not its import
    posix.replace(tmp, directory / STATE_FILE)


def read_state(directory: Path | str) -> MachineState | None:
    try:
        with open(bareos.join(directory, STATE_FILE)) as f:
            data = jsontext.decode(f.read())  # json.load's result; json's import is a tenth of `list`
        if not isinstance(data, dict):
            return None
        return MachineState.from_json(data)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (ValueError, TypeError, RecursionError):
        return None  # a torn or foreign file (nested past the scanner's depth too): no state


def orphaned(name: str) -> bool:
    """True if NAME has an entry whose supervisor died (nobody holds its lock)."""
    directory = machine_path(name)
    return bareos.exists(directory) and not supervisor_alive(directory)


def supervisor_alive(directory: Path | str) -> bool:
    """True while some process holds the entry's lock (the supervisor)."""
    try:
        fd = posix.open(bareos.join(directory, LOCK_FILE), posix.O_RDONLY | posix.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        posix.close(fd)
    return False


def entry_names() -> list[str]:
    root = bareos.join(state_path(), "machines")  # machines_root(), without pathlib
    try:
        return sorted(n for n in posix.listdir(root) if not n.startswith("."))
    except FileNotFoundError:
        return []


__all__ = ["MachineState", "UP_STATES", "machine_dir", "machine_path", "machines_root", "write_state", "read_state",
           "supervisor_alive", "entry_names", "STATE_FILE", "LOCK_FILE", "CONTROL", "CONSOLE_LOG"]
