"""The Images panel's pure parts: debootstrap's phases, the row cells, the name rule's line."""

from __future__ import annotations

from nsdash.machines.create import PHASES, phase_of
from nsdash.tui import sample_data as sd
from nsdash.tui.messages import ImageRow
from nsdash.tui.screens.image_forms import name_problem
from nsdash.tui.widgets.image_list import cells_of, modified

# A real bookworm run's lines, one of each kind, in the order debootstrap prints them.
RUN = (
    "I: Retrieving InRelease", "I: Checking Release signature",
    "I: Valid Release signature (key id 4D64FEC119C2029067D6E791F8D2585B8783D481)",
    "I: Retrieving Packages", "I: Validating Packages",
    "I: Resolving dependencies of required packages...", "I: Resolving dependencies of base packages...",
    "I: Checking component main on http://deb.debian.org/debian...",
    "I: Retrieving adduser 3.134", "I: Validating adduser 3.134",
    "I: Extracting adduser...", "I: Installing core packages...", "I: Unpacking required packages...",
    "I: Unpacking adduser...", "I: Configuring required packages...", "I: Configuring adduser...",
    "I: Unpacking the base system...", "I: Configuring the base system...",
    "I: Base system installed successfully.",
    "I: Setting up the machine ID, the hostname and root's login...",
)


def test_phases_follow_debootstraps_order_and_reach_the_last():
    seen = [p for p in map(phase_of, RUN) if p is not None]
    furthest = 0
    for p in seen:
        furthest = max(furthest, p)
    assert seen[0] == 0 and furthest == len(PHASES) - 1
    # each phase is reached, in order, without skipping one
    firsts = sorted({p: i for i, p in reversed(list(enumerate(seen)))}.items(), key=lambda kv: kv[1])
    assert [p for p, _ in firsts] == list(range(len(PHASES)))


def test_lines_that_say_nothing_of_the_phase_have_none():
    for line in ("I: Checking Release signature", "W: Cannot check Release signature; keyring file not available",
                 "E: Couldn't find these debs: nope", "I: Valid Release signature (key id 1234)"):
        assert phase_of(line) is None, line


def test_index_files_are_not_package_downloads():
    assert phase_of("I: Retrieving InRelease") == 0 and phase_of("I: Retrieving Packages") == 0
    assert phase_of("I: Retrieving libc6 2.36-9") == PHASES.index("Downloading packages")


def test_cells_escape_guest_text_and_say_unknown_sizes():
    hostile = sd.IMAGES[-1]
    cells = cells_of(hostile)
    assert "\x1b" not in "".join(cells) and "\x07" not in "".join(cells)
    assert cells[6] == "\\x1b]0;owned\\x07 [@click=app.quit]"
    assert cells[3] == "-" and cells[5] == "-"
    row = ImageRow("x", "raw", True, 1 << 30, 0.0, "/x.raw", ("a", "b"))
    assert cells_of(row) == ("x", "raw", "yes", "1.0G", "1970-01-01 00:00", "a, b", "-")


def test_modified_is_utc_whatever_the_local_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert modified(86_400 * 365) == "1971-01-01 00:00"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_the_name_form_uses_the_image_name_rule():
    assert name_problem("good-name") is None
    for bad in ("", "a/b", "..", "my_box", "x-"):
        problem = name_problem(bad)
        assert problem is not None and "\n" not in problem, bad
