"""Where nsdash keeps its state, and where images are looked up."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # mypy reads this as True; pathlib is imported by the functions that
if TYPE_CHECKING:      # make Paths, not by cgls and cgtop, which import this module and call none
    from pathlib import Path

# The one search order for images, nspawn's -M and machinectl's (systemd's
# discover-image.c, /var/lib/container being its legacy home); /var/lib/machines
# is where clone, import and create put new images.
IMAGE_SEARCH = ("/etc/machines", "/run/machines", "/var/lib/machines", "/var/lib/container",
                "/usr/local/lib/machines", "/usr/lib/machines")


def image_dirs() -> tuple[Path, ...]:
    """Where images are looked up, in order; NSDASH_IMAGE_PATH (colon-separated) overrides it
    for tests, its first entry then being where new images go."""
    from pathlib import Path

    env = os.environ.get("NSDASH_IMAGE_PATH")
    return tuple(Path(p) for p in (env.split(":") if env else IMAGE_SEARCH) if p)


def image_home() -> Path:
    """Where new images (clone, import-tar, create) are made: /var/lib/machines."""
    from pathlib import Path

    return image_dirs()[0] if os.environ.get("NSDASH_IMAGE_PATH") else Path("/var/lib/machines")


def state_root() -> Path:
    """The state directory (/run/nsdash), overridable with NSDASH_STATE_DIR for tests."""
    from pathlib import Path

    return Path(state_dir())


def state_dir() -> str:
    """state_root() as a string, for readers on a command's hot path (pathlib costs it 3 ms)."""
    return os.environ.get("NSDASH_STATE_DIR", "/run/nsdash")


def machine_dir(name: str) -> Path:
    """A machine's own state directory: state file, control socket, console log."""
    return state_root() / "machines" / name


def machine_path(name: str) -> str:
    """machine_dir() as a string (see state_dir)."""
    return os.path.join(state_dir(), "machines", name)
