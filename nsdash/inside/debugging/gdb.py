"""gdb from the host on a machine's process, reading the machine's files inside the machine.

The inferior's shared libraries are named in its memory as the machine sees
them (/lib/x86_64-linux-gnu/libc.so.6).  gdb's sysroot is `target:`: gdb
opens each such file (and the guest's separate debug files, by build ID)
through a helper that has joined the inferior's mount namespace, so a path
resolves in the machine's root as the machine resolves it.  A sysroot of
/proc/LEADER/root would not be confined: an absolute symlink there (say
libc.so.6 -> /root/x) resolves against gdb's own root, the host's, and gdb
would read the host's file as the guest's library.  The host's own
/usr/lib/debug is searched too, by build ID, for guests that run the host's
distribution.

gdb runs as root on the host and would otherwise run code the guest wrote:
auto-loaded gdb/Python scripts next to the guest's libraries, a local
.gdbinit, and libthread_db from the inferior's library directory.  All are
off; thread debugging uses the host's libthread_db ($sdir).  debuginfod is
off so gdb never asks the network, nor the user, at attach time.
"""

from __future__ import annotations

from nsdash.errors import UsageError

_SAFE_SETTINGS = ("set auto-load off", "set auto-load local-gdbinit off",
                  "set libthread-db-search-path $sdir", "set debuginfod enabled off")
SYSROOT = "target:"  # the inferior's own mount namespace, joined by gdb's helper (see above)


def machine_settings() -> list[str]:
    """gdb commands, run before attaching, that read the machine's files inside it and keep gdb from guest code."""
    return [*_SAFE_SETTINGS, f"set sysroot {SYSROOT}", "set debug-file-directory /usr/lib/debug"]


def build_argv(gdb: str, host_pid: int, core: str | None = None, extra: list[str] | None = None) -> list[str]:
    """gdb's command line: -iex settings (before the attach), -p HOST_PID, then the user's words.

    With CORE, gdb writes a core file of the process there (gcore) and detaches.
    """
    argv = [gdb, "-q"]
    for command in machine_settings():
        argv += ["-iex", command]
    argv += ["-p", str(host_pid)]
    if core is not None:
        if "\n" in core or not core.strip():
            raise UsageError(f"'{core}' is not a usable core file name", "give a path on the host")
        argv += ["--batch", "-ex", f"gcore {core}"]
    return argv + list(extra or [])
