"""One ssh connection to a host carrying many verbs: what a poller keeps per remote host.

The command line opens a connection per command (nsdash.remote.client); a
dashboard over several hosts would pay ssh's handshake and the far side's
start on every refresh that way.  A Session keeps one `ssh HOST nsdash
_remote` open and runs each batch of verbs on channels of it, concurrently
(the far side forks one child per verb).  Results are the verbs' raw bytes:
the caller parses them (`-o json`) and escapes what it shows, as it would
for local readers.

What one verb may write is bounded (run()'s LIMIT, OUTPUT_MAX unless the
caller says it needs more): a far side that sends more is broken or hostile,
and the session ends with a RemoteError naming the verb and the bound rather
than holding it all in memory.

A session that does not answer within its timeout, or whose connection
ended, raises RemoteError; a poller then marks the host unreachable and opens
a new session later (its own backoff), without holding up other hosts (one
session per host, each in the poller's thread for that host).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nsdash.remote import protocol as p
from nsdash.remote.client import Connection, check_verb
from nsdash.remote.ssh import SshProcess
from nsdash.remote.target import Target
from nsdash.system.ready import readable
from nsdash.system.text import escape

OUTPUT_MAX = 8 << 20  # bytes one verb may write (stdout and stderr together) unless its caller says more


class Result:
    """One verb's end: its exit status and what it wrote."""

    __slots__ = ("code", "stdout", "stderr")

    def __init__(self, code: int, stdout: bytes, stderr: bytes) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr

    def __repr__(self) -> str:
        return f"Result({self.code}, {self.stdout[:60]!r}, {self.stderr[:60]!r})"


class Session:
    """An open connection to TARGET; run() verbs over it; close() when done (or use `with`)."""

    def __init__(self, target: Target, timeout: float = 30.0,
                 started: Callable[[SshProcess], object] | None = None) -> None:
        """STARTED: called with ssh's process as soon as it runs (nsdash.remote.client.Connection)."""
        self.target = target
        self.timeout = timeout
        self.conn = Connection(target, timeout, started)
        self.next_channel = 1

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def ssh_pid(self) -> int:
        return self.conn.proc.pid

    def run(self, *argvs: list[str], limit: int = OUTPUT_MAX) -> list[Result]:
        """Run each ARGV (a verb and its arguments) at once, each on a channel; their results in order.
        LIMIT: the bytes each verb may write; past it the session is closed and RemoteError says so."""
        for argv in argvs:
            check_verb(argv)
        channels = list(range(self.next_channel, self.next_channel + len(argvs)))
        self.next_channel += len(argvs)
        out: dict[tuple[int, int], bytearray] = {(ch, fd): bytearray() for ch in channels for fd in (1, 2)}
        codes: dict[int, int] = {}
        for ch, argv in zip(channels, argvs, strict=True):
            self.conn.send(p.encode("run", ch=ch, argv=argv, tty=None, stdin=False))
        pending = self.conn.messages(b"")
        while True:
            for message in pending:
                self._take(message, out, codes)
            for ch, argv in zip(channels, argvs, strict=True):
                if len(out[ch, 1]) + len(out[ch, 2]) > limit:
                    self._overflow(argv, limit)
            if len(codes) == len(channels):
                break
            if not readable(self.conn.fds(), self.timeout):
                raise p.RemoteError(f"{self.target} did not answer in {self.timeout:.0f} s",
                                    "check the host; the session is dropped")
            data = self.conn.read(block=False)
            if data is None:
                raise self.conn.lost()
            pending = self.conn.messages(data)
        return [Result(codes[ch], bytes(out[ch, 1]), bytes(out[ch, 2])) for ch in channels]

    @staticmethod
    def _take(message: dict[str, Any], out: dict[tuple[int, int], bytearray], codes: dict[int, int]) -> None:
        ch, fd = message.get("ch"), message.get("fd")
        if not isinstance(ch, int) or (ch, 1) not in out:
            return  # a channel of an earlier batch, or none of ours
        if message["t"] == "out" and isinstance(fd, int) and (ch, fd) in out:
            out[ch, fd] += p.data_of(message)
        elif message["t"] == "exit":
            code = message.get("code")  # an exit status, as client and stream take it (a far host
            codes[ch] = code if isinstance(code, int) and 0 <= code < 256 else 1  # may send any number)

    def _overflow(self, argv: list[str], limit: int) -> None:
        """ARGV wrote more than LIMIT bytes: end the connection (the far side would go on sending)."""
        self.conn.proc.kill()  # not a polite close: a far side blocked writing would not read its EOF
        self.close()
        verb = escape(" ".join(argv))
        raise p.RemoteError(f"{self.target}: '{verb[:80]}{'…' if len(verb) > 80 else ''}' wrote more than "
                            f"{limit} bytes, the most one verb may send here", "the session was closed")

    def close(self) -> None:
        self.conn.close()
