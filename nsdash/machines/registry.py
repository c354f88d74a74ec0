"""Which machines exist: nsdash's state entries checked against reality, plus machined's.

A reader: it never changes anything.  An entry whose supervisor holds its lock
is a live machine; an entry nobody holds is an ORPHAN, reported as such (the
launcher's orphans module cleans it when a command touches the name).
"""

from __future__ import annotations

import posix

from nsdash.errors import MachineNotFound
from nsdash.launcher import names
from nsdash.machines import identity
from nsdash.machines import state as st
from nsdash.system import bareos
from nsdash.system.frozen import Frozen

# systemd-machined keeps a file per registered machine there ("unit:*" links map units to them), and
# libsystemd's sd_get_machine_names() lists them from there.
MACHINED_STATE = "/run/systemd/machines"

TYPE_CHECKING = False  # mypy reads this as True: collections stays off every verb's imports
if TYPE_CHECKING:
    from collections.abc import Callable

    OsReleaseOf = Callable[[str], dict[str, str]]  # a machine's root -> its os-release (identity.os_release)
    EntryOf = Callable[[str], tuple[st.MachineState | None, bool] | None]  # a name -> its entry (read_entry)


def parse_machined_record(text: str) -> dict[str, str]:
    """One of machined's state files: KEY=VALUE lines (NAME, CLASS, SERVICE, LEADER, ...)."""
    record: dict[str, str] = {}
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq and not key.startswith("#"):
            record[key.strip()] = value.strip()
    return record


def machined_machines(directory: str | None = None) -> list[Machine]:
    """The machines machined holds, from its state files, as libsystemd's sd_get_machine_names()
    and sd_machine_get_class() read them: the answer is on disk, so no D-Bus round trip (and no
    D-Bus client to import).  Its .host entry has no file; a file being written (.#NAME) is
    skipped, and one that vanishes while read is a machine that just went away."""
    directory = MACHINED_STATE if directory is None else directory
    try:
        entries = sorted(posix.listdir(directory))
    except OSError:
        return []
    found: list[Machine] = []
    for entry in entries:
        if entry.startswith((".", "unit:")):
            continue
        try:
            with open(bareos.join(directory, entry), encoding="utf-8", errors="replace") as f:
                record = parse_machined_record(f.read(65536))  # machined's own few lines
        except OSError:
            continue
        found.append(Machine(name=record.get("NAME") or entry, class_=record.get("CLASS", "container"),
                             service=record.get("SERVICE") or "-", source="machined"))
    return found


class Machine(Frozen):
    """One machine as `list` and `status` show it (Frozen: the empty defaults are shared, never changed)."""

    name: str
    class_: str = "container"
    service: str = "nsdash"
    source: str = "nsdash"  # nsdash | machined
    orphan: bool = False
    state: st.MachineState | None = None
    leader: int | None = None
    root: str | None = None
    os_release: dict[str, str] = {}
    addresses: list[str] = []
    os_release_error: str | None = None  # why the machine's os-release was refused (its own problem)

    @property
    def os(self) -> str:
        return self.os_release.get("ID", "-") or "-"

    @property
    def version(self) -> str:
        return self.os_release.get("VERSION_ID", "-") or "-"


def validate_name(name: str) -> str:
    """The one machine-name rule (nsdash.launcher.names: a hostname, as machinectl's)."""
    return names.check_machine_name(name)


def parse_fib_trie(text: str) -> list[str]:
    """Local IPv4 addresses from /proc/PID/net/fib_trie, loopback excluded."""
    found: list[str] = []
    last = None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|--"):
            last = s[3:].strip()
        elif s.startswith("/32 host LOCAL") and last and not last.startswith("127.") and last not in found:
            found.append(last)
    return found


