"""The Images panel's forms: a new name (clone, rename) and create (debootstrap, live).

NameScreen checks the name with the image name rule (nsdash.machines.images,
the CLI's) and shows its one line under the field without closing.

CreateScreen is the form and then the run: distribution, release, name and
extra packages; on Create a worker checks the plan (the mirror is asked over
the network) and runs nsdash.machines.create, the code `nsdash create` runs,
with debootstrap's steps shown as they come and a bar over its phases.
Cancel (or Escape) during the run stops debootstrap's process group; the
screen stays until the unfinished tree is removed, then says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, ProgressBar, Select, Static
from textual.worker import get_current_worker

from nsdash.errors import NsdashError
from nsdash.system.text import escape
from nsdash.tui import stylefiles
from nsdash.tui.widgets.follow_log import FollowLog

if TYPE_CHECKING:
    from nsdash.machines.create import Job
    from nsdash.tui.actions import LauncherActions


def name_problem(name: str) -> str | None:
    """The image name rule's one line for NAME, or None when it is a good name."""
    from nsdash.machines import images

    try:
        images.check_name(name, "new image name")
    except NsdashError as e:
        return e.oneline()
    return None


class NameScreen(ModalScreen[str | None]):
    """Ask for a new image name: dismissed with it, or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, verb: str, initial: str = "") -> None:
        super().__init__()
        stylefiles.use(self, "forms")
        self.title_text = title
        self.verb = verb
        self.initial = initial

    def compose(self) -> ComposeResult:
        with Vertical(id="name-form", classes="image-form"):
            yield Static(Text(escape(self.title_text)), id="name-title")
            yield Input(self.initial, placeholder="new name", id="name-input")
            yield Static("", id="name-error", classes="form-error")
            with Horizontal(classes="form-buttons"):
                yield Button(self.verb, variant="primary", id="name-ok")
                yield Button("Cancel", id="name-cancel")

    def on_mount(self) -> None:
        self.query_one("#name-form").border_title = self.verb.lower()
        self.query_one("#name-input", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "name-ok":
            self.action_submit()
        else:
            self.dismiss(None)

    def action_submit(self) -> None:
        name = self.query_one("#name-input", Input).value.strip()
        problem = name_problem(name)
        if problem is not None:
            error = self.query_one("#name-error", Static)
            error.update(Text(escape(problem)))  # the user's own text: shown, never markup
            error.add_class("-shown")
            return
        self.dismiss(name)

    def action_cancel(self) -> None:
        self.dismiss(None)


class CreateScreen(ModalScreen[str | None]):
    """The create form, then its live progress; dismissed with the new image's name, or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    class Step(Message):
        """One of debootstrap's lines (escaped by nsdash.machines.create)."""

        def __init__(self, line: str) -> None:
            super().__init__()
            self.line = line

    class Ended(Message):
        """The run ended: the image's path, or the error's one line (cancelled or failed)."""

        def __init__(self, path: str | None, error: str | None, cancelled: bool = False) -> None:
            super().__init__()
            self.path = path
            self.error = error
            self.cancelled = cancelled

    def __init__(self, actions: LauncherActions) -> None:
        super().__init__()
        stylefiles.use(self, "forms")
        self.actions = actions
        self.job: Job | None = None
        self.created: str | None = None
        self.running = False

    def compose(self) -> ComposeResult:
        from nsdash.machines.create import NAMES, PHASES, default_release

        with Vertical(id="create-form", classes="image-form"):
            yield Static("Create an OS tree with debootstrap (other distributions: mkosi)", id="create-title")
            with Horizontal(classes="form-row"):
                yield Label("Distribution", classes="form-label")
                yield Select([(d, d) for d in NAMES], value="debian", allow_blank=False,
                             id="create-distribution")
            with Horizontal(classes="form-row"):
                yield Label("Release", classes="form-label")
                yield Input(placeholder=default_release("debian"), id="create-release")
            with Horizontal(classes="form-row"):
                yield Label("Image name", classes="form-label")
                yield Input(placeholder="name", id="create-name")
            with Horizontal(classes="form-row"):
                yield Label("More packages", classes="form-label")
                yield Input(placeholder="vim,less (optional)", id="create-packages")
            yield Static("", id="create-error", classes="form-error")
            yield Static("", id="create-phase")
            yield ProgressBar(total=len(PHASES), show_eta=False, id="create-progress")
            yield FollowLog(id="create-log", max_lines=2000, wrap=False)
            with Horizontal(classes="form-buttons"):
                yield Button("Create", variant="primary", id="create-ok")
                yield Button("Cancel", id="create-cancel")

    def on_mount(self) -> None:
        self.query_one("#create-form").border_title = "create"
        self.query_one("#create-name", Input).focus()

    # ------------------------------------------------------------ the form

    def _fields(self) -> tuple[str, str, str, str]:
        dist = self.query_one("#create-distribution", Select).value
        return (self.query_one("#create-name", Input).value.strip(),
                str(dist) if isinstance(dist, str) else "debian",
                self.query_one("#create-release", Input).value.strip(),
                self.query_one("#create-packages", Input).value.strip())

    @on(Select.Changed, "#create-distribution")
    def _distribution_changed(self, event: Select.Changed) -> None:
        from nsdash.machines.create import NAMES, default_release

        if isinstance(event.value, str) and event.value in NAMES:
            self.query_one("#create-release", Input).placeholder = default_release(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not self.running and self.created is None:
            self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "create-ok":
            self.action_submit()
        else:
            self.action_cancel()

    def _problem(self, text: str) -> None:
        error = self.query_one("#create-error", Static)
        error.update(Text(text))  # already escaped; never markup
        error.add_class("-shown")

    def action_submit(self) -> None:
        if self.running:
            return
        if self.created is not None:  # the button says Close now
            self.dismiss(self.created)
            return
        name, distribution, release, packages = self._fields()
        problem = name_problem(name)
        if problem is not None:
            self._problem(escape(problem))
            self.query_one("#create-name", Input).focus()
            return
        from nsdash.machines.create import Job

        self.job = Job()
        self._set_running(True)
        self._problem("")
        self.query_one("#create-error").remove_class("-shown")
        self.query_one("#create-phase", Static).update(Text("checking the release and the mirror…"))
        self.run_worker(lambda: self._work(name, distribution, release, packages), thread=True,
                        group="create", exit_on_error=False)

    def action_cancel(self) -> None:
        if self.running:
            if self.job is not None and not self.job.cancelled:
                self.job.cancel()
                self.query_one("#create-phase", Static).update(Text("cancelling: removing the unfinished tree…"))
            return
        self.dismiss(self.created)

    # ------------------------------------------------------------ the run (worker thread)

    def _work(self, name: str, distribution: str, release: str, packages: str) -> None:
        from nsdash.machines.create import Cancelled

        job = self.job
        assert job is not None
        worker = get_current_worker()
        try:
            plan = self.actions.create_plan(name, distribution, release, packages)
            job.check()
            def step(line: str) -> None:
                self.post_message(self.Step(line))

            path = self.actions.create_run(plan, step, job)
        except Cancelled as e:
            self.post_message(self.Ended(None, e.oneline(), cancelled=True))
        except NsdashError as e:
            self.post_message(self.Ended(None, escape(e.oneline())))
        except OSError as e:
            self.post_message(self.Ended(None, escape(f"creating the tree failed: {e}")))
        else:
            if not worker.is_cancelled:
                self.post_message(self.Ended(str(path), None))

    # ------------------------------------------------------------ what the worker tells

    def on_create_screen_step(self, message: CreateScreen.Step) -> None:
        from nsdash.machines.create import PHASES, phase_of

        self.query_one("#create-log", FollowLog).write(Text(message.line))
        phase = phase_of(message.line)
        bar = self.query_one("#create-progress", ProgressBar)
        if phase is not None and phase + 1 > (bar.progress or 0):
            bar.update(progress=phase + 1)
            self.query_one("#create-phase", Static).update(
                Text(f"step {phase + 1} of {len(PHASES)}: {PHASES[phase]}"))

    def on_create_screen_ended(self, message: CreateScreen.Ended) -> None:
        from nsdash.machines.create import PHASES

        self._set_running(False)
        phase = self.query_one("#create-phase", Static)
        if message.path is not None:
            name = self._fields()[0]
            self.created = name
            bar = self.query_one("#create-progress", ProgressBar)
            bar.update(progress=len(PHASES))
            phase.update(Text(f"created image '{escape(name)}' in {escape(message.path)}"))
            self.query_one("#create-ok", Button).label = "Close"
            self.query_one("#create-ok", Button).focus()
        else:
            phase.update(Text("cancelled: nothing was left behind" if message.cancelled else "failed"))
            self._problem(message.error or "failed")

    def _set_running(self, running: bool) -> None:
        self.running = running
        for widget in self.query("#create-form Input, #create-form Select"):
            widget.disabled = running
        self.query_one("#create-ok", Button).disabled = running
        self.set_class(running, "-running")

    def on_unmount(self) -> None:
        # The app quits during a run: stop debootstrap (the run then removes its tree).
        if self.running and self.job is not None:
            self.job.cancel()

