"""A relay between dbus-fast's MessageBus and a machine's bus: the guest's messages, bounded.

The machine's bus is whatever root inside put at /run/dbus/system_bus_socket.
dbus-fast accepts messages up to 128 MiB and reads each one whole before
anything can look at it: a planted bus answering `systemctl -M M start` with a
32 MB reply took the command to 1.18 GB for 7 s.  dbus-fast has no public knob
for that limit, so the MessageBus is given one end of a socketpair and this
relay holds the real connection to the guest.  It copies the host's bytes out
as they come and the guest's bytes in message by message, reading each
message's fixed header (D-Bus specification, "Message Format"): byte 0 the
endianness ('l' or 'B'), byte 3 the protocol version 1, the body's length at
offset 4 and the header fields' length at 12, the fields padded to 8.  Each
message is held until it is whole (at most the limit) and passed only if
system/dbuscheck finds every length inside it within it: dbus-fast's compiled
unmarshaller wraps its 32-bit read position on a length near 2**32 and reads
outside its buffer (SIGSEGV).  A message over the limit or unsound, an
authentication line over LINE_MAX, or bytes that are not D-Bus end the
connection, with the reason in `error`.

Before BEGIN the guest may send only one line for each line the host sent (a
bus only ever answers): dbus-fast reads authentication in 1 KiB pieces and
takes what follows its OK as the message stream, so lines sent unasked could
start a message whose header the relay never read, and from then on the
relay's messages would not be dbus-fast's.  Descriptors the guest attaches are
dropped by the kernel (the relay reads with recv(), and the MessageBus does not
negotiate them).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Coroutine
from typing import Any

from nsdash.system import dbuscheck

HEADER = dbuscheck.HEADER  # the fixed part of a D-Bus message header
LINE_MAX = 4096  # an authentication line from the bus ("OK <guid>", "REJECTED <mechanisms>")
CHUNK = 65536


class Refused(Exception):
    """The guest sent something the relay does not pass on; the text completes "the bus ..."."""


def message_size(head: bytes, limit: int) -> int:
    """The length of the whole message whose fixed header is HEAD (16 bytes); Refused when it is
    not a D-Bus message or longer than LIMIT."""
    try:
        size = dbuscheck.size(head)
    except dbuscheck.Malformed:
        raise Refused("sent bytes that are not a D-Bus message") from None
    if size > limit:
        raise Refused(f"sent a message over {amount(limit)}")
    return size


def amount(n: int) -> str:
    return f"{n >> 20} MiB" if n % (1 << 20) == 0 else f"{n} bytes"


class Scanner:
    """Which of the guest's bytes may go on to the MessageBus.  Pure: no I/O.

    Until the host has sent BEGIN the guest speaks lines (SASL); after it, messages."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.begun = False  # set when the host's BEGIN line goes out
        self.asked = 0  # the host's authentication lines the guest has not answered yet
        self._host = b""  # the host's unfinished authentication line

    def host(self, data: bytes) -> None:
        """Note the host's bytes DATA on their way out: each line before BEGIN asks for one answer."""
        if self.begun:
            return
        pending = self._host + data
        while not self.begun and (end := pending.find(b"\r\n")) >= 0:
            # dbus-fast's lines: "\0AUTH EXTERNAL <hex>", maybe NEGOTIATE_UNIX_FD, BEGIN
            if pending[:end] == b"BEGIN":
                self.begun = True
            else:
                self.asked += 1
            pending = pending[end + 2:]
        self._host = b"" if self.begun else pending[-(LINE_MAX + 2):]

    def scan(self, data: bytes) -> int:
        """How many bytes at the start of DATA may pass now; the rest waits for more."""
        i, n = 0, len(data)
        while i < n:
            if not self.begun:
                if not self.asked:
                    raise Refused("sent authentication lines it was not asked for")
                end = data.find(b"\r\n", i, i + LINE_MAX + 2)
                if end < 0:
                    if n - i > LINE_MAX:
                        raise Refused(f"sent an authentication line over {LINE_MAX} bytes")
                    break
                self.asked -= 1
                i = end + 2
            elif n - i >= HEADER:
                size = message_size(data[i:i + HEADER], self.limit)
                if n - i < size:
                    break  # held until it is whole: dbus-fast may read none of it unchecked
                try:
                    dbuscheck.check(data[i:i + size])
                except dbuscheck.Malformed as e:
                    raise Refused(f"sent a message {e}") from None
                i += size
            else:
                break
        return i


class Relay:
    """Copies between GUEST (connected to the machine's bus) and HOST (the MessageBus's peer) on the
    running loop, until either side ends or the guest sends something Scanner refuses.  Both sockets
    are the relay's: it closes them when it ends."""

    def __init__(self, guest: socket.socket, host: socket.socket, limit: int) -> None:
        self.guest = guest
        self.host = host
        self.scanner = Scanner(limit)
        self.error: str | None = None  # why the relay ended the connection ("sent a message over 1 MiB")
        guest.setblocking(False)
        host.setblocking(False)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def close(self) -> None:
        """End the relay (its task closes both sockets as it unwinds); sockets never started are closed here."""
        if self._task is None:
            self.guest.close()
            self.host.close()
        else:
            self._task.cancel()

    async def _run(self) -> None:
        out = asyncio.ensure_future(self._copying(self._out()))
        into = asyncio.ensure_future(self._copying(self._in()))
        try:
            await asyncio.wait({out, into}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # No await in here: asyncio.run() cancels this task again at its end, which would
            # stop an await short and leave the sockets open.  The copies' pending reads and
            # writes are unregistered first, so their cancellation later touches no reused fd.
            loop = asyncio.get_running_loop()
            for task in (out, into):
                task.cancel()
            for sock in (self.guest, self.host):
                loop.remove_reader(sock.fileno())
                loop.remove_writer(sock.fileno())
                sock.close()  # the MessageBus sees its peer close: its calls fail, connect() too

    @staticmethod
    async def _copying(copy: Coroutine[Any, Any, None]) -> None:
        """COPY until its side hangs up; a reset or a broken pipe is that too, not a task's error."""
        with contextlib.suppress(OSError):
            await copy

    async def _out(self) -> None:
        """The host's bytes to the guest, watching for the BEGIN that ends authentication."""
        loop = asyncio.get_running_loop()
        while data := await loop.sock_recv(self.host, CHUNK):
            self.scanner.host(data)  # before the guest can see it, so its answer is always asked for
            await loop.sock_sendall(self.guest, data)

    async def _in(self) -> None:
        """The guest's bytes to the host, as far as the scanner lets them."""
        loop = asyncio.get_running_loop()
        pending = b""
        while data := await loop.sock_recv(self.guest, CHUNK):
            pending += data
            try:
                ready = self.scanner.scan(pending)
            except Refused as e:
                self.error = str(e)
                return
            if ready:
                await loop.sock_sendall(self.host, pending[:ready])
                pending = pending[ready:]
