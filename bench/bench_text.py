#!/usr/bin/env python3
"""Cost of the guest-text sanitiser (nsdash/system/text.py) per line, side by side with the check
the journal formatter made before it (journalctl's utf8_is_printable() as a regex) and with
Python's own repr() (the other obvious way to show a string escaped).

Runs each over the same lines: plain ASCII, UTF-8, a tab, a multi-line message, a hostile line.
Prints ns per call, median of 7 rounds and the spread (min..max).

    .venv/bin/python bench/bench_text.py
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nsdash.system.text import escape  # noqa: E402

UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what format.py checked before

LINES = {
    "ascii 80": "systemd[1]: Started session-4.scope - Session 4 of User root (pid 1234, uid 0).",
    "utf-8 80": "kernel: héllo wörld — überprüfung der Geräte läuft: ✓ 中文字符 done in 0.5 s",
    "tab 80": "sshd[812]:\tAccepted publickey for root from 10.0.0.1 port 51234 ssh2: RSA",
    "multi-line": "Traceback (most recent call last):\n  File \"x.py\", line 1\n    boom\nValueError",
    "hostile": "evil \x1b]52;c;?\x07\x1b[>c\u009b6n\u202eoverride\x1bPtmux;\x1b\x1b]2;t\x07\x1b\\ end",
}


def ns_per_call(fn, line: str, number: int = 20000) -> tuple[float, float, float]:
    rounds = timeit.repeat(lambda: fn(line), number=number, repeat=7)
    per = [r / number * 1e9 for r in rounds]
    return statistics.median(per), min(per), max(per)


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)  # no options: --help
    contenders = {
        "escape (one-line)": escape,
        "escape (newline kept)": lambda s: escape(s, newline=True, tab=True),
        "regex check (before)": UNPRINTABLE.search,
        "repr()": repr,
    }
    print(f"{'line':12} " + " ".join(f"{name:>26}" for name in contenders))
    for label, line in LINES.items():
        cells = []
        for fn in contenders.values():
            med, lo, hi = ns_per_call(fn, line)
            cells.append(f"{med:8.0f} ns ({lo:.0f}..{hi:.0f})")
        print(f"{label:12} " + " ".join(f"{c:>26}" for c in cells))


if __name__ == "__main__":
    main()
