"""What the dashboard does to machines: the launcher client, nothing else.

Each call blocks (it waits for the machine to stop or come back), so the app
runs them in thread workers and reports the outcome as a notification.
"""

from __future__ import annotations

from pathlib import Path

from nsdash.launcher.spec import ContainerSpec
from nsdash.tui.console.connection import Session


class LauncherActions:
    def spawn(self, spec: ContainerSpec) -> None:
        from nsdash.machines import client

        client.spawn(spec, detach=True, notice=None)

    def poweroff(self, name: str) -> None:
        from nsdash.machines import client

        client.poweroff(name, wait=True)

    def reboot(self, name: str) -> None:
        from nsdash.machines import client

        client.reboot(name, wait=True)

    def terminate(self, name: str) -> None:
        from nsdash.machines import client

        client.terminate(name, wait=True)

    def images(self) -> dict[str, Path]:
        from nsdash.machines import client

        return {p.name: p for p in client.list_images()}

    def attach(self, name: str, rows: int, cols: int) -> Session:
        from nsdash.machines import client

        return client.attach(name, rows=rows, cols=cols)
