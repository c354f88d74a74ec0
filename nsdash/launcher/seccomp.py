"""The container's system-call filter, compiled in the parent with libseccomp.

The child imports only the standard library, so the filters are built here
(in the supervisor, before clone) and handed over as raw classic-BPF bytes;
the child installs them with prctl(PR_SET_SECCOMP) right before exec (see
nsdash.launcher.sandbox.install_seccomp).

Policy, as systemd-nspawn's: an allow-list (nsdash.launcher.syscall_groups).
A call the table knows but the policy does not allow fails with EPERM; a call
newer than the table fails with ENOSYS, so a libc that tries a new call first
falls back to the old one instead of failing.  --system-call-filter adds to
the allowed set or, with '~', takes from it.

Two filters are stacked, as nspawn does, because libseccomp drops conditional
rules on a call that also has an unconditional one: the allow-list itself,
and a guard whose default is to allow, which refuses keystroke injection
(ioctl TIOCSTI/TIOCLINUX) and audit netlink sockets (EAFNOSUPPORT, which
audit userspace reads as "audit is off"; audit is not namespaced).  The
kernel runs both and the stricter answer wins.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterable

import pyseccomp

from nsdash.launcher import syscall_groups

NETLINK_AUDIT = 9
TIOCSTI = 0x5412  # push a byte into a terminal's input queue
TIOCLINUX = 0x541C  # the virtual console's selection paste can do the same

# libseccomp's "optimise" attribute: 2 is a binary search over call numbers,
# which keeps a 400-rule filter to a few comparisons per call.
_OPTIMIZE_BINARY_TREE = 2


def _secondary_arches() -> tuple[int, ...]:
    """32-bit ABIs that run on this machine; the rules must cover them too."""
    machine = os.uname().machine
    if machine == "x86_64":
        return (pyseccomp.Arch.X86, pyseccomp.Arch.X32)
    if machine == "aarch64":
        return (pyseccomp.Arch.ARM,)
    return ()


def _new_filter(default_action: int) -> pyseccomp.SyscallFilter:
    flt = pyseccomp.SyscallFilter(default_action)
    for arch in _secondary_arches():
        # OSError: the kernel or libseccomp lacks that ABI, so nothing to cover.
        with contextlib.suppress(OSError):
            flt.add_arch(arch)
    return flt


def _add(flt: pyseccomp.SyscallFilter, action: int, name: str) -> bool:
    try:
        flt.add_rule(action, name)
    except (OSError, ValueError, RuntimeError):
        # Not a call on any architecture of this filter (vm86 on x86_64,
        # osf_* off Alpha), or newer than libseccomp: the default covers it.
        return False
    return True


def allow_list_filter(allowed: frozenset[str]) -> pyseccomp.SyscallFilter:
    """Default ENOSYS; ALLOWED pass; every other known call EPERM."""
    flt = _new_filter(pyseccomp.ERRNO(errno.ENOSYS))
    with contextlib.suppress(OSError, ValueError, RuntimeError):
        flt.set_attr(pyseccomp.Attr.CTL_OPTIMIZE, _OPTIMIZE_BINARY_TREE)
    for name in sorted(allowed):
        _add(flt, pyseccomp.ALLOW, name)
    eperm = pyseccomp.ERRNO(errno.EPERM)
    for name in sorted(syscall_groups.KNOWN - allowed):
        _add(flt, eperm, name)
    return flt


def guard_filter() -> pyseccomp.SyscallFilter:
    """Default ALLOW; TIOCSTI/TIOCLINUX EPERM, audit netlink sockets EAFNOSUPPORT.

    A 32-bit x86 program can still make the socket through socketcall(2), whose
    arguments lie in memory where no filter sees them (refusing socketcall
    would break 32-bit glibc's sockets); the kernel refuses audit requests from
    outside the initial PID namespace anyway, so this rule is what audit
    userspace reads, not the barrier.
    """
    flt = _new_filter(pyseccomp.ALLOW)
    eperm = pyseccomp.ERRNO(errno.EPERM)
    # Keystroke injection into whatever terminal the container can reach (a
    # --console=pipe on the user's TTY, a passed-in fd): refused outright, like
    # bubblewrap and Docker.  The kernel compares only the low 32 bits of the
    # request, so must we (CVE-2019-10063: high bits set slipped past flatpak).
    for request in (TIOCSTI, TIOCLINUX):
        flt.add_rule(eperm, "ioctl", pyseccomp.Arg(1, pyseccomp.MASKED_EQ, 0xFFFFFFFF, request))
    # socket() takes family and protocol as int: again only the low 32 bits count.
    flt.add_rule(pyseccomp.ERRNO(errno.EAFNOSUPPORT), "socket",
                 pyseccomp.Arg(0, pyseccomp.MASKED_EQ, 0xFFFFFFFF, socket.AF_NETLINK),
                 pyseccomp.Arg(2, pyseccomp.MASKED_EQ, 0xFFFFFFFF, NETLINK_AUDIT))
    return flt


def _export(flt: pyseccomp.SyscallFilter) -> bytes:
    r, w = os.pipe()
    chunks: list[bytes] = []
    try:
        # A filter is a few KiB, far below a pipe's 64 KiB buffer, so the write
        # completes before we read; read in a loop anyway.
        with os.fdopen(w, "wb", closefd=True) as wf:
            flt.export_bpf(wf)
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
    finally:
        os.close(r)
    program = b"".join(chunks)
    if not program or len(program) % 8:
        raise RuntimeError(f"libseccomp exported a malformed filter ({len(program)} bytes)")
    return program


# --suppress-sync: these succeed without doing anything, as under nspawn's seccomp_suppress_sync
SYNC_CALLS = ("sync", "syncfs", "fsync", "fdatasync", "msync", "sync_file_range", "sync_file_range2")


def suppress_sync_filter() -> pyseccomp.SyscallFilter:
    """Default ALLOW; the sync family returns 0 at once.  (O_SYNC/O_DSYNC opens are left
    alone: a filter cannot rewrite flags, and refusing them would break programs.)"""
    flt = _new_filter(pyseccomp.ALLOW)
    for name in SYNC_CALLS:
        _add(flt, pyseccomp.ERRNO(0), name)
    return flt


def compile_filters(capabilities: Iterable[str] = (), allow: tuple[str, ...] = (),
                    deny: tuple[str, ...] = (), suppress_sync: bool = False) -> tuple[bytes, ...]:
    """The filters as classic BPF (arrays of 8-byte struct sock_filter), in install order.

    CAPABILITIES is the container's bounding set (it opens the groups tied to
    a capability); ALLOW and DENY come from --system-call-filter.  The guard
    goes first: the allow-list may deny prctl/seccomp, which loading the
    second filter needs.  SUPPRESS_SYNC adds --suppress-sync's filter.
    """
    allowed = syscall_groups.allowed_calls(frozenset(c.upper() for c in capabilities), allow, deny)
    sync = (_export(suppress_sync_filter()),) if suppress_sync else ()
    return (_export(guard_filter()), *sync, _export(allow_list_filter(allowed)))


def denied_syscalls(capabilities: Iterable[str] | None = None, allow: tuple[str, ...] = (),
                    deny: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The known calls that fail with EPERM for a container whose bounding set is
    CAPABILITIES (None: the default set), sorted; tests attack with this."""
    if capabilities is None:
        from nsdash.launcher.plan import DEFAULT_CAPABILITIES

        capabilities = DEFAULT_CAPABILITIES
    allowed = syscall_groups.allowed_calls(frozenset(c.upper() for c in capabilities), allow, deny)
    return tuple(sorted(syscall_groups.KNOWN - allowed))
