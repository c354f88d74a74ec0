"""PaintStyle: the journal log and the cgroup tree work out their rich_style once per paint
(Textual's DOMNode.rich_style walks the ancestors at every read: RichLog read it up to three
times a line, Tree once), and paint the same lines as before."""

from __future__ import annotations

from textual.dom import DOMNode
from textual.geometry import Region
from tuikit import feed_sample, sample_app

from nsdash.tui.widgets.cgroup_tree import CgroupTree
from nsdash.tui.widgets.follow_log import FollowLog


async def test_a_paint_reads_the_style_once(monkeypatch):
    app = sample_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await feed_sample(app, pilot)
        log = app.screen.query_one("#journal-log", FollowLog)
        tree = app.screen.query_one(CgroupTree)
        assert log.lines and tree.last_line > 3  # the sample journal is written, the tree filled

        reads: list[DOMNode] = []
        walk = DOMNode.rich_style.fget
        assert walk is not None

        def counted(node: DOMNode):
            reads.append(node)
            return walk(node)

        for widget in (log, tree):
            box = Region(0, 0, widget.size.width, widget.size.height)
            expected = [strip.text for strip in widget.render_lines(box)]
            widget._styles_cache.clear()  # painted anew, not from the lines' caches
            widget._line_cache.clear()
            if isinstance(widget, CgroupTree):
                widget._kept_lines.clear()
            monkeypatch.setattr(DOMNode, "rich_style", property(counted))
            try:
                lines = widget.render_lines(box)
            finally:
                monkeypatch.undo()
            assert len(lines) == widget.size.height > 10
            assert [strip.text for strip in lines] == expected  # the same lines
            # once for the paint (main: one to three reads a line, 26-70 for these panes)
            assert [node for node in reads if node is widget] == [widget], type(widget).__name__
            reads.clear()
            # and between paints the style is read afresh, as Textual's is
            assert widget._paint_style is None


def test_the_mixin_changes_nothing_textual_derives_from_the_class():
    # A Widget subclass in the bases gave FollowLog and CgroupTree Widget's can_focus (False):
    # the 80x24 overview's log no longer scrolled to its end.
    assert FollowLog.can_focus and CgroupTree.can_focus
    assert "PaintStyle" not in FollowLog._css_type_names | CgroupTree._css_type_names
