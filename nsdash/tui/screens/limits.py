"""The limits form: a running machine's CPU quota, memory limit and tasks limit, changed live.

Prefilled with what is in force; on submit only the fields the user changed
become property assignments (systemd's syntax, checked by
nsdash.launcher.properties), shown under the form without closing when one is
wrong.  A valid form is dismissed with the assignments; the caller asks for
confirmation and applies them (through systemd where the host runs it).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from nsdash.errors import NsdashError
from nsdash.launcher import properties as props
from nsdash.system.text import escape
from nsdash.tui import stylefiles

# (property, label, placeholder); an emptied field means "no limit" (systemd's infinity)
FIELDS = (("CPUQuota", "CPU quota (% of one CPU)", "e.g. 50%"),
          ("MemoryMax", "Memory limit (bytes, K, M, G)", "e.g. 512M"),
          ("TasksMax", "Tasks limit", "e.g. 512"))


def changed_assignments(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """NAME=VALUE for each field whose text differs from what was in force; an emptied
    field lifts the limit.  UsageError (one line) for a value systemd would refuse."""
    out = []
    for name, _, _ in FIELDS:
        old, new = before.get(name, ""), after.get(name, "").strip()
        if new == old:
            continue
        assignment = f"{name}={new or 'infinity'}" if name != "CPUQuota" else f"{name}={new}"
        props.parse(assignment)
        out.append(assignment)
    return out


class LimitsScreen(ModalScreen[list[str] | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "submit", "Apply")]

    def __init__(self, machine: str, current: dict[str, str]) -> None:
        super().__init__()
        stylefiles.use(self, "forms")
        self.machine = machine
        self.current = dict(current)

    def compose(self) -> ComposeResult:
        with Vertical(id="limits-form"):
            yield Static(Text(f"Limits of {escape(self.machine)}"), id="limits-title")  # never markup
            for name, label, placeholder in FIELDS:
                yield Label(label)
                yield Input(self.current.get(name, ""), placeholder=placeholder, id=f"limits-{name}")
            yield Static("", id="limits-error")
            with Horizontal(id="limits-buttons"):
                yield Button("Apply", variant="primary", id="limits-ok")
                yield Button("Cancel", id="limits-cancel")

    def on_mount(self) -> None:
        self.query_one("#limits-form").border_title = "limits"
        self.query_one(f"#limits-{FIELDS[0][0]}", Input).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "limits-ok":
            self.action_submit()
        else:
            self.dismiss(None)

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self.action_submit()

    def action_submit(self) -> None:
        after = {name: self.query_one(f"#limits-{name}", Input).value for name, _, _ in FIELDS}
        error = self.query_one("#limits-error", Static)
        try:
            assignments = changed_assignments(self.current, after)
        except NsdashError as e:
            error.update(Text(escape(e.oneline())))  # the user's own text: shown, never markup
            error.add_class("-shown")
            return
        self.dismiss(assignments)

    def action_cancel(self) -> None:
        self.dismiss(None)
