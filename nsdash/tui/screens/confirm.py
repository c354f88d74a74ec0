"""The question before a destructive action, answered by nothing a stray byte sequence can type.

A single-key "y" was enough for a terminal answer (DA, OSC 52) that a guest
provoked to power off another machine.  So no letter confirms anything here:

- with TYPED (a machine's name), the user types that name and presses Enter
  (or clicks the button, enabled once the name matches);
- without, Cancel has the focus: the action needs Tab then Enter, or a click.

Escape cancels.  The question names what is acted on; it is shown as
text, never as markup.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from nsdash.system.text import escape
from nsdash.tui import stylefiles


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("escape", "answer(False)", "Cancel")]

    def __init__(self, question: str, yes: str = "Yes", typed: str | None = None) -> None:
        super().__init__()
        stylefiles.use(self, "forms")
        self.question = question
        self.yes = yes
        self.typed = typed

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(Text(escape(self.question)), id="confirm-question")
            if self.typed is not None:
                yield Static(Text(f"Type {escape(self.typed)} and press Enter to confirm."), id="confirm-hint")
                yield Input(placeholder=escape(self.typed), id="confirm-typed")
            with Horizontal(id="confirm-buttons"):
                yield Button(self.yes, variant="error", id="confirm-yes", disabled=self.typed is not None)
                yield Button("Cancel", id="confirm-no")

    def on_mount(self) -> None:
        if self.typed is not None:
            self.query_one("#confirm-typed", Input).focus()
        else:
            self.query_one("#confirm-no", Button).focus()

    @on(Input.Changed, "#confirm-typed")
    def _typed_changed(self, event: Input.Changed) -> None:
        self.query_one("#confirm-yes", Button).disabled = event.value != self.typed

    @on(Input.Submitted, "#confirm-typed")
    def _typed_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value == self.typed:
            self.dismiss(True)
        else:
            self.notify(f"type {escape(self.typed or '')} exactly, or press Escape", severity="warning",
                        markup=False, timeout=3)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if (event.button.id == "confirm-yes" and self.typed is not None
                and self.query_one("#confirm-typed", Input).value != self.typed):
            return
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
