#!/usr/bin/env python3
"""Entries per second: `nsdash journal -o FORMAT -D DIR` against `journalctl -o FORMAT --directory=DIR`.

Writes a real journal of N entries (default 100,000) with systemd's own
systemd-journal-remote from export-format entries shaped like journald's
(about twenty fields each: the trusted _PID/_UID/_COMM/_EXE/_SYSTEMD_* fields,
SYSLOG_IDENTIFIER, PRIORITY, a message of varying length, three boots).
Each tool reads and renders the whole journal to /dev/null; wall time is
the best of R runs (start-up included: that is what a user waits for).
Both outputs are checked to be identical first, so the race is fair.

    .venv/bin/python bench/bench_journal.py                 # 100,000 entries, -o short
    .venv/bin/python bench/bench_journal.py --entries 200000 --formats short cat json
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from report import Report, wants_json  # noqa: E402

from nsdash.journal.export import export_entry, journal_remote, write_journal  # noqa: E402

PY = str(REPO / ".venv/bin/python")
UNITS = ["cron.service", "sshd.service", "nginx.service", "systemd-journald.service", "dbus.service",
         "postgresql@15-main.service", "user@1000.service", "init.scope"]
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "connection", "accepted", "from", "port", "user", "session", "opened", "closed"]


def entries(n: int):
    t0 = 1_795_000_000_000_000
    boots = [hashlib.md5(str(b).encode()).hexdigest() for b in range(3)]
    for i in range(n):
        unit = UNITS[i % len(UNITS)]
        ident = unit.split(".")[0].split("@")[0]
        words = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(3 + i % 17))
        fields = {
            "_TRANSPORT": "stdout" if i % 3 else "syslog", "PRIORITY": str((i * 5) % 8), "SYSLOG_FACILITY": "3",
            "SYSLOG_IDENTIFIER": ident, "_PID": str(100 + i % 900), "_UID": "0", "_GID": "0",
            "_COMM": ident[:15], "_EXE": f"/usr/sbin/{ident}", "_CMDLINE": f"/usr/sbin/{ident} --flag {i % 5}",
            "_CAP_EFFECTIVE": "1ffffffffff", "_SELINUX_CONTEXT": "unconfined\n" if i % 50 == 0 else "unconfined",
            "_SYSTEMD_CGROUP": f"/system.slice/{unit}", "_SYSTEMD_UNIT": unit, "_SYSTEMD_SLICE": "system.slice",
            "_SYSTEMD_INVOCATION_ID": hashlib.md5(unit.encode()).hexdigest(), "_STREAM_ID": "%032x" % (i % 64),
            "_MACHINE_ID": "08c30baea87644339ade293f4e706ff1", "_HOSTNAME": "bench-host",
            "_RUNTIME_SCOPE": "system", "MESSAGE": f"{ident}[{i}]: {words}",
        }
        boot = boots[min(2, i * 3 // n)]
        yield export_entry(fields, t0 + i * 1_000, 1_000_000 + i * 1_000, boot)


def timed(argv: list[str], runs: int) -> float:
    return min(timings(argv, runs))


def timings(argv: list[str], runs: int) -> list[float]:
    found = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
        found.append(time.perf_counter() - start)
    return found


def main() -> int:
    report = Report("journal", wants_json())
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--formats", nargs="+", default=["short"], choices=["short", "short-precise", "cat", "json"])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if journal_remote() is None or shutil.which("journalctl") is None:
        print("needs systemd-journal-remote and journalctl (make apt)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="nsdash-bench-journal-") as tmp, report.capture():
        d = Path(tmp) / "08c30baea87644339ade293f4e706ff1"
        d.mkdir()
        start = time.perf_counter()
        write_journal(d / "system.journal", entries(args.entries))
        size = sum(f.stat().st_size for f in d.iterdir())
        print(f"journal: {args.entries:,} entries in {len(list(d.iterdir()))} file(s), {size / 2**20:.0f} MiB, "
              f"written in {time.perf_counter() - start:.1f} s")
        print(f"{'format':14} {'journalctl':>22} {'nsdash journal':>22} {'ratio':>7}")
        for fmt in args.formats:
            jctl = ["journalctl", "--no-pager", "-o", fmt, f"--directory={d}"]
            ours = [PY, "-m", "nsdash", "journal", "--no-pager", "-o", fmt, "-D", str(d)]
            a = subprocess.run(jctl, capture_output=True, check=True).stdout
            b = subprocess.run(ours, capture_output=True, check=True, cwd=REPO).stdout
            same = "identical output" if a == b else "OUTPUT DIFFERS"
            if fmt == "json":
                same = "same entry count" if a.count(b"\n") == b.count(b"\n") else "ENTRY COUNTS DIFFER"
            js = timings(jctl, args.runs)
            os_ = timings(ours, args.runs)
            t_j, t_o = min(js), min(os_)
            report.row(f"journal -o {fmt}, {args.entries:,} entries", t_o, "journalctl", t_j, "s",
                       spread=(min(os_) / max(js), max(os_) / min(js)), note=f"best of {args.runs}; {same}")
            print(f"{fmt:14} {args.entries / t_j:>12,.0f} e/s {t_j:5.2f}s {args.entries / t_o:>12,.0f} e/s "
                  f"{t_o:5.2f}s {t_o / t_j:6.2f}x  ({same})")
    report.done()
    return 0


if __name__ == "__main__":
    sys.exit(main())
