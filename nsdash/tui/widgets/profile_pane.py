"""The profile pane: a machine's hottest functions and processes, refreshed with each perf window.

No I/O: the profile screen's worker records and hands each window's Profile
to show().  The pane also keeps every sample shown so far (bounded), which is
what the flame graph is drawn from.
"""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from nsdash.inside.debugging.perf import Profile, Ranked, Sample

KEEP_SAMPLES = 100_000
ROWS = 30


class ProfilePane(Vertical):
    """Two top lists (functions by self samples, processes) of the last window."""

    DEFAULT_CSS = """
    ProfilePane #profile-tables { height: 1fr; }
    ProfilePane #profile-functions { width: 2fr; }
    ProfilePane #profile-processes { width: 1fr; }
    ProfilePane #profile-note { height: auto; }
    """

    def __init__(self, title: str = "Profile", **kw) -> None:
        super().__init__(**kw)
        self.title = title
        self.windows = 0
        self.flame: str | None = None  # the last flame graph written
        self.last: Profile | None = None
        self._samples: deque[Sample] = deque(maxlen=KEEP_SAMPLES)
        self._seconds = 0.0

    def compose(self) -> ComposeResult:
        yield Static("sampling…", id="profile-note")
        with Horizontal(id="profile-tables"):
            yield DataTable(id="profile-functions", cursor_type="row")
            yield DataTable(id="profile-processes", cursor_type="row")

    def on_mount(self) -> None:
        for table_id, title in (("#profile-functions", "Function"), ("#profile-processes", "Process")):
            table = self.query_one(table_id, DataTable)
            table.add_column("Samples", key="samples")
            table.add_column("%", key="percent")
            table.add_column(title, key="name")
        self.border_title = Text(self.title)
        self.query_one("#profile-functions").focus()

    # ------------------------------------------------------------ public

    def show(self, profile: Profile, note: str | None = None) -> None:
        self.last = profile
        self.windows += 1
        self._samples.extend(profile.samples)
        self._seconds += profile.seconds
        self._fill("#profile-functions", profile.top_functions(ROWS))
        self._fill("#profile-processes", profile.top_processes(ROWS))
        head = f"{len(profile.samples)} samples of {profile.event} in the last {profile.seconds:.1f} s"
        if not profile.samples:
            head += " (the machine used no CPU)"
        self.query_one("#profile-note", Static).update(head + (f"\n{note}" if note else ""))
        flame = f"  ·  flame graph: {self.flame}" if self.flame else ""
        self.border_subtitle = Text(f"window {self.windows}  ·  {len(self._samples)} samples kept  ·  w: flame graph{flame}")

    def cumulative(self) -> Profile | None:
        """Every sample kept so far, for the flame graph; None before the first window."""
        if self.last is None:
            return None
        return Profile(self.last.event, self._seconds, tuple(self._samples), dict(self.last.machine_pids))

    def rows(self, which: str = "functions") -> list[str]:
        """The names in a table, top first (for tests)."""
        table = self.query_one(f"#profile-{which}", DataTable)
        return [str(table.get_cell(key, "name")) for key in table.rows]

    # ------------------------------------------------------------ helpers

    def _fill(self, table_id: str, ranked: list[Ranked]) -> None:
        table = self.query_one(table_id, DataTable)
        wanted = [r.name for r in ranked]
        if [str(k.value) for k in table.rows] != wanted:
            # The order changed (it usually does): rebuild, keeping the cursor on the same name.
            current = None
            if table.row_count:
                current = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
            table.clear()
            for r in ranked:
                # Text, not str: a DataTable reads a str as markup, and these names come from the guest.
                table.add_row(str(r.samples), f"{r.percent:.1f}", Text(r.name), key=r.name)
            if current in wanted:
                table.move_cursor(row=wanted.index(current))
        else:
            for r in ranked:
                table.update_cell(r.name, "samples", str(r.samples))
                table.update_cell(r.name, "percent", f"{r.percent:.1f}")
