"""The spawn form's rules, pure: field values in, a ContainerSpec or the first problem out."""

from __future__ import annotations

import shlex
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from nsdash.errors import NsdashError
from nsdash.launcher.spec import ContainerSpec
from nsdash.machines.registry import validate_name

NETWORKS = ("host", "private", "veth")
LINK_JOURNAL = ("no", "try-guest", "try-host", "guest", "host", "auto")


@dataclass(frozen=True)
class SpawnForm:
    tree: str  # a directory, or an image name from /var/lib/machines
    name: str = ""
    boot: bool = True
    command: str = ""
    network: str = "host"
    link_journal: str = "no"
    ephemeral: bool = False


class FormError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def default_name(tree: str) -> str:
    return Path(tree.rstrip("/")).name if tree else ""


def to_spec(form: SpawnForm, images: dict[str, Path], running: Collection[str]) -> ContainerSpec:
    """Check every field; raise FormError naming the field at the first problem."""
    tree = form.tree.strip()
    if not tree:
        raise FormError("tree", "choose an image or type the path of an OS tree")
    directory = images.get(tree) or Path(tree)
    if not directory.is_absolute():
        raise FormError("tree", f"'{tree}' is neither an image in /var/lib/machines nor an absolute path")
    name = form.name.strip() or default_name(str(directory))
    try:
        validate_name(name)
    except NsdashError as e:
        raise FormError("name", e.oneline()) from None
    if name in running:
        raise FormError("name", f"a machine named '{name}' is already running; pick another name")
    try:
        command = tuple(shlex.split(form.command))
    except ValueError as e:
        raise FormError("command", f"the command does not parse: {e}") from None
    if not form.boot and not command:
        raise FormError("command", "give a command to run, or switch on boot")
    if form.network not in NETWORKS:
        raise FormError("network", f"network must be one of {', '.join(NETWORKS)}")
    if form.link_journal not in LINK_JOURNAL:
        raise FormError("link_journal", f"link journal must be one of {', '.join(LINK_JOURNAL)}")
    return ContainerSpec(directory=directory, machine=name, boot=form.boot, command=command,
                         private_network=form.network in ("private", "veth"),
                         network_veth=form.network == "veth", link_journal=form.link_journal,
                         ephemeral=form.ephemeral)
