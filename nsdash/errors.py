"""The one error hierarchy.  The CLI prints these on one line; the dashboard notifies."""

from __future__ import annotations


class NsdashError(Exception):
    """A failure the user can act on: what went wrong, and how to fix it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.title = title or type(self).__name__

    def oneline(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class UsageError(NsdashError):
    """Bad options or arguments."""

    exit_code = 1


class SpecError(UsageError):
    """A container description that cannot be launched as given."""


class PrivilegeError(NsdashError):
    """The operation needs root (or a capability the caller lacks)."""


class MachineNotFound(NsdashError):
    """No machine of that name is known."""


class MachineExists(NsdashError):
    """A machine of that name is already running."""


class ProtocolError(NsdashError):
    """A supervisor's control socket answered something unexpected."""
