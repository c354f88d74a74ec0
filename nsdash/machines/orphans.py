"""Clean up after a supervisor that died without tearing its machine down.

A state entry whose lock nobody holds is an orphan: its supervisor was killed
(kill -9, OOM, host crash).  Whatever it left (processes in the machine's
cgroup, mounts under its state directory, the host side of its veth link, an
--image's host-side mounts, the entry itself) is removed here, so a new machine
of the same name can start.  An --image's loop device is unbound by the kernel
once the killed machine's mount namespace is gone (launcher/image.py).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

from nsdash.errors import NsdashError
from nsdash.launcher import image, network
from nsdash.launcher.cgroup import MachineCgroup
from nsdash.machines import state as st
from nsdash.system import mountinfo, paths, syscalls


def _mounts_under(directory: Path) -> list[str]:
    return mountinfo.mounts_under(str(directory))


def clean_orphan(name: str) -> list[str]:
    """Remove what a dead supervisor left behind for NAME; returns what was done."""
    directory = st.machine_dir(name)
    if st.supervisor_alive(directory):
        raise NsdashError(f"machine '{name}' is not an orphan: its supervisor is alive")
    state = st.read_state(directory)
    done: list[str] = []
    cgroup = MachineCgroup(name)
    if state is not None and state.cgroup and state.cgroup != cgroup.path:
        cgroup.path = state.cgroup
        cgroup.dirs = cgroup._dirs()
    if any(d.exists() for d in cgroup.dirs):
        count = len(cgroup.pids())
        cgroup.remove()
        done.append(f"killed {count} process(es) and removed cgroup {cgroup.path}")
    for point in sorted(_mounts_under(directory), key=len, reverse=True):
        with contextlib.suppress(OSError):
            syscalls.umount2(point, syscalls.MNT_DETACH)
            done.append(f"unmounted {point}")
    for ifname in sorted(set(state.netif if state else []) | {("ve-" + name)[:15]}):
        if Path("/sys/class/net", ifname).exists():
            subprocess.run(["ip", "link", "del", ifname], capture_output=True, check=False)
            done.append(f"removed link {ifname}")
    done += network.forget(name)  # its address lease and nft rules (found by machine)
    done += image.clean_stale(name)  # --image: the host's view of its mounts, if it died starting

    run_dir = paths.state_root() / "run" / name  # the launcher's per-run directory (ephemeral roots)
    for point in sorted(_mounts_under(run_dir), key=len, reverse=True):
        with contextlib.suppress(OSError):
            syscalls.umount2(point, syscalls.MNT_DETACH)
            done.append(f"unmounted {point}")
    if not _mounts_under(run_dir) and run_dir.exists():
        shutil.rmtree(run_dir, ignore_errors=True)
        done.append(f"removed {run_dir}")
    if _mounts_under(directory):
        raise NsdashError(f"cannot clean up machine '{name}': mounts remain under {directory}",
                          "unmount them by hand (findmnt -R " + str(directory) + ")")
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)
        done.append(f"removed state {directory}")
    return done

