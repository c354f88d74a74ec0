"""A -U runit guest's flag files cannot aim host root's chmod and create at a host directory bound in.

`nsdash poweroff` and `reboot` ask runit through its flag files (Debian's /run/runit.stopit
and /run/runit.reboot): host root chmods them, or makes them, inside the machine's root.
openat2's RESOLVE_IN_ROOT keeps a symlink inside that root, but a directory bound in with
--bind is inside it too: root in a -U machine, which may not touch host root's files there
(they are nobody's to it), pointed both flags at them, and a reboot made the host's file mode
0100 and made a new host-root file beside it.  Under -U the host now changes only files its
root owns, and makes one only in a directory its root owns, never through a symlink.
A real runit guest (Debian's runit-init), booted -U -x.
"""

from __future__ import annotations

import stat
import subprocess

from conftest import run_nsdash, wait_for

from nsdash.machines import client
from nsdash.machines import state as st


def _inside(leader: int, script: str) -> None:
    subprocess.run(["nsenter", "-t", str(leader), "-U", "-m", "-p", "--", "/bin/sh", "-c", script],
                   check=True, timeout=10)


def test_flag_links_to_a_bound_host_directory_change_nothing_there(tree_cache, detached, machine_name, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    victim = data / "victim"
    victim.write_text("host root's\n")
    victim.chmod(0o644)
    detached("-U", "-x", "-b", f"--bind={data}:/data", "-D", str(tree_cache("runit")))
    leader = wait_for(lambda: client.status(machine_name).get("leader"), what="the machine's init")
    wait_for(lambda: subprocess.run(["nsenter", "-t", str(leader), "-m", "--", "test", "-e", "/run/runit.stopit"],
                                    check=False).returncode == 0, what="runit's flag files")
    _inside(leader, "rm -f /run/runit.stopit /run/runit.reboot; "
                    "ln -s /data/victim /run/runit.stopit; ln -s /data/made /run/runit.reboot")

    r = run_nsdash("reboot", machine_name, timeout=60)
    assert r.returncode == 1 and "not the machine's own file" in r.stderr, r.stderr
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644 and sorted(p.name for p in data.iterdir()) == ["victim"]

    _inside(leader, "rm -f /run/runit.stopit /run/runit.reboot; touch /run/runit.stopit /run/runit.reboot; "
                    "chmod 0 /run/runit.stopit /run/runit.reboot")  # runit's own again: asked as usual
    r = run_nsdash("poweroff", machine_name, timeout=60)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: not st.machine_dir(machine_name).exists(), timeout=60, what="the poweroff")
