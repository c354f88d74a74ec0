"""The host's debugging tools, found on PATH, or an error naming the Debian package to install."""

from __future__ import annotations

import shutil
import signal

from nsdash.errors import NsdashError

# tool -> the Debian package that ships it (the project's Makefile installs all three)
PACKAGES = {"strace": "strace", "gdb": "gdb", "perf": "linux-perf"}


class ToolMissing(NsdashError):
    """A debugging tool is not installed on the host."""


def find(tool: str, override: str | None = None) -> str:
    """The path of TOOL (or of OVERRIDE, a path or name given by the user)."""
    path = shutil.which(override or tool)
    if path is None:
        package = PACKAGES.get(tool, tool)
        raise ToolMissing(f"{override or tool} is not installed on the host",
                          f"install Debian's '{package}' package (apt-get install {package})")
    return path


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def interrupt_on_hangup() -> None:
    """Let a hang-up (SIGHUP: the terminal or the -H connection went) and SIGTERM end a tool run
    the way Ctrl-C does.  strace and perf run in sessions of their own, so the signal reaches
    only nsdash: by default it would die and leave strace attached; as an interrupt, nsdash
    detaches strace / stops perf first."""
    for signum in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, _interrupt)
