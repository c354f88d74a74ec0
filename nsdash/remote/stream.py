"""One long-running verb on a remote host, read as it goes: what a dashboard pane keeps open.

Session (nsdash.remote.session) runs verbs to their end and hands back
their bytes; a pane that follows something (`journal -f`, a console, a
watch) needs the bytes as they come and a way to type and resize.  A Stream
is one such verb on its own ssh connection (cheap with ControlMaster; and a
stream that stalls then never holds up the host's other readers), on
channel 1 as the command line uses it.

The caller owns the loop: select on fds(), then pump(), which returns
what arrived per fd (1 stdout, 2 stderr) without blocking; `code` is set
once the verb has ended (and pump() then returns None).  The bytes are the
far side's and unescaped: a caller that shows them escapes them (or feeds a
terminal emulator, for a console), as for any guest text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from nsdash.remote import protocol as p
from nsdash.remote.client import Connection, check_verb
from nsdash.remote.ssh import SshProcess
from nsdash.remote.target import Target

CHANNEL = 1


class Stream:
    """ARGV running on TARGET, its output read with pump(); close() ends it (the far side hangs it up)."""

    def __init__(self, target: Target, argv: list[str], tty: tuple[int, int] | None = None,
                 stdin: bool = False, term: str = "xterm-256color", timeout: float | None = 10.0,
                 started: Callable[[SshProcess], object] | None = None) -> None:
        """TTY: (rows, cols) for a far-side PTY (a console), None for pipes.  STDIN: the verb reads
        what write() sends.  TIMEOUT: seconds for the far side to greet (RemoteError after)."""
        check_verb(argv)
        self.target = target
        self.argv = argv
        self.code: int | None = None
        request: dict[str, Any] = {"ch": CHANNEL, "argv": argv, "stdin": stdin or tty is not None, "tty": None,
                                   "last": True}
        if tty is not None:
            request["tty"] = {"rows": tty[0], "cols": tty[1], "term": term}
        # After the greeting, not with the connection as the command line sends it: what came
        # with the greeting would wait unseen by a caller selecting on fds().  The verb's end
        # is the session's (its connection is this stream's alone).
        self.conn = Connection(target, timeout, started)
        self.conn.send(p.encode("run", **request))

    def fds(self) -> list[int]:
        """What to select on for pump()."""
        return self.conn.fds()

    def pump(self) -> dict[int, bytes] | None:
        """What the verb wrote since the last call, by fd (maybe nothing); None once it has
        ended (code set) or the connection is lost (RemoteError)."""
        if self.code is not None:
            return None
        data = self.conn.read(block=False)
        if data is None:
            raise self.conn.lost()
        got: dict[int, bytes] = {}
        for message in self.conn.messages(data):
            if message.get("ch") != CHANNEL:
                continue
            if message["t"] == "out":
                fd = 2 if message.get("fd") == 2 else 1
                got[fd] = got.get(fd, b"") + p.data_of(message)
            elif message["t"] == "exit":
                value = message.get("code")
                self.code = value if isinstance(value, int) and 0 <= value < 256 else 1
        if self.code is not None and not got:
            return None
        return got

    def write(self, data: bytes) -> None:
        """Bytes for the verb's stdin (its PTY, for a console)."""
        if data and self.code is None:
            self.conn.send(p.encode("in", ch=CHANNEL, d=p.data_field(data)))

    def resize(self, rows: int, cols: int) -> None:
        if self.code is None:
            self.conn.send(p.encode("winch", ch=CHANNEL, rows=rows, cols=cols))

    def close(self) -> None:
        """End the verb: closing the connection makes the far side hang up and reap it."""
        if self.conn.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.conn.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
