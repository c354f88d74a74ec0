"""An unprivileged guest process that names itself with bytes that are not UTF-8 breaks no unit's status.

Any process names itself (its comm: prctl, or /proc/self/comm) with any bytes but NUL; the
kernel writes them raw into /proc/PID/status ("Name:"), escaping only newline and backslash.
`nsdash systemctl -M M status UNIT` lists the unit's processes by reading that file, as text:
one process of user nobody named "\\xff\\xfe" ended the verb in UnicodeDecodeError's traceback
(the dashboard's units screen reads the same).  The name is read with the bytes replaced now
(shown as U+FFFD, escaped like all guest text).  A real booted Debian guest.
"""

from __future__ import annotations

from nsdash.inside import units
from tests.integration.test_inside_systemctl import boot, install_units, power_off, systemctl

UNIT = """\
[Unit]
Description=a process named with bytes that are not UTF-8
[Service]
User=nobody
ExecStart=/bin/sh -c 'printf "\\\\377\\\\376" > /proc/self/comm; sleep 1000; :'
"""


def test_a_process_name_that_is_not_utf8_in_a_units_status(debian_cache, machine_name):
    target = boot(debian_cache, machine_name, "-x")
    try:
        install_units(target, **{"nsdash-badname.service": UNIT})
        units.run(target, lambda sd: sd.job("start", "nsdash-badname.service"))
        r = systemctl(target, "status", "nsdash-badname.service")
        assert "Traceback" not in r.stderr, r.stderr[-1500:]
        assert r.returncode == 0 and "sleep 1000" in r.stdout, r.stdout + r.stderr
    finally:
        power_off(machine_name)