def addresses(pid: int) -> list[str]:
    """The machine's own addresses: only when it has a network namespace of its own."""
    if identity.shares_host_namespace(pid, "net") is not False:
        return []
    out: list[str] = []
    try:
        with open(f"/proc/{pid}/net/fib_trie") as f:
            out += parse_fib_trie(f.read())
        with open(f"/proc/{pid}/net/if_inet6", errors="surrogateescape") as f:  # (its links' names: any bytes)
            for line in f:
                parts = line.split()
                raw, scope = parts[0], parts[3]
                if scope == "00":  # global scope only; written as `ip` and machinectl do (RFC 5952)
                    import ipaddress  # only for a machine with IPv6 addresses: `list` stays light
                    out.append(str(ipaddress.IPv6Address(bytes.fromhex(raw))))
    except (OSError, ValueError):
        pass
    return out


def read_entry(name: str) -> tuple[st.MachineState | None, bool] | None:
    """NAME's entry: its state and whether a supervisor holds it; None: there is none."""
    directory = st.machine_path(name)
    state = st.read_state(directory)
    alive = st.supervisor_alive(directory)
    if not alive and not bareos.exists(directory):
        return None
    return state, alive


def _from_entry(name: str, details: bool = True, os_release_of: OsReleaseOf = identity.os_release,
                entry_of: EntryOf = read_entry) -> Machine | None:
    """Machine NAME from nsdash's state; without DETAILS its os-release and addresses are left
    empty (read only for what shows them: list, status)."""
    entry = entry_of(name)
    if entry is None:
        return None
    state, alive = entry
    leader = state.leader if state else None
    addrs: list[str] = []
    # Its own view while it runs (an ephemeral overlay, binds); its tree when stopped.
    # Either way confined: the tree's path on the host is as much the guest's as its root.
    root = f"/proc/{leader}/root" if alive and leader else (state.root if state else None)
    if root and not alive and not bareos.isdir(root):
        root = None  # an --image machine's root is its disk image: nothing to read without mounting it
    os_release, error = _os_release(root, os_release_of) if details else ({}, None)
    if alive and leader and details:
        addrs = addresses(leader)
    return Machine(name=name, orphan=not alive, state=state, leader=leader if alive else None,
                   root=state.root if state else None, os_release=os_release, addresses=addrs,
                   os_release_error=error)


def _os_release(root: str | None, os_release_of: OsReleaseOf) -> tuple[dict[str, str], str | None]:
    """The machine's os-release, or {} and why it was refused (a FIFO, a device, too big...)."""
    if not root:
        return {}, None
    try:
        return os_release_of(root), None
    except OSError as e:
        return {}, f"os-release refused: {e.strerror or e}"


def nsdash_machines(os_release_of: OsReleaseOf = identity.os_release, entry_of: EntryOf = read_entry) -> list[Machine]:
    return [m for m in (_from_entry(n, os_release_of=os_release_of, entry_of=entry_of) for n in st.entry_names())
            if m is not None]


def list_machines(with_machined: bool = True, os_release_of: OsReleaseOf = identity.os_release,
                  entry_of: EntryOf = read_entry) -> list[Machine]:
    """nsdash's machines, then those other managers registered with machined; OS_RELEASE_OF
    and ENTRY_OF read an nsdash machine's os-release and entry (the dashboard's keep what
    they read while it cannot have changed: OsReleaseCache, nsdash.monitor.host)."""
    ours = nsdash_machines(os_release_of, entry_of)
    if not with_machined:
        return ours
    names = {m.name for m in ours}
    others = [m for m in machined_machines() if m.name not in names and m.class_ != "host"]
    return sorted(ours + others, key=lambda m: m.name)


def lookup(name: str, with_machined: bool = True, details: bool = True) -> Machine:
    """The machine called NAME (orphans included), or MachineNotFound naming the choices.
    DETAILS false: an nsdash machine's os-release and addresses are not read (a verb that
    only needs its leader and cgroup: `systemctl -M`, `-M` of the readers)."""
    validate_name(name)
    m = _from_entry(name, details)
    if m is not None:
        return m
    if with_machined:
        for other in machined_machines():
            if other.name == name:
                return other
    known = [m.name for m in nsdash_machines()]
    close = [k for k in known if k.startswith(name) or name in k]
    hint = (f"did you mean {', '.join(close[:3])}?" if close
            else "see 'nsdash list' for running machines, or 'nsdash list-images' for images")
    raise MachineNotFound(f"no machine named '{name}'", hint)
