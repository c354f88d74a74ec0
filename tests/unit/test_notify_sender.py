"""The notify socket's sender check (launcher.container._notify_sender) against the kernel's
own credentials on a socket pair of ours: no root needed."""

from __future__ import annotations

import os
import socket

from nsdash.launcher import container


def _pair(passcred: bool) -> tuple[socket.socket, socket.socket]:
    receiver, sender = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    if passcred:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    return receiver, sender


def _receive(receiver: socket.socket) -> tuple[bytes, int | None, int]:
    data, ancillary, flags, _ = receiver.recvmsg(container.NOTIFY_DATAGRAM, container._NOTIFY_ANCILLARY,
                                                 socket.MSG_CMSG_CLOEXEC)
    return data, container._notify_sender(ancillary), flags


def test_the_kernel_names_the_sender():
    receiver, sender = _pair(passcred=True)
    with receiver, sender:
        sender.send(b"READY=1")
        assert _receive(receiver)[:2] == (b"READY=1", os.getpid())


def test_no_credentials_is_no_sender():
    receiver, sender = _pair(passcred=False)
    with receiver, sender:
        sender.send(b"READY=1")
        assert _receive(receiver)[:2] == (b"READY=1", None)


def test_passed_descriptors_are_not_installed_and_the_sender_still_named():
    receiver, sender = _pair(passcred=True)
    with receiver, sender, open(os.devnull) as null:
        sender.sendmsg([b"FDSTORE=1"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, null.fileno().to_bytes(4, "little"))])
        data, ancillary, flags, _ = receiver.recvmsg(container.NOTIFY_DATAGRAM, container._NOTIFY_ANCILLARY,
                                                     socket.MSG_CMSG_CLOEXEC)
        assert [kind for _, kind, _ in ancillary] == [socket.SCM_CREDENTIALS]  # no descriptor installed
        assert flags & socket.MSG_CTRUNC  # no room was given: the kernel dropped it
        assert (data, container._notify_sender(ancillary)) == (b"FDSTORE=1", os.getpid())


def test_a_longer_datagram_is_marked_truncated():
    receiver, sender = _pair(passcred=True)
    with receiver, sender:
        sender.send(b"STATUS=" + b"x" * container.NOTIFY_DATAGRAM)
        assert _receive(receiver)[2] & socket.MSG_TRUNC


def test_descriptors_that_did_arrive_are_closed():
    fd = os.open(os.devnull, os.O_RDONLY)
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, "little")),
                 (socket.SOL_SOCKET, socket.SCM_CREDENTIALS, container._UCRED.pack(42, 0, 0))]
    assert container._notify_sender(ancillary) == 42
    try:
        os.fstat(fd)
    except OSError:
        pass
    else:
        os.close(fd)
        raise AssertionError("the passed descriptor was left open")
