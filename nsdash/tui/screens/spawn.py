"""The spawn form: tree or image, name, boot or command, network, journal link.

It validates on submit (nsdash.tui.spawnform) and shows the problem under the
form without closing; a valid form is dismissed with a ContainerSpec.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static, Switch

from nsdash.launcher.spec import ContainerSpec
from nsdash.system.text import escape
from nsdash.tui import stylefiles
from nsdash.tui.spawnform import (
    LINK_JOURNAL,
    NETWORKS,
    FarSpawn,
    FormError,
    SpawnForm,
    default_name,
    to_far_argv,
    to_spec,
)


class SpawnScreen(ModalScreen[ContainerSpec | FarSpawn | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "submit", "Spawn")]

    def __init__(self, images: dict[str, Path], running: Collection[str], tree: str = "",
                 image: str | None = None, host: str | None = None) -> None:
        """IMAGE: the image chosen at the start (the Images panel's selection).  HOST: a remote
        host (-H) the machine is spawned on: IMAGES, RUNNING and the tree are that host's, and
        the form is dismissed with the far `spawn --detach ...` (FarSpawn) instead of a spec."""
        super().__init__()
        stylefiles.use(self, "forms")
        self.host = host
        self.images = images
        self.running = set(running)
        self.initial_tree = tree
        self.initial_image = image if image in images else None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="spawn-form"):
            yield Static(Text(f"Spawn a machine on {self.host}" if self.host else "Spawn a machine"),
                         id="spawn-title")
            yield Label("Image (from /var/lib/machines) or OS tree path")
            with Horizontal(classes="spawn-row"):
                yield Select([(name, name) for name in sorted(self.images)], prompt="image…",
                             id="spawn-image", allow_blank=True,
                             value=self.initial_image if self.initial_image else Select.NULL)
                yield Input(self.initial_tree, placeholder="/path/to/tree", id="spawn-tree")
            yield Label("Machine name (default: the tree's directory name)")
            yield Input(placeholder="name", id="spawn-name")
            with Horizontal(classes="spawn-row"):
                yield Label("Boot its init", classes="spawn-inline")
                yield Switch(True, id="spawn-boot")
                yield Label("Ephemeral", classes="spawn-inline")
                yield Switch(False, id="spawn-ephemeral")
            yield Label("Command (without boot), or init's arguments")
            yield Input(placeholder="/bin/sh -c 'echo hello'", id="spawn-command")
            with Horizontal(classes="spawn-row"):
                yield Select([(n, n) for n in NETWORKS], value="host", allow_blank=False, id="spawn-network")
                yield Select([(n, n) for n in LINK_JOURNAL], value="no", allow_blank=False,
                             id="spawn-journal")
            yield Static("", id="spawn-error")
            with Horizontal(id="spawn-buttons"):
                yield Button("Spawn", variant="primary", id="spawn-ok")
                yield Button("Cancel", id="spawn-cancel")

    def on_mount(self) -> None:
        self.query_one("#spawn-form").border_title = "spawn"
        if self.initial_image:
            self.query_one("#spawn-name", Input).placeholder = default_name(self.initial_image)
        (self.query_one("#spawn-tree", Input) if self.initial_tree or not self.images
         else self.query_one("#spawn-image", Select)).focus()

    def form(self) -> SpawnForm:
        image = self.query_one("#spawn-image", Select).value
        typed = self.query_one("#spawn-tree", Input).value.strip()
        tree = typed or (str(image) if isinstance(image, str) else "")
        return SpawnForm(
            tree=tree, name=self.query_one("#spawn-name", Input).value,
            boot=self.query_one("#spawn-boot", Switch).value,
            command=self.query_one("#spawn-command", Input).value,
            network=str(self.query_one("#spawn-network", Select).value),
            link_journal=str(self.query_one("#spawn-journal", Select).value),
            ephemeral=self.query_one("#spawn-ephemeral", Switch).value)

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "spawn-image" and isinstance(event.value, str):
            self.query_one("#spawn-tree", Input).value = ""
            name = self.query_one("#spawn-name", Input)
            if not name.value:
                name.placeholder = default_name(event.value)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "spawn-tree":
            self.query_one("#spawn-name", Input).placeholder = default_name(event.value) or "name"

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "spawn-ok":
            self.action_submit()
        else:
            self.dismiss(None)

    def action_submit(self) -> None:
        error = self.query_one("#spawn-error", Static)
        warnings: list[str] = []
        try:
            if self.host is not None:  # the far host's own spawn checks its tree and .nspawn file
                machine, argv = to_far_argv(self.form(), self.images, self.running)
                self.dismiss(FarSpawn(self.host, machine, argv))
                return
            spec = to_spec(self.form(), self.images, self.running, warnings=warnings)
        except FormError as e:
            error.update(e.message)
            error.add_class("-shown")
            target = {"tree": "#spawn-tree", "name": "#spawn-name", "command": "#spawn-command",
                      "network": "#spawn-network", "link_journal": "#spawn-journal"}.get(e.field)
            if target:
                self.query_one(target).focus()
            return
        for warning in warnings:  # what the image's .nspawn file sets and nsdash does not apply
            self.app.notify(escape(warning), title="settings file", severity="warning", markup=False, timeout=8)
        self.dismiss(spec)

    def action_cancel(self) -> None:
        self.dismiss(None)
