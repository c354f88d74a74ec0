"""A command's own blocking connection to a machine's bus (`systemctl -M M` where no supervisor makes
bus-calls, the dashboard's workers) is guarded by machines/busguard.py: neither the supervisor's
bus-call worker (threading, queue, signal) nor the control protocol's codec comes with it.  Checked on
the modules the real connect and call import, in a fresh interpreter; timing is bench/'s business.
(The job verbs' async path: tests/integration/test_inside_systemctl.py, on a real machine.)
"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The guest's bus is a listening socket that never answers: the connection's dbuswire handshake is
# replaced by a stand-in (what is checked is what MachineBus imports to connect and call, guarded).
_CODE = """
import os, socket, sys
from nsdash.inside.bus import MachineBus
from nsdash.inside.target import Target
from nsdash.system import dbuswire

class Wire:
    def __init__(self, guard, timeout):
        self.guard = guard
    def call(self, *args):
        return ["answered"]

dbuswire.Connection = Wire
before = set(sys.modules)
path = os.path.join(os.environ["TMPDIR"], "bus")
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(1)
bus = MachineBus(Target("m", os.getpid()), timeout=5, blocking=True)
fd = os.open(path, os.O_PATH)
bus._connect_blocking(fd)
reply = bus._call_blocking("org.freedesktop.systemd1", "/", "i.f", "M", "", (), None)
print(type(bus._guard).__module__, reply, bus._guard.budget)
print(" ".join(sorted(set(sys.modules) - before)))
print(" ".join(sorted(sys.modules)))
"""

NEVER = {"nsdash.machines.protocol", "nsdash.machines.busproxy", "threading", "queue", "signal"}


def test_a_blocking_connection_imports_no_bus_call_worker_nor_protocol(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", _CODE], capture_output=True, text=True, cwd=REPO, env=env,
                         timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-2000:]
    first, loaded, everything = out.stdout.splitlines()
    from nsdash.machines.busguard import BUS_REPLY_MAX

    assert first == f"nsdash.machines.busguard ['answered'] {BUS_REPLY_MAX}"  # armed with the one budget
    assert "nsdash.machines.busguard" in loaded.split()
    assert set(everything.split()) & NEVER == set()


def test_the_protocol_and_the_guard_share_one_reply_limit():
    from nsdash.machines import busguard, protocol

    assert protocol.BUS_REPLY_MAX is busguard.BUS_REPLY_MAX
    line = protocol.bus_reply(1, ["x" * busguard.BUS_REPLY_MAX])
    assert b'"oversized"' in line
