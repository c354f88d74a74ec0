"""The host's debugging tools, found on PATH, or an error naming the Debian package to install."""

from __future__ import annotations

import shutil

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
