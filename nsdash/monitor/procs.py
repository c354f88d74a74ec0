"""Processes of a cgroup, with their command lines, as systemd-cgls shows them."""

from __future__ import annotations

import errno
import posix

from nsdash.system import bareos
from nsdash.system.frozen import Frozen
from nsdash.system.text import escape

TYPE_CHECKING = False  # mypy reads this as True; cgls imports no machine state
if TYPE_CHECKING:
    from nsdash.monitor.machines import MachineMap

_PF_KTHREAD = 0x00200000


class ProcessInfo(Frozen):  # not a dataclass: cgls imports no dataclasses
    pid: int
    cmdline: str  # '[comm]' for kernel threads and processes without a command line
    kernel_thread: bool
    machine: str | None = None


def _read(path: str, limit: int | None = None) -> bytes:
    """A small /proc file whole (at most LIMIT bytes of it): os.open/os.read, a third of
    open()'s cost, paid per process.

    procfs hands over what fits in one read (stat is made whole, cmdline copied until
    the buffer or the arguments end), so a short read is the end: no second read
    to see EOF, on every process cgls shows."""
    size = 65536 if limit is None else min(65536, limit)
    fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        data = posix.read(fd, size)
        if len(data) < size or limit == size:
            return data
        chunks = [data]
        got = len(data)
        while (limit is None or got < limit) and (chunk := posix.read(fd, 65536 if limit is None
                                                                   else min(65536, limit - got))):
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)
    finally:
        posix.close(fd)


def is_kernel_thread(pid: int, proc: str = "/proc") -> bool:
    """By the PF_KTHREAD flag in /proc/PID/stat (as systemd does); a vanished process is not one."""
    try:
        stat = _read(f"{proc}/{pid}/stat")
        return bool(int(stat[stat.rindex(b")") + 2:].split()[6]) & _PF_KTHREAD)
    except (OSError, ValueError, IndexError):
        return False


def cmdline(pid: int, max_columns: int | None = None, proc: str = "/proc", max_bytes: int | None = None) -> str | None:
    """The command line as one string ('[comm]' when empty), cut to MAX_COLUMNS with '…';
    only its first MAX_BYTES bytes read when given (a process's arguments may be megabytes).

    None when the process is gone.
    """
    try:
        raw = _read(f"{proc}/{pid}/cmdline", max_bytes)
        # The process's own text: shown through the one sanitiser, as everything a guest wrote is.
        written = raw.replace(b"\0", b" ").rstrip(b" ").decode("utf-8", "surrogateescape")
        if not written:
            written = "[" + _read(f"{proc}/{pid}/comm").rstrip(b"\n").decode("utf-8", "surrogateescape") + "]"
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ESRCH):
            return None
        return None
    text = escape(written)
    if max_columns is not None and len(text) > max_columns:
        text = _cut(written, text, max(max_columns - 1, 0)) + "…"
    return text


def _cut(written: str, shown: str, room: int) -> str:
    """The first ROOM columns of SHOWN (WRITTEN escaped), never ending inside an escape: a cut
    `\\x1` would read as another character than the one the process wrote."""
    if written is shown or written.isprintable():
        return shown[:room]
    out: list[str] = []
    used = 0
    for c in written:
        spelled = escape(c)
        used += len(spelled)
        if used > room:
            break
        out.append(spelled)
    return "".join(out)


def processes(directory: str, kernel_threads: bool = False, proc: str = "/proc") -> list[ProcessInfo]:
    """The processes listed in DIRECTORY/cgroup.procs, sorted by PID; gone ones skipped."""
    with open(bareos.join(directory, "cgroup.procs"), "rb") as f:
        pids = sorted({int(x) for x in f.read().split()})
    out = []
    for pid in pids:
        kt = is_kernel_thread(pid, proc)
        if kt and not kernel_threads:
            continue
        text = cmdline(pid, None, proc)
        if text is not None:
            out.append(ProcessInfo(pid, text, kt))
    return out


def processes_with_machines(directory: str, cgroup: str, kernel_threads: bool = False,
                            mapping: MachineMap | None = None, proc: str = "/proc") -> list[ProcessInfo]:
    """processes() with the MACHINE column filled from the cgroup they live in."""
    if mapping is None:
        from nsdash.monitor.machines import MachineMap

        mapping = MachineMap()
    machine = mapping.machine_of(cgroup)
    return [ProcessInfo(p.pid, p.cmdline, p.kernel_thread, machine)
            for p in processes(directory, kernel_threads, proc)]
