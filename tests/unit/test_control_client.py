"""machines.client.Control against a supervisor that exits mid-call (its machine stopped):
one NsdashError, never a ConnectionResetError traceback or a BrokenPipeError (which
nsdash.cli takes for `| head` and exits 0 on).  A real unix socket, a fake supervisor."""

from __future__ import annotations

import select
import socket
import threading

import pytest

from nsdash.errors import ProtocolError
from nsdash.machines import client
from nsdash.machines import protocol as proto


def _supervisor_that_dies_on_the_second_request(path: str) -> threading.Thread:
    """Greets, then closes as the next request arrives, leaving it unread (the peer then sees a reset)."""
    listener = socket.create_server(path, family=socket.AF_UNIX)

    def serve() -> None:
        with listener, listener.accept()[0] as conn:
            hello = conn.makefile("rb").readline()
            conn.sendall(proto.ok(proto.decode_request(hello.strip()).id, version=proto.VERSION))
            select.select([conn], [], [], 30)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_supervisor_gone_mid_call_is_a_protocol_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NSDASH_STATE_DIR", str(tmp_path))
    (tmp_path / "machines" / "m").mkdir(parents=True)
    thread = _supervisor_that_dies_on_the_second_request(str(tmp_path / "machines" / "m" / "control"))
    c = client.Control("m")
    with pytest.raises(ProtocolError, match="closed the connection"):
        c.request("status")  # ECONNRESET on the read (`spawn --detach --wait /bin/true` hit it)
    thread.join(30)
    with pytest.raises(ProtocolError, match="closed the connection"):
        c.request("status")  # EPIPE on the write
    c.sock.close()
