"""The cgls-style cgroup tree: nodes keyed by path, changed in place, never rebuilt.

Only expanded branches are synchronised with each snapshot; a collapsed
branch just knows whether it has anything to show, and is filled in when the
user opens it.  So the cursor and the open branches survive every refresh,
and 5,000 cgroups cost only what is on screen.

Over remote hosts (-H, HOSTS true) the first level is one node per host
(nsdash.tui.remote keys a far cgroup "/HOST/PATH"); each host and its
machine.slice start open, and a note ("unreachable") follows a node's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

from rich.style import Style
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from nsdash.monitor.tree import CgroupNode
from nsdash.system.text import escape
from nsdash.tui.widgets.colours import text_style
from nsdash.tui.widgets.paint_style import PaintStyle
from nsdash.tui.widgets.steady import SteadyScrollbars

Key = tuple[str, object]  # ("cg", path) or ("pid", pid)
KEPT_LINES = 4096  # painted lines kept (render_line), cleared wholesale when full


class CgroupTree(PaintStyle, Tree[Key], SteadyScrollbars):
    """systemd-cgls as a live tree: processes under their cgroups, machines named."""

    COMPONENT_CLASSES = Tree.COMPONENT_CLASSES | {
        "cgroup-tree--machine", "cgroup-tree--process", "cgroup-tree--unreadable",
    }
    steady_virtual_size = True  # a process more or less repaints the pane, lays nothing out (steady.py)

    def __init__(self, hosts: bool = False, **kw) -> None:
        super().__init__("/", data=("cg", "/"), **kw)
        self.hosts = hosts
        self._notes: Mapping[str, str] = {}
        self._keyed: dict[Key, TreeNode[Key]] = {("cg", "/"): self.root}
        self._labels: dict[Key, str] = {}
        self._by_path: dict[str, CgroupNode] = {}
        self._commands: dict[int, str] = {}
        self._machine_of: dict[str, str] = {}
        self._seen: set[str] = set()  # cgroups shown before: opened automatically only once
        self._styles: dict[str, Style] = {}
        self._kept_lines: dict[tuple, Strip] = {}  # see render_line
        self._lines_before: tuple[tuple[int, int], list[tuple]] | None = None  # in update_tree: see refresh
        self._whole_asked = False
        self.root.expand()

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, self._recolour)

    def process_label(self, label: str | Text) -> Text:
        """A label as it is, never read as Rich markup: Tree reads a str label as markup with emoji
        codes (every node is added with an empty one, then labelled with Text), which loaded
        rich's table of 3,600 emoji names before the first frame (issue 16)."""
        text = Text(label) if isinstance(label, str) else label
        return text.split()[0]  # its first line, as Tree's own

    # ------------------------------------------------------------ painting

    def render_line(self, y: int) -> Strip:
        """Tree forgets every painted line when a node comes or goes (a process started or gone
        in an open cgroup: at rest on a busy host, at most walks of the tree); a line that reads
        as before (the same nodes at the same place, in the same state) is kept here instead."""
        scroll_x, scroll_y = self.scroll_offset
        index = y + scroll_y
        lines = self._tree_lines
        if index >= len(lines):
            return super().render_line(y)
        key = self._line_key(index, self._common_key(scroll_x))
        strip = self._kept_lines.get(key)
        if strip is None:
            strip = super().render_line(y)
            if len(self._kept_lines) >= KEPT_LINES:
                self._kept_lines.clear()
            self._kept_lines[key] = strip
        return strip

    def _common_key(self, scroll_x: int) -> tuple:
        """What every line's key holds (see _line_key), read once for a paint or a comparison."""
        return (scroll_x, self.size.width, self.virtual_size.width, self._pseudo_class_state, self.cursor_line,
                self.hover_line, self.has_focus)

    def _line_key(self, index: int, common: tuple) -> tuple:
        """What line INDEX of _tree_lines reads: two lines with the same key paint the same."""
        # Everything Tree's own line reads: its place (the line's meta names it), the width it is
        # cropped and padded to, the state classes, cursor and hover, and per node of its path
        # the node, its version, whether it is the last child (the guides), its state.  Tree
        # bumps the root's version at every node added or removed: it counts on the root's
        # own line only (the others read the root's hover and selection, which are in the key).
        # (The cursor's line, in COMMON, is compared with INDEX: a line holds whether it is it.)
        path = self._tree_lines[index].path
        root = path[0]
        return (index, common[:4], common[4] == index, common[5:],
                tuple((node._id, node._updates if node is not root or len(path) == 1 else 0, node.is_last,
                       node._hover, node._selected, node._expanded, node._allow_expand) for node in path))

    def _shown_keys(self) -> tuple[tuple[int, int], list[tuple]]:
        """The scroll offset and the key of each line in view, top to bottom."""
        scroll_x, scroll_y = self.scroll_offset
        end = min(len(self._tree_lines), scroll_y + self.size.height)
        common = self._common_key(scroll_x)
        return (scroll_x, scroll_y), [self._line_key(i, common) for i in range(scroll_y, end)]

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False,
                recompose: bool = False) -> Self:
        if self._lines_before is not None and not regions and repaint and not recompose:
            # A node came or went in update_tree: Tree asks to repaint the whole pane (every line,
            # its border, its scrollbars, all written out again); update_tree repaints the lines
            # that read otherwise instead (the layout asked goes on as asked).
            self._whole_asked = True
            repaint = False
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def notify_style_update(self) -> None:
        self._kept_lines.clear()  # (a theme or a class changed: every line's colours)
        super().notify_style_update()

    def _recolour(self, _theme: object) -> None:
        """A new theme: every shown label again, in its colours."""
        self._styles = {}
        self._labels = {}
        for key, node in list(self._keyed.items()):
            cg = self._by_path.get(str(key[1])) if key[0] == "cg" else None
            if cg is not None:
                self._set_label(node, cg)
            elif key[0] == "pid" and isinstance(key[1], int):
                self._set_process_label(node, key[1])

    # ------------------------------------------------------------ public

    def update_tree(self, root: CgroupNode, commands: dict[int, str], machine_of: dict[str, str],
                    notes: Mapping[str, str] | None = None) -> None:
        """Show ROOT; NOTES: a word after a cgroup's name, by path (a remote host "unreachable")."""
        self._notes = notes or {}
        self._by_path = {n.path: n for n in root.iter()}
        self._commands = commands
        self._machine_of = machine_of
        cursor = self.cursor_node
        self._lines_before = self._shown_keys() if self.is_mounted and self.size else None
        self._whole_asked = False
        try:
            with self.changing_rows():  # the virtual size lays the screen out if it changed
                self._sync(self.root, root)
            # Built now, not as the frame paints: a new virtual size (the scrollbars' thumbs) is in
            # this refresh's frame, not in a second one a frame later.  (Past changing_rows: a
            # scrollbar that comes or goes still lays the screen out, steady.py.)
            self._tree_lines  # noqa: B018 - the property builds the lines
            before, self._lines_before = self._lines_before, None
        except BaseException:
            self._lines_before = None
            raise
        if self._whole_asked and before is not None:
            self._repaint_changed(*before)
        if cursor is not None and cursor.data in self._keyed and cursor is not self.cursor_node:
            self.call_after_refresh(self.move_cursor, cursor)

    def process_at_cursor(self) -> tuple[str, int] | None:
        """(machine, host PID) when the cursor is on a process inside a machine, else None."""
        node = self.cursor_node
        if node is None or node.data is None or node.data[0] != "pid" or node.parent is None:
            return None
        # The nearest enclosing cgroup that the monitor mapped to a machine.
        parent: TreeNode[Key] | None = node.parent
        while parent is not None and parent.data is not None:
            machine = self._machine_of.get(str(parent.data[1]))
            pid = node.data[1]
            if machine and isinstance(pid, int):
                return machine, pid
            parent = parent.parent
        return None

    def select_path(self, path: str) -> None:
        """Open the branches down to PATH and put the cursor on it."""
        parts = [p for p in path.split("/") if p]
        current = "/"
        for part in parts:
            node = self._keyed.get(("cg", current))
            if node is None:
                return
            node.expand()
            self._fill(node)
            current = (current.rstrip("/") + "/" + part)
        target = self._keyed.get(("cg", current))
        if target is not None:
            self.call_after_refresh(self.move_cursor, target)

    def _repaint_changed(self, offset: tuple[int, int], before: list[tuple]) -> None:
        """Repaint the lines in view whose key is not the one they had at OFFSET before (BEFORE)."""
        now_offset, after = self._shown_keys()
        if now_offset != offset:
            self.refresh()  # scrolled (lines gone from the end): every line moved
            return
        width = self.size.width
        for y in range(max(len(before), len(after))):
            if y >= len(before) or y >= len(after) or before[y] != after[y]:
                self.refresh(Region(0, y, width, 1))

    def node_for(self, key: Key) -> TreeNode[Key] | None:
        return self._keyed.get(key)

    # ------------------------------------------------------------ syncing

    def _sync(self, tnode: TreeNode[Key], cg: CgroupNode) -> None:
        self._set_label(tnode, cg)
        has_content = bool(cg.children or any(p in self._commands for p in cg.pids or ()))
        if not tnode.is_root and tnode.allow_expand != has_content:
            tnode.allow_expand = has_content  # (setting it at all repaints the tree)
        if not (tnode.is_expanded or tnode.is_root):
            if tnode.children:
                self._forget(tnode)
                tnode.remove_children()
            return
        # Only processes the poller described: kernel threads and the already gone are left out.
        wanted: list[tuple[Key, object]] = [(("pid", pid), pid) for pid in (cg.pids or ()) if pid in self._commands]
        wanted += [(("cg", child.path), child) for child in cg.children]
        wanted_keys = {k for k, _ in wanted}
        for child in list(tnode.children):
            if child.data not in wanted_keys:
                self._forget(child)
                child.remove()
        previous: TreeNode[Key] | None = None
        for key, item in wanted:
            node = self._keyed.get(key)
            if node is None:
                node = self._add(tnode, key, item, previous)
                if isinstance(item, CgroupNode) and item.path not in self._seen:
                    self._seen.add(item.path)
                    if self._opens_at_first(item):
                        node.expand()
            if isinstance(item, CgroupNode):
                self._sync(node, item)
            elif isinstance(item, int):
                self._set_process_label(node, item)
            previous = node

    def _opens_at_first(self, cg: CgroupNode) -> bool:
        """machine.slice starts open (the machines at a glance), and each remote host with its
        machine.slice; the rest starts closed."""
        if self.hosts:
            depth = cg.path.count("/")
            return depth == 1 or (depth == 2 and cg.path.endswith("/machine.slice"))
        return cg.path == "/machine.slice"

    def _fill(self, tnode: TreeNode[Key]) -> None:
        key = tnode.data
        if key is not None and key[0] == "cg":
            cg = self._by_path.get(str(key[1]))
            if cg is not None:
                self._sync(tnode, cg)

    def _add(self, parent: TreeNode[Key], key: Key, item: object, after: TreeNode[Key] | None) -> TreeNode[Key]:
        before = 0 if after is None and parent.children else None  # first among its siblings
        node = parent.add("", data=key, before=before, after=after, allow_expand=key[0] != "pid")
        self._keyed[key] = node
        return node

    def _forget(self, tnode: TreeNode[Key]) -> None:
        stack = [tnode]
        while stack:
            n = stack.pop()
            if n.data is not None:
                self._keyed.pop(n.data, None)
                self._labels.pop(n.data, None)
            stack.extend(n.children)

    def _set_label(self, tnode: TreeNode[Key], cg: CgroupNode) -> None:
        name = "/" if cg.path == "/" else cg.name
        machine = self._machine_of.get(cg.path)
        parent_machine = self._machine_of.get(cg.path.rsplit("/", 1)[0] or "/")
        tag = f"  [{escape(machine)}]" if machine and machine != parent_machine else ""
        note = self._notes.get(cg.path)
        mark = f"  ({escape(note)})" if note else "  (unreadable)" if cg.unreadable else ""
        plain = name + tag + mark
        key = tnode.data
        if key is None or self._labels.get(key) == plain:
            return
        self._labels[key] = plain
        text = Text(escape(name))  # a Text, never markup; escaped: container root names its cgroups
        if tag:
            text.append(tag, style=self._style("cgroup-tree--machine"))
        if mark:
            text.append(mark, style=self._style("cgroup-tree--unreadable"))
        tnode.set_label(text)

    def _set_process_label(self, tnode: TreeNode[Key], pid: int) -> None:
        plain = f"{pid} {self._commands.get(pid, '?')}"
        key = tnode.data
        if key is None or self._labels.get(key) == plain:
            return
        self._labels[key] = plain
        tnode.set_label(Text(escape(plain), style=self._style("cgroup-tree--process")))

    def _style(self, component: str) -> Style:
        style = self._styles.get(component)
        if style is None:
            style = self._styles[component] = text_style(self, component)
        return style

    # ------------------------------------------------------------ events

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Key]) -> None:
        self._fill(event.node)

    def on_tree_node_collapsed(self, event: Tree.NodeCollapsed[Key]) -> None:
        # Forget a closed branch's contents; it is filled again when reopened.
        node = event.node
        if not node.is_root and node.children:
            for child in node.children:
                self._forget(child)
            node.remove_children()
