"""The at-rest repaint tests, once: a cgroup tree with a process more, the sample's system slice
opened, and what a widget paints against what it paints with its kept lines dropped (a cache
that shows anything else than painting anew would is the bug those tests look for)."""

from __future__ import annotations

import pyte
from textual._compositor import CompositorUpdate
from textual.app import App
from textual.screen import Screen
from textual.widget import Widget
from tuikit import feed_sample

from nsdash.monitor.tree import CgroupNode
from nsdash.tui.widgets.cgroup_tree import CgroupTree


def with_pids(tree: CgroupNode, path: str, pids: tuple[int, ...]) -> CgroupNode:
    """TREE with the cgroup at PATH holding PIDS (a new tree: the snapshots' are immutable)."""
    children = tuple(with_pids(c, path, pids) for c in tree.children)
    return CgroupNode(tree.path, children, pids if tree.path == path else tree.pids, tree.unreadable)


async def open_system_slice(app, pilot) -> CgroupTree:
    """The sample fed to APP, its cgroup tree with /system.slice expanded and painted."""
    await feed_sample(app, pilot)
    tree = app.screen.query_one(CgroupTree)
    tree.node_for(("cg", "/system.slice")).expand()
    await pilot.pause()
    await pilot.pause()
    return tree


def painted_lines(widget: Widget) -> list[str]:
    """The text of every line WIDGET paints now."""
    return [widget.render_line(y).text for y in range(widget.size.height)]


def painted_anew(widget: Widget) -> list[str]:
    """The text of every line WIDGET paints with its kept lines dropped: a CgroupTree's own
    (and Tree's), a FastTable's lines and its place-marked cells."""
    if isinstance(widget, CgroupTree):
        widget._kept_lines.clear()
        widget._invalidate()
    else:
        widget._fast_lines.clear()
        widget._fast_placed.clear()
    return painted_lines(widget)


def terminal_fed(monkeypatch, size: tuple[int, int]) -> pyte.Screen:
    """A terminal model of SIZE that every frame an app writes from now on (full and partial) is
    fed to, as the real terminal would be."""
    terminal = pyte.Screen(*size)
    stream = pyte.Stream(terminal)
    display = App._display

    def written(self: App, screen: Screen, renderable: object) -> None:
        if isinstance(renderable, CompositorUpdate):
            stream.feed(renderable.render_segments(self.console))
        display(self, screen, renderable)

    monkeypatch.setattr(App, "_display", written)
    return terminal
