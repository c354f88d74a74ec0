"""`nsdash _supervise --ready-fd N [--in-unit]`: the detached supervisor's entry point (hidden verb).

The client writes the ContainerSpec as JSON on stdin.  We detach (setsid, a
second fork so we can never reacquire a terminal, stdio to /dev/null), run the
supervisor, and tell the waiting client through the ready pipe either
{"ok": true, "leader": PID} once the machine runs, or the error, as one line.
Before that, one line {"supervisor": PID}, so a client that times out can kill
and clean up.  With --in-unit systemd started us as nsdash@NAME.service
(machines/units.py): already detached, the ready pipe is our stdout and stderr
goes to the journal, where it stays once the report is sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback

from nsdash.errors import NsdashError


def _report(fd: int, body: dict) -> None:
    if fd < 0:
        return
    try:
        os.write(fd, json.dumps(body).encode() + b"\n")
    except OSError:
        pass  # the client gave up waiting; the machine runs regardless
    finally:
        if fd <= 2:
            os.dup2(2, fd)  # a stdio fd stays valid (the journal), never reused by a socket
        else:
            os.close(fd)


def _detach() -> None:
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    os.umask(0o022)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def main(argv: list[str]) -> int:
    in_unit = argv[2:] == ["--in-unit"]
    if len(argv) != 2 + in_unit or argv[0] != "--ready-fd" or not argv[1].isdigit():
        raise NsdashError("_supervise is internal", "use 'nsdash spawn --detach' or 'nsdash start'")
    ready = int(argv[1])
    os.set_inheritable(ready, False)
    from nsdash.launcher import speccodec

    try:
        spec = speccodec.loads(sys.stdin.read())
    except (ValueError, TypeError) as e:
        _report(ready, {"ok": False, "message": f"bad spec from the client: {e}"})
        return 1
    if in_unit:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    else:
        if os.fork() > 0:
            os._exit(0)  # the client reaps us; our child carries on
        _detach()
    # Who we are, first: a client that gives up waiting kills us and cleans up (client.spawn).
    with contextlib.suppress(OSError):
        os.write(ready, json.dumps({"supervisor": os.getpid()}).encode() + b"\n")
    from nsdash.machines.supervisor import Supervisor

    state = {"fd": ready}

    def on_ready(leader: int) -> None:
        _report(state["fd"], {"ok": True, "machine": spec.machine, "leader": leader})
        state["fd"] = -1

    try:
        # The engine stays referenced until os._exit below: it and its last Container go with
        # the process's memory, not object by object after the machine has stopped (machines/run.py).
        engine = Supervisor(spec, on_ready=on_ready)
        status = engine.run()
    except NsdashError as e:
        _report(state["fd"], {"ok": False, "message": e.message, "hint": e.hint})
        os._exit(1)
    except BaseException as e:  # noqa: BLE001 - the client must hear why, not a silent EOF
        detail = "".join(traceback.format_exception_only(type(e), e)).strip()
        _report(state["fd"], {"ok": False, "message": f"supervisor failed: {detail}",
                              "hint": "rerun in the foreground, or with NSDASH_DEBUG=1"})
        os._exit(1)
    if state["fd"] >= 0:
        _report(state["fd"], {"ok": False, "message": f"the machine stopped at once (status {status})"})
    os._exit(status & 0xFF)
