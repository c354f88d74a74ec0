"""systemd-cgls-style lines for a cgroup subtree and its processes (pure).

Shared by `nsdash status` (a machine's cgroup) and `nsdash systemctl status`
(a unit's control group): each cgroup lists its processes first, by PID, then
its child cgroups by name, drawn with cgls's glyphs.
"""

from __future__ import annotations

TYPE_CHECKING = False  # collections.abc imports collections: 1-2 ms of `systemctl status`
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

BRANCH, LAST, VERTICAL, SPACE = "├─", "└─", "│ ", "  "


def _parent(group: str) -> str:
    return group.rsplit("/", 1)[0] if "/" in group else ""


def process_tree(top: str, procs: Mapping[str, Sequence[tuple[int, str]]],
                 groups: Iterable[str] = ()) -> list[str]:
    """Lines under TOP (not including TOP itself).

    PROCS maps a cgroup path to its (pid, command line) pairs; GROUPS names
    further cgroups to show even when empty.  Paths share TOP as a prefix ("/"
    separated; TOP may be "" for relative paths); intermediate cgroups between
    TOP and a listed one are drawn too, anything outside TOP is ignored.
    """
    prefix = top + "/" if top else ""
    children: dict[str, set[str]] = {}
    for group in {*procs, *groups}:
        if not group.startswith(prefix) or group == top:
            continue
        while group != top:
            children.setdefault(_parent(group), set()).add(group)
            group = _parent(group)

    def below(group: str, indent: str) -> list[tuple[tuple[int, str] | str, str, bool]]:
        """GROUP's processes then its child cgroups, each with its indent and whether it is last."""
        items: list[tuple[int, str] | str] = [*sorted(procs.get(group, ()))]
        items += sorted(children.get(group, ()))
        return [(item, indent, i == len(items) - 1) for i, item in enumerate(items)]

    # Depth first with a stack, not recursion: a guest nests its cgroups as deep as it likes.
    lines: list[str] = []
    pending = below(top, "")[::-1]
    while pending:
        item, indent, last = pending.pop()
        glyph = LAST if last else BRANCH
        if isinstance(item, tuple):
            lines.append(f"{indent}{glyph}{item[0]} {item[1]}")
        else:
            lines.append(f"{indent}{glyph}{item.rsplit('/', 1)[-1]}")
            pending += below(item, indent + (SPACE if last else VERTICAL))[::-1]
    return lines
