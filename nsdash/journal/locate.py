"""Find a machine's logs the way systemd does.

A machine's journal lives in a directory named after its machine ID: the
tree's /etc/machine-id, or the UUID the launcher passed with --uuid.  Where:

- TREE/var/log/journal/ID        persistent journal in the tree
- /proc/LEADER/root/run/log/journal/ID and .../var/log/journal/ID
                                  while it runs (volatile journal; ephemeral trees)
- HOST/var/log/journal/ID         with --link-journal=host|guest (a bind or a symlink)

The same directory reached by two of those paths is listed once.  Machines
whose init keeps no journal have the supervisor's console log instead.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from nsdash.errors import MachineNotFound, NsdashError
from nsdash.system.paths import IMAGE_DIRS, machine_dir

HOST_JOURNAL = Path("/var/log/journal")
_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class MachineLogs:
    """Where one machine's logs are.  journal_dirs may be empty; console_log may be None."""

    name: str
    machine_id: str | None
    journal_dirs: tuple[Path, ...]
    console_log: Path | None
    running: bool

    @property
    def has_logs(self) -> bool:
        return bool(self.journal_dirs) or self.console_log is not None


def normalise_id(text: str | None) -> str | None:
    """A machine ID or UUID in any of its spellings -> 32 lower-case hex digits, or None."""
    if not text:
        return None
    t = text.strip().lower().replace("-", "")
    return t if _ID.fullmatch(t) and t != "0" * 32 else None


def machine_id_of(tree: Path | None, uuid: str | None = None) -> str | None:
    """The tree's /etc/machine-id, else the UUID the launcher passed (as systemd does)."""
    if tree is not None:
        try:
            found = normalise_id((tree / "etc/machine-id").read_text()[:64])
        except (OSError, UnicodeDecodeError):
            found = None
        if found:
            return found
    return normalise_id(uuid)


def _leader_alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _supervised(mdir: Path) -> bool:
    """The supervisor's lock, not the recorded PID, says a machine runs (PIDs get reused)."""
    if not (mdir / "lock").exists():
        return True  # a state entry from elsewhere (or older): trust the PID check
    from nsdash.machines.state import supervisor_alive

    try:
        return supervisor_alive(mdir)
    except OSError:
        return False


def _first(state: dict, *keys: str):
    for key in keys:
        if state.get(key) not in (None, ""):
            return state[key]
    return None


def read_state(name: str) -> dict | None:
    """The supervisor's state.json for NAME, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads((machine_dir(name) / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def journal_dirs(machine_id: str, tree: Path | None, leader: int | None,
                 host_journal: Path = HOST_JOURNAL) -> tuple[Path, ...]:
    """Every existing journal directory of the machine, each directory once."""
    candidates: list[Path] = []
    if leader:
        # While it runs, its own view is the truth: the tree's directory may be a bare
        # mount point under --link-journal=host, or hidden by an ephemeral overlay.
        root = Path(f"/proc/{leader}/root")
        candidates += [root / "var/log/journal" / machine_id, root / "run/log/journal" / machine_id]
    elif tree is not None:
        candidates.append(tree / "var/log/journal" / machine_id)
    candidates.append(host_journal / machine_id)
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for path in candidates:
        try:
            st = path.stat()  # follows --link-journal=guest's symlink on the host
        except OSError:
            continue
        if not path.is_dir() or (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        found.append(path)
    return tuple(found)


def locate(name: str, host_journal: Path = HOST_JOURNAL) -> MachineLogs:
    """Where machine NAME's logs are: a running (or stopped) nsdash machine, else an image."""
    state = read_state(name)
    mdir = machine_dir(name)
    tree: Path | None = None
    leader: int | None = None
    uuid = None
    if state is not None:
        directory = _first(state, "directory", "root_directory", "root", "tree")
        tree = Path(directory) if directory else None
        pid = _first(state, "leader", "leader_pid", "pid")
        leader = int(pid) if isinstance(pid, int | str) and str(pid).isdigit() else None
        uuid = _first(state, "machine_id", "uuid", "id")
    elif not mdir.is_dir():
        tree = next((d / name for d in IMAGE_DIRS if (d / name).is_dir()), None)
        if tree is None:
            raise MachineNotFound(f"no machine named '{name}'",
                                  "see 'nsdash list' for machines, or read a journal directory with -D DIR")
    running = _leader_alive(leader) and _supervised(mdir)
    if not running:
        leader = None
    machine_id = machine_id_of(Path(f"/proc/{leader}/root") if leader else tree, uuid)
    if machine_id is None and leader:
        machine_id = machine_id_of(tree, uuid)
    dirs = journal_dirs(machine_id, tree, leader, host_journal) if machine_id else ()
    console = mdir / "console.log"
    return MachineLogs(name, machine_id, dirs, console if console.is_file() else None, running)


def require_logs(logs: MachineLogs) -> MachineLogs:
    if not logs.has_logs:
        raise NsdashError(f"machine '{logs.name}' has no journal and no console log",
                          "boot it with -j (--link-journal) or a tree whose init runs journald")
    return logs


# ---------------------------------------------------------------- file checks

_HEADER = struct.Struct("<8sII B7x 16s16s16s16s QQ")
SIGNATURE = b"LPKSHHRH"


def check_journal_file(path: Path) -> str | None:
    """Why libsystemd would refuse PATH (None if it looks whole).

    The same header test sd-journal makes before mapping a file: signature, and
    header + arena no larger than the file.  Checking first lets us say which
    files were skipped rather than letting the library drop them silently.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER.size)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if len(head) < _HEADER.size:
        return "truncated (no complete header)"
    sig, _compat, _incompat, _state, _fid, _mid, _boot, _seq, header_size, arena_size = _HEADER.unpack(head)
    if sig != SIGNATURE:
        return "not a journal file (bad signature)"
    if header_size + arena_size > size:
        return f"truncated ({size} of {header_size + arena_size} bytes)"
    return None


def journal_files(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.name.endswith((".journal", ".journal~")))
    except OSError:
        return []
