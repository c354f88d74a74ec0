"""Keys typed in the console pane never wait for a peer that stopped reading (tui/console/connection.py).

Real sessions, real buffers: the local console's client (ConsoleSession) on a socket whose peer
does not read, and a program on a PTY of its own (the gdb pane's PtySession) that is stopped.
Typing returns at once however full they are; what could not wait is dropped whole and counted;
once the peer reads again, every key that was taken arrives, in the order typed.  Before the
sender thread, the UI thread's send blocked in sendall/write: typed.wait() below timed out.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest
from _consolekit import until
from conftest import wait_for

from nsdash.machines import protocol as proto
from nsdash.machines import state as st
from nsdash.machines.client import ConsoleSession
from nsdash.tui.console.connection import SEND_MAX, ConsoleConnection
from nsdash.tui.console.pty_session import PtySession
from nsdash.tui.console.terminal import TerminalModel

KEYS = [b"<%05d>" % i for i in range(4000)]  # 28 KB of keys, each told from the others


def type_all(conn: ConsoleConnection) -> list[bool]:
    """Type KEYS as the UI thread does, in a thread of its own: whether each was taken.  Fails
    when typing them does not end within a bound (the old send blocked on the full peer)."""
    taken: list[bool] = []
    typed = threading.Event()

    def ui() -> None:
        for key in KEYS:
            taken.append(conn.send(key))
        typed.set()

    threading.Thread(target=ui, daemon=True).start()
    assert typed.wait(20), f"typing blocked after {len(taken)} of {len(KEYS)} keys: the peer does not read"
    return taken


def check_taken(conn: ConsoleConnection, taken: list[bool]) -> bytes:
    """What the peer must get (the keys taken, in order); the rest was dropped and counted."""
    assert not all(taken), "the peer never filled: nothing was held back"
    dropped = [key for key, ok in zip(KEYS, taken, strict=True) if not ok]
    assert conn.dropped == sum(map(len, dropped))
    return b"".join(key for key, ok in zip(KEYS, taken, strict=True) if ok)


class _Control:
    """The part of client.Control a ConsoleSession uses: its socket, the bytes read past the reply."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lines = proto.LineReader()

    def close(self) -> None:
        self.sock.close()


def test_keys_to_a_console_socket_its_peer_does_not_read_never_block_and_arrive_in_order():
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # full after a few KB, not 200
    session = ConsoleSession(_Control(ours))  # sendall() frames, as to a supervisor
    ends: list[str] = []
    conn = ConsoleConnection("stuck", TerminalModel(), ends.append, attach=lambda name, rows, cols: session)
    conn.start()
    try:
        taken = type_all(conn)
        expected = check_taken(conn, taken)
        frames, got = proto.FrameReader(), bytearray()

        def read_some() -> bool:
            while socket_readable(peer):
                for kind, payload in frames.feed(peer.recv(65536)):
                    assert kind == proto.FRAME_INPUT
                    got.extend(payload)
            return len(got) >= len(expected)

        assert until(read_some), f"{len(got)} of {len(expected)} bytes arrived"
        assert bytes(got) == expected  # every key taken, in the order typed
        assert until(lambda: conn._pending == 0)  # the sender is back from its last send
        assert conn.send(b"after")  # keys are taken again
        assert until(lambda: read_some() and got.endswith(b"after"))
    finally:
        conn.close()
        peer.close()
    assert ends == []


def socket_readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def fill(fd: int) -> bytes:
    """Write to FD (a PTY's master) until it takes no more: what it took."""
    blocking = os.get_blocking(fd)
    os.set_blocking(fd, False)
    taken = 0
    try:
        while True:
            taken += os.write(fd, b"." * 512)
    except BlockingIOError:
        return b"." * taken
    finally:
        os.set_blocking(fd, blocking)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_keys_to_a_program_that_stopped_reading_its_pty_never_block_and_arrive_in_order(tmp_path):
    out = tmp_path / "typed"
    # Raw and without echo: the PTY passes every byte and fills (about 20 KB) rather than drop;
    # stopped until the test lets it read.
    argv = ["sh", "-c", f"stty raw -echo; kill -STOP $$; exec cat > {out}"]
    sessions: list[PtySession] = []

    def attach(name: str, rows: int, cols: int) -> PtySession:
        sessions.append(PtySession(argv, rows, cols))
        return sessions[0]

    ends: list[str] = []
    conn = ConsoleConnection("stopped", TerminalModel(), ends.append, attach=attach)
    conn.start()
    try:
        assert until(lambda: sessions and _state(sessions[0].process.pid) == "T"), "the program did not stop"
        pid = sessions[0].process.pid
        filled = fill(sessions[0].master)  # full before the first key, however soon the sender runs
        taken = type_all(conn)
        expected = filled + check_taken(conn, taken)
        assert len(expected) > SEND_MAX
        os.kill(pid, signal.SIGCONT)
        assert until(lambda: out.exists() and out.stat().st_size >= len(expected)), "the keys did not arrive"
        assert out.read_bytes() == expected
    finally:
        if sessions:
            sessions[0].process.kill()  # cat reads on; a stopped one too: SIGKILL ends either
        conn.close()
    assert ends == []


