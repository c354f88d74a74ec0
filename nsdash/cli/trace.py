"""`nsdash trace -M NAME [PID|UNIT|--all] [STRACE OPTIONS...]`: strace a machine's processes from the host.

The trace goes to standard output, strace's own messages (and nsdash's
header) to standard error; PIDs and fd paths are the machine's.  Ctrl-C
detaches strace, and the traced processes run on.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from nsdash.cli.args import ArgumentParser
from nsdash.errors import UsageError
from nsdash.inside.debugging.strace import Line

USAGE = "nsdash trace -M NAME [--host-pid] (PID | UNIT | --all) [STRACE OPTION...]"
DESCRIPTION = """\
Trace system calls of a machine's process (a PID as the machine numbers it, or
with --host-pid as the host does), of every process of a unit (its cgroup), or
of the whole machine (--all), following forks.  Options after the target are
strace's own (-e trace=openat, -tt, -s 200, ...; long ones as --opt=VALUE).

strace runs on the host, never inside the machine; the output shows the
machine's PIDs and paths.  Processes that start later in an untraced part of
the machine are not picked up (forks of traced ones are)."""

# nsdash's own options: (names, takes a value)
_OURS = {"-M": True, "--machine": True, "--host-pid": False, "--all": False, "--strace-path": True,
         "-h": False, "--help": False}


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="nsdash trace", usage=USAGE, description=DESCRIPTION,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-M", "--machine", required=True, metavar="NAME", help="the machine")
    p.add_argument("--host-pid", action="store_true", help="PID is the host's number, not the machine's")
    p.add_argument("--all", action="store_true", help="trace every process of the machine")
    p.add_argument("--strace-path", metavar="PATH", help="the host's strace to run (default: strace on PATH)")
    p.add_argument("target", nargs="?", metavar="PID|UNIT", help="a process (machine PID) or a unit")
    return p


def split_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """nsdash's words (options and the one target) and strace's (everything after the target)."""
    ours: list[str] = []
    i = 0
    have_target = False
    while i < len(argv):
        word = argv[i]
        name = word.split("=", 1)[0]
        if word == "--":
            return ours, argv[i + 1:]
        if name in _OURS:
            ours.append(word)
            if _OURS[name] and "=" not in word and i + 1 < len(argv):
                ours.append(argv[i + 1])
                i += 1
        elif word.startswith("-M") and len(word) > 2:
            ours.append(word)
        elif not word.startswith("-") and not have_target:
            ours.append(word)
            have_target = True
        else:
            return ours, argv[i:]
        i += 1
    return ours, []


def main(argv: list[str]) -> int:
    ours, strace_options = split_args(argv)
    ns = build_parser().parse_args(ours)
    if ns.all == (ns.target is not None):
        raise UsageError("name one process or unit, or give --all", "see 'nsdash trace --help'")
    if ns.host_pid and (ns.target is None or not ns.target.isdigit()):
        raise UsageError("--host-pid needs a PID", "see 'nsdash trace --help'")

    from nsdash.inside.debugging.pids import MachineProcesses
    from nsdash.inside.debugging.strace import StraceRun, check_options
    from nsdash.inside.debugging.tools import interrupt_on_hangup
    from nsdash.inside.target import resolve

    check_options(strace_options)
    procs = MachineProcesses(resolve(ns.machine))
    host_pids, what = procs.select(ns.target, ns.host_pid)
    run = StraceRun(procs, host_pids, strace_options, ns.strace_path)
    sys.stderr.write(f"nsdash: tracing {what} of machine '{ns.machine}'; PIDs and paths are the machine's; "
                     "Ctrl-C detaches\n")
    sys.stderr.flush()
    interrupt_on_hangup()  # over -H the far side hangs up on us: strace must detach then too
    with run:
        try:
            for line in run.lines():
                _show(line)
        except KeyboardInterrupt:
            with contextlib.suppress(OSError):  # a reader that went (a hang-up) takes no more lines
                for line in run.close():
                    _show(line)
    code = run.returncode
    return 0 if code in (0, None, -2, 130) else int(code if code > 0 else 1)


def _show(line: Line) -> None:
    stream = sys.stdout if line.kind == "trace" else sys.stderr
    stream.write(line.text + "\n")
    stream.flush()
