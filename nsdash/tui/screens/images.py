"""The Images panel: every image (machinectl's search path), and what can be done with one.

The list comes from a worker thread of the screen's own, in the poller's
style: every REFRESH seconds (and at once after an action) it asks the reader
the app's LauncherActions made for this panel (image_reader(): here
nsdash.machines.images, discover, users, and du for the size, measured
seldom; over -H one ssh session kept per host, closed with the panel) and
posts one immutable ImagesReady, which replaces an unprocessed older one.
The screen never reads the host itself.

Actions go up to the app, which runs them in its action workers through the
same backend the command line uses: boot (`nsdash start NAME`'s spec), boot
ephemeral, clone and rename (a name asked for and checked by the name rule),
remove (confirmed by typing the image's name; refused by the backend while a
machine runs on it), create (the create form) and spawn (the spawn form with
the image chosen).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Static
from textual.worker import get_current_worker

from nsdash.errors import NsdashError
from nsdash.system.text import escape
from nsdash.tui import stylefiles
from nsdash.tui.messages import ImageRow, ImagesReady, PartialImages
from nsdash.tui.widgets.edges import FocusMarkScreen
from nsdash.tui.widgets.image_list import ImageList
from nsdash.tui.widgets.key_footer import KeyFooter

if TYPE_CHECKING:
    from nsdash.tui.actions import ImageReader

REFRESH = 2.0  # seconds between two listings while the panel is open


class ImagesScreen(FocusMarkScreen):
    """The images and their actions; the app carries the actions out (ImagesScreen.Wanted)."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("b", "want('boot')", "Boot"),
        Binding("e", "want('ephemeral')", "Boot -x"),
        Binding("s", "want('spawn')", "Spawn…"),
        Binding("c", "want('clone')", "Clone"),
        Binding("m", "want('rename')", "Rename"),
        Binding("d", "want('remove')", "Remove"),
        Binding("delete", "want('remove')", "Remove", show=False),
        Binding("n", "want('create')", "Create"),
        Binding("g", "reload", "Refresh", show=False),
    ]

    class Wanted(Message):
        """The user asked for ACTION on IMAGE (None for create)."""

        def __init__(self, action: str, image: str | None) -> None:
            super().__init__()
            self.action = action
            self.image = image

    def __init__(self, poll: bool = True, hosts: bool = False) -> None:
        """HOSTS: over remote hosts (-H), a Host column first (ImageList)."""
        super().__init__()
        stylefiles.use(self, "forms")
        self.poll = poll
        self.hosts = hosts
        self.rows: tuple[ImageRow, ...] = ()
        self.loaded = False
        self._wake = threading.Event()
        self._reader: ImageReader | None = None

    def compose(self) -> ComposeResult:
        yield Static("images", id="images-status")
        yield ImageList(id="images", classes="panel", hosts=self.hosts)
        yield Static("", id="images-detail")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#images").border_title = "Images"
        self.query_one(ImageList).focus()
        if self.poll:
            from nsdash.tui.app import NsdashApp

            # The reader lives as long as the panel: over -H it keeps one ssh session per host.
            self._reader = cast(NsdashApp, self.app).actions.image_reader()
            self.run_worker(self._poll, thread=True, group="image-rows", exit_on_error=False)

    def on_unmount(self) -> None:
        self._wake.set()  # the worker's wait ends; it sees itself cancelled
        if self._reader is not None:
            self._reader.close()  # (also ends a listing in flight: its ssh is killed)

    # ------------------------------------------------------------ the reader (worker thread)

    def _poll(self) -> None:
        reader = self._reader
        assert reader is not None
        worker = get_current_worker()
        while not worker.is_cancelled:
            try:
                message = ImagesReady(reader.rows())
            except PartialImages as e:  # over -H: a host did not answer; the others' rows
                message = ImagesReady(e.rows, e.oneline())
            except NsdashError as e:
                message = ImagesReady((), e.oneline())
            except OSError as e:
                message = ImagesReady((), f"reading the images: {type(e).__name__}: {e}")
            if worker.is_cancelled:
                return
            self.post_message(message)
            self._wake.wait(REFRESH)
            self._wake.clear()

    def reload(self) -> None:
        """List the images again now (after an action)."""
        self._wake.set()

    # ------------------------------------------------------------ what the reader tells

    def on_images_ready(self, message: ImagesReady) -> None:
        self.show(message.rows, message.error)

    def show(self, rows: tuple[ImageRow, ...], error: str | None = None) -> None:
        self.rows = rows
        self.loaded = True
        self.query_one(ImageList).update_images(rows)
        n = len(rows)
        running = sum(1 for r in rows if r.used_by)
        status = f"{n} image{'s' if n != 1 else ''}  ·  {running} in use  ·  b boot, e ephemeral, " \
                 "s spawn, c clone, m rename, d remove, n create"
        if error:
            status = f"{status}  ·  {escape(error)}"
        self.query_one("#images-status", Static).update(Text(status))
        self._detail()

    def on_image_list_selected(self, _message: ImageList.Selected) -> None:
        self._detail()

    def _detail(self) -> None:
        table = self.query_one(ImageList)
        row = table.images.get(table.selected or "")
        text = "" if row is None else f"{escape(row.path)}  ·  {escape(row.os)}"
        self.query_one("#images-detail", Static).update(Text(text))

    # ------------------------------------------------------------ actions

    def action_want(self, action: str) -> None:
        image = self.query_one(ImageList).selected
        if image is None and action != "create":
            self.notify("no image selected", severity="warning")
            return
        self.post_message(self.Wanted(action, image if action != "create" else None))

    def action_reload(self) -> None:
        self.reload()
