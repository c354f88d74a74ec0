"""Where nsdash keeps its state, and where images are looked up."""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_DIRS = (Path("/var/lib/machines"), Path("/usr/local/lib/machines"), Path("/usr/lib/machines"))


def state_root() -> Path:
    """The state directory (/run/nsdash), overridable with NSDASH_STATE_DIR for tests."""
    return Path(os.environ.get("NSDASH_STATE_DIR", "/run/nsdash"))


def machine_dir(name: str) -> Path:
    """A machine's own state directory: state file, control socket, console log."""
    return state_root() / "machines" / name
