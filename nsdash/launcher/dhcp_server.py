"""The DHCP server socket on one machine's ve- link (the answers: launcher/dhcp.py).

The Container makes it; the supervisor's loop watches fileno() and calls
serve() when it is readable, so no thread runs (the container's raw clone3 must
not race one) and it ends with the container.  The socket is bound to the ve-
link (SO_BINDTODEVICE): it hears only its machine, and other machines' servers
on port 67 do not collide with it.

Bounded, as the guest writes every packet: serve() reads at most BATCH
datagrams per call, each cut at dhcp.MAX_PACKET, at most READS a second (then
it asks the loop to stop watching the socket for the rest of that second: the
kernel drops what overflows the small receive buffer meanwhile), and sends at
most RATE replies a second.  A flooding guest costs the host a bounded number
of reads, never a reply storm.  Nothing a request says is kept.
"""

from __future__ import annotations

import socket
import time

from nsdash.errors import NsdashError
from nsdash.launcher import dhcp

BATCH = 16
RATE = 20.0  # replies per second, with a burst of as many
READS = 200  # datagrams read per second, at most
RCVBUF = 32 * 1024


class DhcpServer:
    """Answers DHCP on LINK with OFFER's address."""

    def __init__(self, link: str, offer: dhcp.Offer) -> None:
        self.link = link
        self.offer = offer
        self.replies = 0  # how many replies were sent (status and tests)
        self.received = 0  # how many datagrams were read
        self._tokens = RATE
        self._last = time.monotonic()
        self._window = self._last  # the second READS counts in
        self._reads = 0
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, link.encode())
            sock.bind(("0.0.0.0", dhcp.SERVER_PORT))
        except OSError as e:
            sock.close()
            raise NsdashError(f"cannot serve DHCP on {link}: {e.strerror or e}",
                              "is another DHCP server bound to port 67 on every link? "
                              "stop it, or disable systemd-networkd in the machine") from None
        self._sock: socket.socket | None = sock

    def fileno(self) -> int:
        return self._sock.fileno() if self._sock is not None else -1

    def _allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(RATE, self._tokens + (now - self._last) * RATE)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def serve(self) -> float | None:
        """Answer what has arrived (at most BATCH datagrams; call again while readable).
        Returns how many seconds the caller should stop watching the socket (this second's
        READS are spent), or None."""
        if self._sock is None:
            return None
        for _ in range(BATCH):
            now = time.monotonic()
            if now - self._window >= 1.0:
                self._window, self._reads = now, 0
            if self._reads >= READS:
                return max(0.0, self._window + 1.0 - now)
            try:
                data = self._sock.recv(dhcp.MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return None
            except OSError:
                return None  # the link went away with the machine
            self._reads += 1
            self.received += 1
            reply = dhcp.respond(data, self.offer)
            if reply is None or not self._allow():
                continue
            packet, where = reply
            try:
                self._sock.sendto(packet, where)
                self.replies += 1
            except OSError:
                pass  # a full queue or a link going down: the client asks again
        return None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
