"""The spawn form's rules: field values in, a ContainerSpec or the first problem out.

The fields become `nsdash spawn` options and go through the one spec builder
(launcher.options.spec_from), so the form accepts and refuses the same names
and reads the image's .nspawn file the same way as the command line.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from nsdash.errors import NsdashError
from nsdash.launcher import names, optable
from nsdash.launcher.options import derive_machine_name, spec_from
from nsdash.launcher.spec import ContainerSpec

# The form's network choice, as the options it stands for.
NETWORKS = {"host": (), "private": ("--private-network",), "veth": ("--network-veth",)}
LINK_JOURNAL = optable.choices_of("link_journal")


@dataclass(frozen=True)
class SpawnForm:
    tree: str  # a directory, or an image name from /var/lib/machines
    name: str = ""
    boot: bool = True
    command: str = ""
    network: str = "host"
    link_journal: str = "no"
    ephemeral: bool = False


@dataclass(frozen=True)
class FarSpawn:
    """The form sent to a remote host (nsdash -H): MACHINE's `spawn --detach ...` (ARGV) on HOST."""

    host: str
    machine: str
    argv: list[str]


class FormError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def default_name(tree: str) -> str:
    return Path(tree.rstrip("/")).name if tree else ""


def to_argv(form: SpawnForm, directory: Path, command: tuple[str, ...]) -> list[str]:
    """The form as `nsdash spawn` options: the dashboard builds its spec the way the command line does."""
    argv = [f"--directory={directory}"]
    if form.name.strip():
        argv.append(f"--machine={form.name.strip()}")
    if form.boot:
        argv.append("--boot")
    argv += [*NETWORKS[form.network], f"--link-journal={form.link_journal}"]
    if form.ephemeral:
        argv.append("--ephemeral")
    return [*argv, "--", *command]


def to_spec(form: SpawnForm, images: dict[str, Path], running: Collection[str],
            trusted_dirs: tuple[str, ...] | None = None, warnings: list[str] | None = None) -> ContainerSpec:
    """Check every field; raise FormError naming the field at the first problem.
    The spec itself comes from launcher.options.spec_from, as `nsdash spawn`'s does
    (the tree's .nspawn file included); what that file sets and nsdash does not
    apply goes to WARNINGS."""
    directory, _name, command = _checked(form, images, running)
    try:
        return spec_from(to_argv(form, directory, command), trusted_dirs=trusted_dirs,
                         warn=(warnings.append if warnings is not None else lambda _m: None))
    except NsdashError as e:
        raise FormError("tree", e.oneline()) from None


def to_far_argv(form: SpawnForm, images: dict[str, Path], running: Collection[str]) -> tuple[str, list[str]]:
    """The form as a far host's `spawn --detach ...` (nsdash -H): the machine's name and the verb.
    The same checks and the same options (to_argv) as here; the tree and its .nspawn file are
    the far host's, so its own spawn checks those, through the same spec builder, and says
    what is wrong.  IMAGES: the far host's (name -> path there); RUNNING: its machines."""
    directory, name, command = _checked(form, images, running)
    return name, ["spawn", "--detach", *to_argv(form, directory, command)]


def _checked(form: SpawnForm, images: dict[str, Path], running: Collection[str]) -> tuple[Path, str, tuple[str, ...]]:
    """The tree's directory, the machine's name and the command, or FormError at the first bad field."""
    tree = form.tree.strip()
    if not tree:
        raise FormError("tree", "choose an image or type the path of an OS tree")
    directory = images.get(tree) or Path(tree)
    if not directory.is_absolute():
        raise FormError("tree", f"'{tree}' is neither an image in /var/lib/machines nor an absolute path")
    try:
        name = names.check_machine_name(form.name.strip()) if form.name.strip() else None
        name = name or derive_machine_name(directory, False)
    except NsdashError as e:
        raise FormError("name", e.oneline()) from None
    if name in running and not (form.ephemeral and not form.name.strip()):  # -x derives a fresh name
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
    return directory, name, command
