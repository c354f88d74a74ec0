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

    def limits(self, name: str, cgroup: str) -> dict[str, str]:
        """CPUQuota, MemoryMax, MemoryHigh and TasksMax in force (machines/units.py)."""
        from nsdash.machines import units

        return units.limits(name, cgroup)

    def set_limits(self, name: str, cgroup: str, assignments: list[str]) -> None:
        """Change them live: through systemd where it made the scope, else cgroupfs."""
        from nsdash.machines import units

        for assignment in assignments:
            units.set_limit(name, cgroup, assignment)

    def images(self) -> dict[str, Path]:
        from nsdash.machines import client

        return {p.name: p for p in client.list_images()}

    def attach(self, name: str, rows: int, cols: int) -> Session:
        from nsdash.machines import client

        return client.attach(name, rows=rows, cols=cols)
