"""Where nsdash keeps its state, and where images are looked up."""

from __future__ import annotations

import os
from pathlib import Path

# The one search order for images, nspawn's -M and machinectl's (systemd's
# discover-image.c, /var/lib/container being its legacy home); /var/lib/machines
# is where clone, import and create put new images.
IMAGE_SEARCH = (Path("/etc/machines"), Path("/run/machines"), Path("/var/lib/machines"),
                Path("/var/lib/container"), Path("/usr/local/lib/machines"), Path("/usr/lib/machines"))


def image_dirs() -> tuple[Path, ...]:
    """Where images are looked up, in order; NSDASH_IMAGE_PATH (colon-separated) overrides it
    for tests, its first entry then being where new images go."""
    env = os.environ.get("NSDASH_IMAGE_PATH")
    if env:
        return tuple(Path(p) for p in env.split(":") if p)
    return IMAGE_SEARCH


def image_home() -> Path:
    """Where new images (clone, import-tar, create) are made: /var/lib/machines."""
    return image_dirs()[0] if os.environ.get("NSDASH_IMAGE_PATH") else Path("/var/lib/machines")


def state_root() -> Path:
    """The state directory (/run/nsdash), overridable with NSDASH_STATE_DIR for tests."""
    return Path(os.environ.get("NSDASH_STATE_DIR", "/run/nsdash"))


def machine_dir(name: str) -> Path:
    """A machine's own state directory: state file, control socket, console log."""
    return state_root() / "machines" / name
