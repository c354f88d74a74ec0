"""Journal export format, and real journal files made from it by systemd-journal-remote.

Used by the tests and the benchmark to make journals with exactly the entries
they need (boots, units, priorities, multi-line and binary messages), written
by systemd's own code rather than imitated.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

JOURNAL_REMOTE_PATHS = ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote")


def journal_remote() -> str | None:
    """The systemd-journal-remote binary (package systemd-journal-remote), or None."""
    for path in JOURNAL_REMOTE_PATHS:
        if Path(path).is_file():
            return path
    return shutil.which("systemd-journal-remote")


def export_entry(fields: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]], realtime: int,
                 monotonic: int, boot_id: str) -> bytes:
    """One entry in the export format (systemd's JOURNAL_EXPORT_FORMATS documentation).

    FIELDS may be a list of pairs, to repeat a field within one entry."""
    out = [f"__REALTIME_TIMESTAMP={realtime}\n__MONOTONIC_TIMESTAMP={monotonic}\n_BOOT_ID={boot_id}\n".encode()]
    pairs = fields.items() if isinstance(fields, Mapping) else fields
    for name, value in pairs:
        raw = value.encode() if isinstance(value, str) else value
        if b"\n" in raw or any(c < 32 and c != 9 for c in raw):
            out.append(name.encode() + b"\n" + len(raw).to_bytes(8, "little") + raw + b"\n")
        else:
            out.append(name.encode() + b"=" + raw + b"\n")
    out.append(b"\n")
    return b"".join(out)


def write_journal(path: Path, entries: Iterable[bytes]) -> None:
    """Write export-format ENTRIES into the journal file PATH (appending if it exists)."""
    binary = journal_remote()
    if binary is None:
        raise FileNotFoundError("systemd-journal-remote is not installed (apt-get install systemd-journal-remote)")
    proc = subprocess.Popen([binary, "--split-mode=none", "-o", str(path), "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    for chunk in entries:
        proc.stdin.write(chunk)
    proc.stdin.close()
    err = proc.stderr.read() if proc.stderr else b""
    if proc.wait() != 0:
        raise RuntimeError(f"systemd-journal-remote failed: {err.decode(errors='replace').strip()}")
