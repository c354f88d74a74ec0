"""A bus planted inside a machine by its "root": a listener at the guest's system bus socket
that the host's side connects to (tests/security's bus attacks)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable


def guest_bus_path(leader: int) -> str:
    """The guest's system bus socket, seen through its leader's root (its directory made)."""
    path = f"/proc/{leader}/root/run/dbus/system_bus_socket"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


class RawBus:
    """A listener at PATH (inside the machine) that hands each connection to SCRIPT(conn, bus)."""

    def __init__(self, path: str, script: Callable[[socket.socket, RawBus], None]) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.script = script
        self.sent = 0  # bytes the host's side took from us
        self.stop = threading.Event()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.conns: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, EOFError):  # the host hung up: what the attack wants
            self.script(conn, self)

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        for t in [self.thread, *self.threads]:
            t.join(10)
