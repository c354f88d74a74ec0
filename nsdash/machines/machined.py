"""systemd-machined over the system bus: register ours.

(Its machines are listed from its state files, by machines/registry.py: no round trip.)

Registration follows `systemd-nspawn --keep-unit`: RegisterMachineWithNetwork
with the running leader, class "container", service "nsdash" and the root
directory.  On reboot the old registration is dropped and we wait until
machined has forgotten it before registering the new leader, so the second
registration never meets "Machine 'NAME' already exists".
"""

from __future__ import annotations

import time
from typing import Any

from nsdash.errors import NsdashError
from nsdash.machines.state import MachineState
from nsdash.system import dbus
from nsdash.system.kernfiles import read_value

BUS = "org.freedesktop.machine1"
PATH = "/org/freedesktop/machine1"
MANAGER = "org.freedesktop.machine1.Manager"
NO_SUCH_MACHINE = "org.freedesktop.machine1.NoSuchMachine"
EXISTS_HINTS = ("already exists", "org.freedesktop.machine1.MachineExists", "FileExists")


def _manager(member: str, signature: str = "", body: list[Any] | None = None) -> list[Any]:
    return dbus.call(BUS, PATH, MANAGER, member, signature, body)


def reachable() -> bool:
    try:
        _manager("ListMachines")
        return True
    except dbus.BusError:
        return False


class Registration:
    """One machine's registration, re-made on every boot."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.active = False

    @classmethod
    def open(cls, required: bool) -> Registration | None:
        """A Registration when machined answers; None (auto) or an error (yes) when not."""
        try:
            _manager("ListMachines")
        except dbus.BusError as e:
            if required:
                raise NsdashError(f"--register=yes, but systemd-machined is not reachable ({e.message})",
                                  "start systemd-machined and the system bus, or use --register=auto or no") from None
            return None
        return cls()

    def register(self, state: MachineState, timeout: float = 5.0) -> None:
        uuid = bytes.fromhex(state.uuid) if state.uuid else b""
        ifindices = [_ifindex(n) for n in state.netif]
        body = [state.name, uuid, "nsdash", "container", state.leader or 0, state.root,
                [i for i in ifindices if i]]
        deadline = time.monotonic() + timeout
        while True:
            try:
                _manager("RegisterMachineWithNetwork", "sayssusai", body)
                break
            except dbus.BusError as e:
                if not any(h in e.name or h in e.message for h in EXISTS_HINTS) or time.monotonic() > deadline:
                    raise NsdashError(f"systemd-machined refused to register '{state.name}': {e.message}",
                                      "see 'machinectl list'; use --register=no to run unregistered") from None
                self._forget(state.name, timeout=1.0)
        self.name = state.name
        self.active = True

    def ensure(self, state: MachineState) -> bool:
        """Register again if machined has forgotten the machine; True if it had."""
        try:
            _manager("GetMachine", "s", [state.name])
            return False
        except dbus.BusError as e:
            if e.name != NO_SUCH_MACHINE:
                return False
        self.register(state)
        return True

    def unregister(self) -> None:
        if self.name is None or not self.active:
            return
        self._forget(self.name)
        self.active = False

    @staticmethod
    def _forget(name: str, timeout: float = 5.0) -> None:
        try:
            _manager("UnregisterMachine", "s", [name])
        except dbus.BusError as e:
            if e.name != NO_SUCH_MACHINE:
                return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                _manager("GetMachine", "s", [name])
            except dbus.BusError:
                return
            time.sleep(0.05)


def _ifindex(name: str) -> int:
    value = read_value(f"/sys/class/net/{name}/ifindex")
    return int(value) if value is not None and value.isdigit() else 0
