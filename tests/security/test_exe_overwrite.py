"""CVE-2019-5736 in spirit: a joining helper's /proc/PID/exe must not be the host's interpreter.

The attacker (root in the container) holds /proc/PID/exe of the helper and,
once the helper is gone, reopens it for writing.  Without the guard the handle
is the host's python binary itself (shown, not written); with it, it is a
sealed memfd whose writes fail.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

HELPER = ("import os, sys\n"
          "{guard}\n"
          "print(os.readlink('/proc/self/exe'), flush=True)\n"
          "sys.stdin.read()\n")
GUARD = "from nsdash.launcher.sealed_exec import ensure_sealed_exe; ensure_sealed_exe()"


def _start(guard: bool) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", HELPER.format(guard=GUARD if guard else "")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_unguarded_helper_exposes_the_host_interpreter():
    proc, exe = _start(guard=False)
    try:
        fd = os.open(f"/proc/{proc.pid}/exe", os.O_PATH)
        try:
            host = os.stat(os.path.realpath(sys.executable))
            got = os.fstat(fd)
            assert (got.st_dev, got.st_ino) == (host.st_dev, host.st_ino)  # the vulnerable handle
        finally:
            os.close(fd)
    finally:
        proc.communicate("")


def test_guarded_helper_exe_is_a_sealed_memfd_that_cannot_be_written():
    host = os.path.realpath(sys.executable)
    before = os.stat(host)
    proc, exe = _start(guard=True)
    assert exe.startswith("/memfd:nsdash-sealed-python")
    handle = os.open(f"/proc/{proc.pid}/exe", os.O_PATH)
    try:
        got = os.fstat(handle)
        assert (got.st_dev, got.st_ino) != (before.st_dev, before.st_ino)
        with pytest.raises(OSError) as running:
            os.open(f"/proc/self/fd/{handle}", os.O_WRONLY)
        assert running.value.errno in (errno.ETXTBSY, errno.EPERM)
        proc.communicate("")  # the helper is gone: the runc attack writes now
        with pytest.raises(OSError) as after:
            fd = os.open(f"/proc/self/fd/{handle}", os.O_WRONLY)
            try:
                os.write(fd, b"\x7fELF-overwritten")
            finally:
                os.close(fd)
        assert after.value.errno == errno.EPERM  # F_SEAL_WRITE
    finally:
        os.close(handle)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    now = os.stat(host)
    assert (now.st_mtime_ns, now.st_size) == (before.st_mtime_ns, before.st_size)


def test_guarded_helper_keeps_its_arguments_and_venv():
    out = subprocess.run([sys.executable, "-c", GUARD + "\nimport sys, pyseccomp; print(sys.argv[1:], sys.prefix)",
                          "a b", "c"], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert out.stdout.split("]")[0] == "['a b', 'c'"
    assert out.stdout.strip().endswith(sys.prefix)
