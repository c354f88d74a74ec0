"""The container's system-call filter, compiled in the parent with libseccomp.

The child imports only the standard library, so the filter is built here (in
the supervisor, before clone) and handed over as raw classic-BPF bytes; the
child installs them with prctl(PR_SET_SECCOMP) right before exec (see
nsdash.launcher.sandbox.install_seccomp).

Policy, in the spirit of systemd-nspawn: the calls that reach kernel state no
namespace isolates (the keyring, kernel modules, kexec, swap, the clock, BPF,
perf, file handles that bypass the mount tree, raw port I/O, process
accounting) fail with EPERM, and so does ioctl(TIOCSTI/TIOCLINUX) keystroke
injection; audit netlink sockets are refused with
EAFNOSUPPORT as nspawn does, because audit is not namespaced.  A capability
the user adds on purpose (--capability=CAP_SYS_TIME, ...) opens its group
again, as nspawn does.  reboot(2) stays allowed: in a PID namespace the kernel
turns it into killing the namespace's init, which is how a container reboots.

nspawn uses an allow-list; nsdash uses a deny-list over the same dangerous
groups, so an unusual but harmless call in a guest never breaks it, while
everything nspawn documents as blocked is blocked.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterable

import pyseccomp

NETLINK_AUDIT = 9
TIOCSTI = 0x5412  # push a byte into a terminal's input queue
TIOCLINUX = 0x541C  # the virtual console's selection paste can do the same

# Calls that always fail: the keyring is shared with the host (not namespaced)
# and so is the kernel's handle-based file lookup that escaped Docker once
# ("shocker").
ALWAYS_DENIED: tuple[str, ...] = (
    "keyctl", "add_key", "request_key",
    "open_by_handle_at",
    "bpf", "perf_event_open",
    "lookup_dcookie", "uselib", "_sysctl", "nfsservctl",
)

# Groups a deliberately added capability opens again (nspawn's rule).
BY_CAPABILITY: dict[str, tuple[str, ...]] = {
    "CAP_SYS_MODULE": ("init_module", "finit_module", "delete_module"),
    "CAP_SYS_BOOT": ("kexec_load", "kexec_file_load"),
    "CAP_SYS_ADMIN": ("swapon", "swapoff"),
    "CAP_SYS_TIME": ("settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm", "pciconfig_iobase", "pciconfig_read", "pciconfig_write"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYSLOG": ("syslog",),
}

# CAP_SYS_ADMIN is in nspawn's default set, yet nspawn still refuses swap:
# only an *added* capability opens a group, never a default one.
_DEFAULT_KEEPS_DENIED = frozenset({"CAP_SYS_ADMIN"})


def denied_syscalls(added_capabilities: Iterable[str] = ()) -> tuple[str, ...]:
    """The names that fail with EPERM, given the capabilities the user added."""
    added = {c.upper() for c in added_capabilities}
    out = list(ALWAYS_DENIED)
    for cap, calls in BY_CAPABILITY.items():
        if cap not in added or cap in _DEFAULT_KEEPS_DENIED:
            out.extend(calls)
    return tuple(out)


def _secondary_arches() -> tuple[int, ...]:
    """32-bit ABIs that run on this machine; the rules must cover them too."""
    machine = os.uname().machine
    if machine == "x86_64":
        return (pyseccomp.Arch.X86, pyseccomp.Arch.X32)
    if machine == "aarch64":
        return (pyseccomp.Arch.ARM,)
    return ()


def build_filter(added_capabilities: Iterable[str] = ()) -> pyseccomp.SyscallFilter:
    """The libseccomp filter object (default: allow)."""
    flt = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for arch in _secondary_arches():
        # OSError: the kernel or libseccomp lacks that ABI, so nothing to cover.
        with contextlib.suppress(OSError):
            flt.add_arch(arch)
    eperm = pyseccomp.ERRNO(errno.EPERM)
    for name in denied_syscalls(added_capabilities):
        try:
            flt.add_rule(eperm, name)
        except (OSError, ValueError, RuntimeError):
            # Not a call on this architecture (stime on x86_64, iopl on arm64).
            continue
    # Keystroke injection into whatever terminal the container can reach (a
    # --console=pipe on the user's TTY, a passed-in fd): refused outright, like
    # bubblewrap and Docker.  The kernel compares only the low 32 bits of the
    # request, so must we (CVE-2019-10063: high bits set slipped past flatpak).
    for request in (TIOCSTI, TIOCLINUX):
        flt.add_rule(eperm, "ioctl", pyseccomp.Arg(1, pyseccomp.MASKED_EQ, 0xFFFFFFFF, request))
    flt.add_rule(pyseccomp.ERRNO(errno.EAFNOSUPPORT), "socket",
                 pyseccomp.Arg(0, pyseccomp.EQ, socket.AF_NETLINK),
                 pyseccomp.Arg(2, pyseccomp.EQ, NETLINK_AUDIT))
    return flt


def compile_filter(added_capabilities: Iterable[str] = ()) -> bytes:
    """The filter as classic BPF: an array of struct sock_filter (8 bytes each)."""
    flt = build_filter(added_capabilities)
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