def _senders(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"console-send-{name}"]


def _in_send(name: str) -> bool:
    """Whether NAME's sender is in its session's send (else it waits for keys, or has ended)."""
    frames = sys._current_frames()
    return any(f.name == "send" for t in _senders(name) if t.ident in frames
               for f in traceback.extract_stack(frames[t.ident]))


def test_closing_a_console_whose_peer_stopped_reading_ends_its_sender():
    """The sender waits in a send when the pane closes: a socket's shutdown ends that send; a
    PTY's write would have waited for good (past the program's end and the master's close: the
    write holds the PTY), so PtySession waits for room a while at a time and gives up on close."""
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    session = ConsoleSession(_Control(ours))
    sock_conn = ConsoleConnection("stuck-sock", TerminalModel(), [].append, attach=lambda name, rows, cols: session)
    argv = ["sh", "-c", "stty raw -echo; kill -STOP $$; exec cat > /dev/null"]
    ptys: list[PtySession] = []
    pty_conn = ConsoleConnection("stuck-pty", TerminalModel(), [].append,
                                 attach=lambda name, rows, cols: ptys.append(PtySession(argv, rows, cols)) or ptys[0])
    try:
        for conn in (sock_conn, pty_conn):
            conn.start()
            if conn is pty_conn:
                assert until(lambda: ptys and _state(ptys[0].process.pid) == "T"), "the program did not stop"
                fill(ptys[0].master)
            taken = type_all(conn)
            check_taken(conn, taken)
            assert until(lambda conn=conn: _in_send(conn.name)), "the sender is not in a send"
            if conn is pty_conn:
                ptys[0].process.kill()  # gone: its PTY still takes no byte more
            conn.close()
            assert until(lambda conn=conn: not _senders(conn.name)), f"{conn.name}: the sender still waits"
    finally:
        for p in ptys:
            p.process.kill()
        sock_conn.close()
        pty_conn.close()
        peer.close()


def test_a_send_that_fails_ends_the_console_from_the_sender_outside_the_send_lock():
    """on_end waits for the UI thread, which may be in send() for the lock (review26: called
    under it, the dashboard hung); here on_end takes that lock itself, as the UI thread would."""

    class Broken:
        def read(self, timeout=None):
            time.sleep(min(timeout or 0.0, 0.01))
            return b"", []

        def send(self, data: bytes) -> None:
            raise BrokenPipeError(32, "Broken pipe")

        def resize(self, rows: int, cols: int) -> None:
            pass

        def close(self) -> None:
            pass

    ends: list[tuple[str, bool]] = []

    def on_end(reason: str) -> None:
        typed = threading.Event()  # the UI thread's send, which takes the send lock
        threading.Thread(target=lambda: (conn.send(b"y"), typed.set()), daemon=True).start()
        ends.append((reason, typed.wait(10)))

    conn = ConsoleConnection("broken", TerminalModel(), on_end, attach=lambda name, rows, cols: Broken())
    conn.start()
    try:
        assert conn.send(b"x")
        assert until(lambda: ends), "the failed send did not end the console"
        assert ends == [("console connection lost: [Errno 32] Broken pipe", True)]
    finally:
        conn.close()


@pytest.mark.integration
def test_keys_to_a_machine_whose_supervisor_stopped_never_block_and_reach_the_guest_in_order(
        detached, busybox_tree, machine_name):
    """The real path: the pane's connection attached through the supervisor's socket to a
    BusyBox machine whose shell copies its console (raw) into /typed.  A supervisor that stops
    (SIGSTOP: what a hung one does) fills the socket, typing still returns at once; once it
    goes on, every key taken reaches the guest in order.  (A guest that stops reading does not
    fill the socket: the supervisor writes the PTY without waiting and drops what it does
    not take, as a tty's input queue would.)"""
    typed = busybox_tree / "typed"
    detached("-D", str(busybox_tree), "/bin/sh", "-c", "stty raw -echo; exec cat > /typed")
    wait_for(typed.exists, what="the guest's cat")
    state = st.read_state(st.machine_dir(machine_name))
    assert state is not None
    supervisor = state.supervisor
    ends: list[str] = []
    conn = ConsoleConnection(machine_name, TerminalModel(), ends.append)
    conn.start()
    try:
        wait_for(lambda: conn._session is not None, what="the console attached")
        os.kill(supervisor, signal.SIGSTOP)
        wait_for(lambda: _state(supervisor) == "T", what="the supervisor stopped")
        taken = type_all(conn)
        expected = check_taken(conn, taken)
        os.kill(supervisor, signal.SIGCONT)
        wait_for(lambda: typed.stat().st_size >= len(expected), what="the keys in the guest")
        assert typed.read_bytes() == expected
    finally:
        os.kill(supervisor, signal.SIGCONT)
        conn.close()
    assert ends == []
