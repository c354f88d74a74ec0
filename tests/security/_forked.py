"""Run a function in a forked child and get its result back (root security tests).

The child may unshare namespaces, mount, install seccomp filters: all of it
dies with the child, so nothing leaks into the test process.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any


def in_child(fn: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Call FN in a forked child; return its JSON-able result or raise its error text."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(r)
        try:
            out = json.dumps({"ok": fn()})
        except BaseException as e:  # noqa: BLE001 - everything must reach the parent
            out = json.dumps({"err": f"{type(e).__name__}: {e}", "tb": traceback.format_exc()})
        os.write(w, out.encode())
        os.close(w)
        os._exit(0)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError(f"child still running after {timeout}s: killed")
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        raise AssertionError(f"child died without an answer (wait status {status:#x})")
    msg = json.loads(b"".join(chunks))
    if "err" in msg:
        raise ChildError(msg["err"], msg["tb"])
    return msg["ok"]


class ChildError(Exception):
    def __init__(self, text: str, tb: str) -> None:
        super().__init__(text)
        self.text = text
        self.tb = tb
