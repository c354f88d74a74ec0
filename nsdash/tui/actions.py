"""What the dashboard does to machines: the launcher client, nothing else.

Each call blocks (it waits for the machine to stop or come back), so the app
runs them in thread workers and reports the outcome as a notification.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # not loaded with the dashboard: only an action needs them
    from nsdash.launcher.spec import ContainerSpec
    from nsdash.machines.create import Job, Plan, Step
    from nsdash.tui.console.connection import Session
    from nsdash.tui.messages import ImageRow

SIZE_EVERY = 30.0  # seconds between two measurements of one image's size (du walks the whole tree)


class ImageReader(Protocol):
    """What the Images panel lists images with while it is open (LauncherActions.image_reader):
    rows() every refresh, from the panel's worker thread; close() as the panel closes."""

    def rows(self) -> tuple[ImageRow, ...]: ...

    def close(self) -> None: ...


class LocalImages:
    """This host's images: each refresh reads them afresh; nothing is held between refreshes."""

    def __init__(self, rows: Callable[[], tuple[ImageRow, ...]]) -> None:
        self.rows = rows

    def close(self) -> None:
        pass


class LauncherActions:
    def __init__(self) -> None:
        # (path, inode, mtime) -> (bytes, when measured): the Images panel's sizes
        self._sizes: dict[tuple[str, int, float], tuple[int | None, float]] = {}
        self._sizes_lock = threading.Lock()

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
        """CPUQuota, MemoryMax, MemoryHigh and TasksMax in force (machines/limits.py)."""
        from nsdash.machines import limits

        return limits.limits(name, cgroup)

    def set_limits(self, name: str, cgroup: str, assignments: list[str]) -> None:
        """Change them live: through systemd where it made the scope, else cgroupfs."""
        from nsdash.machines import units

        for assignment in assignments:
            units.set_limit(name, cgroup, assignment)

    def spawn_host(self, key: str | None) -> str | None:
        """Where the dashboard's spawn goes: None, this host (RemoteActions: a remote one)."""
        return None

    def images(self, host: str | None = None) -> dict[str, Path]:
        """The images for the spawn form (HOST: only over -H, RemoteActions)."""
        from nsdash.machines import client

        return {p.name: p for p in client.list_images()}

    def attach(self, name: str, rows: int, cols: int) -> Session:
        from nsdash.machines import client

        return client.attach(name, rows=rows, cols=cols)

    # ------------------------------------------------------------ images (nsdash.machines.images)

    def image_reader(self) -> ImageReader:
        """The Images panel's reader (over -H, RemoteActions: a session kept per host)."""
        return LocalImages(self.image_rows)

    def image_rows(self) -> tuple[ImageRow, ...]:
        """Every image with its size and the machines running on it (blocks: du, /proc)."""
        from nsdash.machines import images
        from nsdash.tui.messages import ImageRow

        found = images.discover(crtime=False)
        users = images.users_of(found)
        return tuple(ImageRow(
            name=image.name, type=image.type, read_only=image.read_only, size=self._size_of(image),
            mtime=image.mtime, path=str(image.path), used_by=tuple(users[image.name]),
            os=image.os_release.get("PRETTY_NAME") or image.os_release.get("NAME") or "-") for image in found)

    def _size_of(self, image) -> int | None:
        from nsdash.machines import images

        try:
            st = os.stat(image.path)
        except OSError:
            return None
        key, now = (str(image.path), st.st_ino, st.st_mtime), time.monotonic()
        with self._sizes_lock:
            known = self._sizes.get(key)
        if known is not None and now - known[1] < SIZE_EVERY:
            return known[0]
        size = images.disk_usage(image)
        with self._sizes_lock:
            self._sizes = {k: v for k, v in self._sizes.items() if k[0] != key[0]}
            self._sizes[key] = (size, now)
        return size

    def boot_image(self, name: str, ephemeral: bool = False) -> str:
        """Boot image NAME detached as `nsdash start NAME` does (the one start spec), or an
        ephemeral copy of it; the machine's name."""
        from nsdash.machines import client

        spec = client.start_spec(name, ephemeral=ephemeral)
        client.spawn(spec, detach=True, notice=None)
        return spec.machine

    def clone_image(self, name: str, new: str) -> None:
        from nsdash.machines import images

        images.clone(name, new)

    def rename_image(self, name: str, new: str) -> None:
        from nsdash.machines import images

        images.rename(name, new)

    def remove_image(self, name: str) -> None:
        from nsdash.machines import images

        images.remove(name)

    def create_plan(self, name: str, distribution: str, release: str, packages: str) -> Plan:
        """Check a create (the name, the release, the mirror: may take seconds on the network)."""
        from nsdash.machines import create

        return create.plan(name, distribution, release or None, None, packages)

    def create_run(self, plan: Plan, step: Step, job: Job) -> Path:
        from nsdash.machines import create

        return create.run(plan, step, job)
