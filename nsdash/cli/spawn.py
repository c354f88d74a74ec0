"""`nsdash spawn`: run a command or boot an OS tree, with systemd-nspawn's options.

Options become a ContainerSpec (nsdash.launcher.options); --dry-run prints the
launch plan; --detach hands the spec to a background supervisor; otherwise
the container runs in the foreground with this terminal as its console.
Imports stay minimal: this is the hot path of every spawn.
"""

from __future__ import annotations

import gc
import os
import sys

from nsdash.errors import PrivilegeError
from nsdash.launcher.options import parse_spawn_args

TYPE_CHECKING = False  # mypy reads this as True; typing stays off the spawn path
if TYPE_CHECKING:
    from nsdash.launcher.spec import ContainerSpec


def main(argv: list[str]) -> int:
    # No cyclic collection while the options are read and a foreground run's modules load
    # (modules, classes, functions: nothing made then is garbage; the launcher holds it off
    # for this module's own import on main, nsdash.cli);
    # it is back on before the machine starts (a supervisor may run for days), with what the
    # imports made frozen (gc.freeze): else the first collections after walk all of it as
    # young objects (callgrind: about 4 M instructions of the parent's 140 M before its fork).
    held = gc.isenabled()
    gc.disable()
    try:
        spec = parse_spawn_args(argv)
        if not (spec.dry_run or spec.detach):
            import nsdash.machines.run  # noqa: F401 - loaded now; run() below finds it
    finally:
        gc.freeze()
        if held:
            gc.enable()
    return _run(spec)


def _run(spec: ContainerSpec) -> int:
    if spec.dry_run:
        return _dry_run(spec)
    if spec.wait and not spec.detach:
        from nsdash.errors import UsageError

        raise UsageError("--wait needs --detach", "in the foreground the console shows the boot; "
                                                   "add --detach to wait for the guest in the background")
    if os.geteuid() != 0:
        raise PrivilegeError("nsdash spawn needs root",
                             "run it with sudo (namespaces, mounts and cgroups need root)")
    if spec.detach:
        from nsdash.machines import client

        result = client.spawn(spec, detach=True)
        if not spec.quiet:
            leader = result.get("leader")
            up = " and it is up" if spec.wait else ""
            sys.stderr.write(f"Started machine {spec.machine}" + (f" (PID 1 = {leader} on the host)" if leader
                                                                  else "") + up + ".\n")
        return 0
    from nsdash.machines.run import run_foreground

    kept: list[object] = []  # held until _fast_exit's os._exit (see run_foreground)
    code = run_foreground(spec, kept)
    _fast_exit(code)
    return code


def _dry_run(spec: ContainerSpec) -> int:
    """Print the launch plan.  An --image is mounted read-only meanwhile (the plan reads the
    tree: its init, its users), which needs root, and detached again before returning."""
    from nsdash.launcher.plan import build_plan
    from nsdash.system import paths

    image = None
    if spec.image is not None:
        if os.geteuid() != 0:
            raise PrivilegeError("--dry-run with --image needs root",
                                 "the image is mounted read-only to make the plan: run it with sudo")
        from nsdash.launcher.image import AttachedImage

        image = AttachedImage(spec.image, spec.machine, read_only=True)
        image.attach()
    try:
        plan = build_plan(spec, console=spec.console != "pipe",
                          state_dir=paths.machine_path(spec.machine),  # the supervisor's entry
                          host_term=os.environ.get("TERM"))
    finally:
        if image is not None:
            image.close()
    if image is not None and image.dissection is not None:
        sys.stdout.write(f"image:        {spec.image}\n" + "".join(f"  {line}\n" for line in image.dissection.describe()))
    sys.stdout.write(plan.describe())
    return 0


def _fast_exit(code: int) -> None:
    """Exit now when running as the `nsdash` program: the container is fully torn down, and
    tearing down the interpreter (every module, the GC) would add 10-30 ms to each spawn.
    Not when called in-process (tests, embedding)."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", "") or ""
    if os.path.basename(main_file) not in ("nsdash", "__main__.py") or "nsdash" not in main_file:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code & 0xFF)
