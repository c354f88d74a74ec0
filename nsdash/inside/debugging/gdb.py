"""gdb from the host on a machine's process, with the machine's root as its sysroot.

The inferior's shared libraries are named in its memory as the machine sees
them (/lib/x86_64-linux-gnu/libc.so.6); `set sysroot /proc/LEADER/root` makes
gdb read them, and their separate debug files (the guest's /usr/lib/debug,
then the host's, matched by build ID), from the machine's tree.

gdb runs as root on the host and would otherwise run code the guest wrote:
auto-loaded gdb/Python scripts next to the guest's libraries, a local
.gdbinit, and libthread_db from the inferior's library directory.  All are
off; thread debugging uses the host's libthread_db ($sdir).  debuginfod is
off so gdb never asks the network, nor the user, at attach time.
"""

from __future__ import annotations

from pathlib import Path

from nsdash.errors import UsageError

_SAFE_SETTINGS = ("set auto-load off", "set auto-load local-gdbinit off",
                  "set libthread-db-search-path $sdir", "set debuginfod enabled off")


def machine_settings(root: Path) -> list[str]:
    """gdb commands, run before attaching, that point gdb at the machine's tree and keep it from guest code."""
    return [*_SAFE_SETTINGS, f"set sysroot {root}",
            f"set debug-file-directory {root}/usr/lib/debug:/usr/lib/debug"]


def build_argv(gdb: str, root: Path, host_pid: int, core: str | None = None,
               extra: list[str] | None = None) -> list[str]:
    """gdb's command line: -iex settings (before the attach), -p HOST_PID, then the user's words.

    With CORE, gdb writes a core file of the process there (gcore) and detaches.
    """
    argv = [gdb, "-q"]
    for command in machine_settings(root):
        argv += ["-iex", command]
    argv += ["-p", str(host_pid)]
    if core is not None:
        if "\n" in core or not core.strip():
            raise UsageError(f"'{core}' is not a usable core file name", "give a path on the host")
        argv += ["--batch", "-ex", f"gcore {core}"]
    return argv + list(extra or [])
