"""`nsdash debug -M NAME PID [--core FILE] [GDB OPTION...]`: gdb on a machine's process, from the host.

gdb replaces nsdash (exec) once the process is found, so Ctrl-C, the terminal
and the exit status are gdb's own and nothing of nsdash stays behind.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nsdash.cli.args import ArgumentParser, output_file

DESCRIPTION = """\
Attach the host's gdb to a machine's process (PID as the machine numbers it;
--host-pid for the host's number).  gdb reads the guest's libraries and debug
symbols inside the machine's own mount namespace (sysroot target:), so a guest
symlink cannot point it at a host file.  Guest-supplied gdb scripts
and libthread_db are never loaded.  Words after PID go to gdb
(--batch -ex bt prints a backtrace and detaches)."""


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="nsdash debug", description=DESCRIPTION,
                usage="nsdash debug -M NAME [--host-pid] [--core FILE] PID [GDB OPTION...]",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-M", "--machine", required=True, metavar="NAME", help="the machine")
    p.add_argument("--host-pid", action="store_true", help="PID is the host's number, not the machine's")
    p.add_argument("--core", metavar="FILE", help="save a core file of the process on the host (gcore), "
                                                  "then detach")
    p.add_argument("--gdb-path", metavar="PATH", help="the host's gdb to run (default: gdb on PATH)")
    p.add_argument("pid", type=int, metavar="PID")
    return p


# nsdash's own options, taken wherever they stand (gdb's words around them): name -> takes a value
_OURS = {"-M": True, "--machine": True, "--host-pid": False, "--core": True, "--gdb-path": True,
         "-h": False, "--help": False}


def split_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """nsdash's words (its options and PID) and gdb's (the rest; everything after '--')."""
    ours: list[str] = []
    theirs: list[str] = []
    words = iter(argv)
    have_pid = False
    for word in words:
        name = word.split("=", 1)[0]
        if word == "--":
            theirs += list(words)
        elif name in _OURS:
            ours.append(word)
            if _OURS[name] and "=" not in word:
                ours.append(next(words, ""))
        elif word.startswith("-M") and len(word) > 2:
            ours.append(word)
        elif word.isdigit() and not have_pid:
            ours.append(word)
            have_pid = True
        else:
            theirs.append(word)
    return ours, theirs


def main(argv: list[str]) -> int:
    ours, gdb_args = split_args(argv)
    ns = build_parser().parse_args(ours)
    if ns.core:
        output_file(ns.core, "--core")
    from nsdash.inside.debugging import gdb, tools
    from nsdash.inside.debugging.pids import MachineProcesses
    from nsdash.inside.target import resolve
    from nsdash.system.text import escape

    target = resolve(ns.machine)
    process = MachineProcesses(target).by_pid(ns.pid, host=ns.host_pid)
    binary = tools.find("gdb", ns.gdb_path)
    core = str(Path(ns.core).absolute()) if ns.core else None
    argv_gdb = gdb.build_argv(binary, process.host_pid, core, gdb_args)
    sys.stderr.write(f"nsdash: gdb on PID {process.pid} ({escape(process.comm)}) of machine '{ns.machine}', "
                     f"host PID {process.host_pid}; the machine's files read inside the machine\n")
    sys.stderr.flush()
    sys.stdout.flush()
    if core is not None:
        os.umask(0o077)  # a core holds the process's memory: readable by root only
    os.execv(binary, argv_gdb)
    return 1  # not reached
