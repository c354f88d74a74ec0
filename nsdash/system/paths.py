"""Where nsdash keeps its state, and where images are looked up."""

from __future__ import annotations

from nsdash.system import bareos

TYPE_CHECKING = False  # mypy reads this as True; pathlib is imported by the functions that
if TYPE_CHECKING:      # make Paths, not by cgls and cgtop, which import this module and call none
    from pathlib import Path

# The one search order for images, nspawn's -M and machinectl's (systemd's
# discover-image.c, /var/lib/container being its legacy home); /var/lib/machines
# is where clone, import and create put new images.
IMAGE_SEARCH = ("/etc/machines", "/run/machines", "/var/lib/machines", "/var/lib/container",
                "/usr/local/lib/machines", "/usr/lib/machines")


def image_dir_names() -> tuple[str, ...]:
    """Where images are looked up, in order; NSDASH_IMAGE_PATH (colon-separated) overrides it
    for tests, its first entry then being where new images go."""
    env = bareos.getenv("NSDASH_IMAGE_PATH")
    return tuple(p for p in (env.split(":") if env else IMAGE_SEARCH) if p)


def image_dirs() -> tuple[Path, ...]:
    """image_dir_names() as Paths."""
    from pathlib import Path

    return tuple(Path(p) for p in image_dir_names())


def image_home() -> Path:
    """Where new images (clone, import-tar, create) are made: /var/lib/machines."""
    from pathlib import Path

    return image_dirs()[0] if bareos.getenv("NSDASH_IMAGE_PATH") else Path("/var/lib/machines")


def state_path() -> str:
    """The state directory (/run/nsdash), overridable with NSDASH_STATE_DIR for tests."""
    state = bareos.getenv("NSDASH_STATE_DIR")
    return "/run/nsdash" if state is None else state


def state_root() -> Path:
    """state_path() as a Path."""
    from pathlib import Path

    return Path(state_path())


def machine_path(name: str) -> str:
    """A machine's own state directory: state file, control socket, console log.  As a string
    for the readers `list` and `status` run (pathlib imports re, urllib and ipaddress)."""
    return bareos.join(state_path(), "machines", name)


def machine_dir(name: str) -> Path:
    """machine_path(NAME) as a Path."""
    from pathlib import Path

    return Path(machine_path(name))
