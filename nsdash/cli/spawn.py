"""`nsdash spawn`: run a command or boot an OS tree, with systemd-nspawn's options.

Options become a ContainerSpec (nsdash.launcher.options); --dry-run prints the
launch plan; otherwise the container runs in the foreground with this terminal
as its console.  Imports stay minimal: this is the hot path of every spawn.
"""

from __future__ import annotations

import os
import sys

from nsdash.errors import PrivilegeError, UsageError
from nsdash.launcher.spec import ContainerSpec


def _parse(argv: list[str]) -> tuple[ContainerSpec, bool]:
    """Parse spawn's options; returns the spec and whether --dry-run was given."""
    dry_run = "--dry-run" in argv[: _first_positional(argv)]
    if dry_run:
        argv = [a for i, a in enumerate(argv) if not (a == "--dry-run" and i < _first_positional(argv))]
    import importlib.util

    if importlib.util.find_spec("nsdash.launcher.options") is not None:
        options = importlib.import_module("nsdash.launcher.options")
        if hasattr(options, "parse_spawn_args"):
            return options.parse_spawn_args(argv), dry_run
    return _fallback_parse(argv), dry_run


def _first_positional(argv: list[str]) -> int:
    takes_value = {"-D", "--directory", "-M", "--machine", "--console", "-u", "--user", "--chdir", "-E",
                   "--setenv"}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return i
        if not a.startswith("-") or a == "-":
            return i
        i += 2 if a in takes_value else 1
    return i


def _fallback_parse(argv: list[str]) -> ContainerSpec:
    """A small parser used until nsdash.launcher.options is available."""
    import argparse
    from pathlib import Path

    p = argparse.ArgumentParser(prog="nsdash spawn")
    p.add_argument("-D", "--directory")
    p.add_argument("-M", "--machine")
    p.add_argument("-b", "--boot", action="store_true")
    p.add_argument("-a", "--as-pid2", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-x", "--ephemeral", action="store_true")
    p.add_argument("-P", "--pipe", action="store_true")
    p.add_argument("--console", default=None)
    p.add_argument("-u", "--user")
    p.add_argument("--chdir")
    p.add_argument("-E", "--setenv", action="append", default=[])
    p.add_argument("--private-network", action="store_true")
    p.add_argument("--read-only", action="store_true")
    p.add_argument("--reboot", choices=("restart", "exit"), default="restart")
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    if not a.directory:
        raise UsageError("no directory given", "pass the OS tree with -D DIR")
    directory = Path(a.directory).absolute()
    console = "pipe" if a.pipe else (a.console or ("interactive" if os.isatty(0) else "read-only"))
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    env = tuple(tuple(e.split("=", 1)) for e in a.setenv)
    return ContainerSpec(directory=directory, machine=a.machine or directory.name, boot=a.boot,
                         as_pid2=a.as_pid2, quiet=a.quiet, ephemeral=a.ephemeral, console=console,
                         user=a.user, chdir=a.chdir, setenv=env,  # type: ignore[arg-type]
                         private_network=a.private_network, read_only=a.read_only,
                         command=tuple(command), reboot_exit=a.reboot == "exit")


def main(argv: list[str]) -> int:
    # --detach (also taken by the options parser as spec.detach): run under a background
    # supervisor and return once the machine runs (nsdash.launcher.client).
    detach = "--detach" in argv[: _first_positional(argv)]
    if detach:
        argv = [a for i, a in enumerate(argv) if not (a == "--detach" and i < _first_positional(argv))]
    spec, dry_run = _parse(argv)
    detach = detach or bool(getattr(spec, "detach", False))
    if dry_run:
        from nsdash.launcher.plan import build_plan
        from nsdash.system import paths

        plan = build_plan(spec, console="/dev/pts/N" if spec.console != "pipe" else None,
                          state_dir=str(paths.state_root() / "run" / spec.machine),
                          host_term=os.environ.get("TERM"))
        sys.stdout.write(plan.describe())
        return 0
    if os.geteuid() != 0:
        raise PrivilegeError("nsdash spawn needs root", "run it with sudo (namespaces, mounts and cgroups need root)")
    if detach:
        import dataclasses

        from nsdash.launcher import client

        if not any(a.startswith("--console") for a in argv[: _first_positional(argv)]):
            # No terminal to infer from: the supervisor's PTY takes input from attachers.
            spec = dataclasses.replace(spec, console="interactive")
        client.spawn(spec, detach=True)
        return 0
    from nsdash.launcher.run import run_foreground

    return run_foreground(spec)
