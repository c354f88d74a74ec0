"""`nsdash spawn`: run a command or boot an OS tree, with systemd-nspawn's options.

Options become a ContainerSpec (nsdash.launcher.options); --dry-run prints the
launch plan; --detach hands the spec to a background supervisor; otherwise
the container runs in the foreground with this terminal as its console.
Imports stay minimal: this is the hot path of every spawn.
"""

from __future__ import annotations

import os
import sys

from nsdash.errors import PrivilegeError
from nsdash.launcher.options import parse_spawn_args


def main(argv: list[str]) -> int:
    spec = parse_spawn_args(argv)
    if spec.dry_run:
        from nsdash.launcher.plan import build_plan
        from nsdash.system import paths

        plan = build_plan(spec, console="/dev/pts/N" if spec.console != "pipe" else None,
                          state_dir=str(paths.state_root() / "run" / spec.machine),
                          host_term=os.environ.get("TERM"))
        sys.stdout.write(plan.describe())
        return 0
    if os.geteuid() != 0:
        raise PrivilegeError("nsdash spawn needs root",
                             "run it with sudo (namespaces, mounts and cgroups need root)")
    if spec.detach:
        from nsdash.launcher import client

        result = client.spawn(spec, detach=True)
        if not spec.quiet:
            leader = result.get("leader")
            sys.stderr.write(f"Started machine {spec.machine}" + (f" (PID 1 = {leader} on the host)" if leader
                                                                  else "") + ".\n")
        return 0
    from nsdash.launcher.run import run_foreground

    return run_foreground(spec)
