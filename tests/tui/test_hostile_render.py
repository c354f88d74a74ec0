"""The dashboard's widgets render guest text escaped and never as markup (pilot, fixed data).

A cgroup name, a command line, an OS name and journal lines full of escape
sequences, C1 controls, bidi overrides and Rich markup (`[@click=app.quit]`):
every character the app paints is printable, the escaped spelling is what the
user reads, and no painted cell carries an action.
"""

from __future__ import annotations

import re

from rich.text import Text
from tuikit import sample_app, wait_for

from nsdash.tui import sample_data as sd
from nsdash.tui.messages import JournalLine, JournalLines, MachineInfo, Snapshot, SnapshotReady
from nsdash.tui.screens.confirm import ConfirmScreen
from nsdash.tui.widgets.cgroup_tree import CgroupTree
from nsdash.tui.widgets.cpu_table import CpuTable
from nsdash.tui.widgets.journal_pane import JournalPane
from nsdash.tui.widgets.machine_list import MachineList

HOSTILE = "x\x1b[>c\x1b]52;c;?\x07\u009b6n\u202e[@click=app.quit]q[b]\x1b]0;title\x07"
SHOWN = "x\\x1b[>c\\x1b]52;c;?\\x07\\x9b6n\\u202e[@click=app.quit]q[b]\\x1b]0;title\\x07"
RAW = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")
_BB = "/machine.slice/machine-demo\\x2dbusybox.scope"
EVIL_CG = _BB + "/payload/" + HOSTILE


def hostile_snapshot(step: int) -> Snapshot:
    base = sd.snapshot(step)
    machines = (MachineInfo(*[HOSTILE if f == "os" else getattr(sd.MACHINES[0], f)
                              for f in MachineInfo._fields]), sd.MACHINES[1])
    tree = base.tree
    assert tree is not None
    bb = next(n for n in tree.iter() if n.path == _BB + "/payload")
    evil = type(bb)(EVIL_CG, (), (4666,))
    tree = _replace_node(tree, bb.path, type(bb)(bb.path, (evil,), bb.pids))
    rows = (*base.rows, sd._row(EVIL_CG, 1, 99.0, 1_000_000, 0.0, 0.0))
    commands = {**base.commands, 4666: "/bin/sh -c " + HOSTILE}
    return Snapshot(base.timestamp, machines, tree, rows, commands,
                    {**base.machine_of, EVIL_CG: "demo-busybox"})


def _replace_node(node, path, new):
    if node.path == path:
        return new
    return type(node)(node.path, tuple(_replace_node(c, path, new) for c in node.children), node.pids,
                      unreadable=node.unreadable)


def painted(app) -> tuple[str, list]:
    """Every character the screen paints (lines joined with nothing), and every style meta on it."""
    update = app.screen._compositor.render_full_update()
    text, metas = [], []
    for line in update.strips:
        for strip in line:
            for seg in strip:
                if seg.control:
                    continue
                text.append(seg.text)
                if seg.style is not None and seg.style.meta:
                    metas.append(seg.style.meta)
    return "".join(text), metas


async def test_hostile_guest_text_is_painted_escaped_and_inert():
    app = sample_app()
    async with app.run_test(size=(200, 60)) as pilot:
        for i in range(3):
            app.post_message(SnapshotReady(hostile_snapshot(i)))
            await pilot.pause()
        lines = (JournalLine(int(sd.T0 * 1e6), "demo-busybox", 3, HOSTILE, None, "msg " + HOSTILE),
                 JournalLine(int(sd.T0 * 1e6), "demo-busybox", None, None, None, "", event=HOSTILE))
        app.post_message(JournalLines(("demo-busybox",), lines, reset=True))
        tree = app.screen.query_one(CgroupTree)
        await wait_for(pilot, lambda: tree.node_for(("cg", _BB)) is not None, what="the tree")
        tree.select_path(EVIL_CG)
        await wait_for(pilot, lambda: tree.node_for(("cg", EVIL_CG)) is not None, what="the hostile cgroup")
        tree.node_for(("cg", EVIL_CG)).expand()
        await pilot.pause()
        await wait_for(pilot, lambda: tree.node_for(("pid", 4666)) is not None, what="the hostile process")
        pane = app.screen.query_one(JournalPane)
        await wait_for(pilot, lambda: any("msg" in t for t in pane.visible_text()), what="the journal line")

        # The widgets hold the escaped text, as Text (never markup), with no spans of the guest's.
        ml = app.screen.query_one(MachineList)
        os_cell = ml.get_cell("demo-busybox", "os")
        assert isinstance(os_cell, Text) and os_cell.plain == SHOWN and not os_cell.spans
        assert tree.node_for(("cg", EVIL_CG)).label.plain == SHOWN
        assert tree.node_for(("pid", 4666)).label.plain == "4666 /bin/sh -c " + SHOWN
        assert app.screen.query_one(CpuTable).get_cell(EVIL_CG, "path").plain.endswith(SHOWN[-20:])
        assert any(t.endswith("msg " + SHOWN) and SHOWN + ": " in t for t in pane.visible_text())
        assert any(f"-- {SHOWN} --" in t for t in pane.visible_text())

        text, metas = painted(app)
        assert not RAW.search(text), repr(RAW.search(text))
        assert "[@click=app.quit]" in text  # shown as the characters it is
        assert not [m for m in metas if "@click" in m], [m for m in metas if "@click" in m]

        # Clicking where the guest's "link" is painted triggers nothing.
        region = ml.region
        await pilot.click(MachineList, offset=(region.width // 2, 1))
        await pilot.pause()
        assert app.is_running and not isinstance(app.screen, ConfirmScreen)


def test_unit_rows_and_machine_header_show_guest_text_escaped():
    from nsdash.inside.units import UnitInfo
    from nsdash.tui.screens.machine import describe
    from nsdash.tui.screens.units import row_cells

    unit = UnitInfo("evil\x1b[>c.service", HOSTILE, "loaded", "active", "running\u202e", "", None, None)
    cells = row_cells(unit)
    assert [c.plain for c in cells] == ["  evil\\x1b[>c.service", "loaded", "active", "running\\u202e", SHOWN]
    assert all(isinstance(c, Text) and not c.spans for c in cells[1:])
    header = describe(MachineInfo("m", "running", HOSTILE, "10.0.0.1\x1b]0;t\x07", sd.T0 - 5), "m", sd.T0)
    assert SHOWN in header and "10.0.0.1\\x1b]0;t\\x07" in header and not RAW.search(header)
