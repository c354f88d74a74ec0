"""The cgroup tree and the CPU table over remote hosts, from RemoteReaders fed fixed watch lines
(no ssh): one top node per host, a Host column, a host that never answered shown unreachable,
far names escaped."""

from __future__ import annotations

from tuikit import sample_app, wait_for

from nsdash.remote import watch as w
from nsdash.remote.target import Target
from nsdash.tui.history import MetricHistory
from nsdash.tui.messages import SnapshotReady
from nsdash.tui.remote import UNREACHABLE, RemoteHosts, RemoteReaders
from nsdash.tui.widgets.cgroup_tree import CgroupTree
from nsdash.tui.widgets.cpu_table import CpuTable

SIZE = (160, 40)
EVIL = "/machine.slice/\x1b]0;pwned\x07m-bb.scope"


def _view(host: str) -> w.Watch:
    cgroups = ["/", "/init.scope", "/machine.slice", "/machine.slice/m-bb.scope"]
    rows = [["/", 20, 12.5, 10**6, 1 << 30, None, None], ["/machine.slice/m-bb.scope", 3, 2.0, 5000, 1 << 20, 0, 0]]
    machine_of = {"/machine.slice/m-bb.scope": "bb"}
    if host == "far2":
        cgroups.append(EVIL)
        rows.append([EVIL, 1, 0.0, 1, 4096, None, None])
        machine_of[EVIL] = "evil"
    return w.parse(w.encode([{"machine": "bb", "state": "running"}], cgroups, rows, machine_of)[:-1])


def _readers() -> RemoteReaders:
    hosts = RemoteHosts([Target("far1"), Target("far2"), Target("far3")])
    hosts.started = True  # no threads, no ssh: the test plays the far sides
    readers = RemoteReaders(hosts)
    for host in ("far1", "far2"):
        view = _view(host)
        hosts.watches[host]._answered(list(view.machines), view)
    hosts.watches["far3"]._failed(OSError("connection refused"))  # down from the start: never answered
    return readers


def test_the_snapshot_keys_each_host_under_its_node_and_keeps_the_tree_while_nothing_changed():
    readers = _readers()
    snap = readers.snapshot()
    assert snap.tree is not None
    assert [n.path for n in snap.tree.children] == ["/far1", "/far2", "/far3"]
    assert snap.tree.children[2].children == ()
    assert snap.unreachable == ("far3",) and dict(snap.notes) == {"/far3": UNREACHABLE}
    assert {r.path for r in snap.rows} == {"/far1", "/far1/machine.slice/m-bb.scope", "/far2",
                                           "/far2/machine.slice/m-bb.scope", "/far2" + EVIL, "/far3"}
    assert snap.machine_of["/far2" + EVIL] == "far2/evil"
    assert readers.snapshot().tree is snap.tree  # no new line: the pane has nothing to redo
    history = MetricHistory()
    history.update(snap)  # the machine list's CPU column: each machine's top cgroup's row, by the map
    assert history.cpu("far1/bb") == [2.0] == history.cpu("far2/bb")
    view = _view("far1")
    readers.hosts.watches["far1"]._answered(list(view.machines), view)
    assert readers.snapshot().tree is not snap.tree


async def test_tree_and_cpu_table_show_every_host_and_the_one_that_is_down():
    snap = _readers().snapshot()
    app = sample_app(hosts=[Target("far1"), Target("far2"), Target("far3")])
    async with app.run_test(size=SIZE) as pilot:
        app.post_message(SnapshotReady(snap))
        table = app.screen.query_one(CpuTable)
        tree = app.screen.query_one(CgroupTree)
        await wait_for(pilot, lambda: len(table._rows) == 6, what=lambda: f"six rows: {table._rows}")
        assert [c.label.plain for c in table.columns.values()][:3] == ["Host", "Control Group", "Tasks"]
        assert table._rows["/far1/machine.slice/m-bb.scope"][:3] == ("far1", "/machine.slice/m-bb.scope", "3")
        assert table._rows["/far2"][:2] == ("far2", "/")
        assert table._rows["/far3"][:3] == ("far3", UNREACHABLE, "-")
        shown = [str(table.get_cell("/far2" + EVIL, "path")), str(table.get_cell("/far2" + EVIL, "host"))]
        assert not any(c in text for text in shown for c in "\x1b\x07")
        assert shown[0].endswith("7m-bb.scope")  # the escaped BEL, ellipsized

        def label(path: str) -> str:
            node = tree.node_for(("cg", path))
            return node.label.plain if node is not None else ""

        await wait_for(pilot, lambda: label("/far2/machine.slice/m-bb.scope") != "", what="far2's machines open")
        assert [label(f"/far{i}") for i in (1, 2)] == ["far1", "far2"]
        assert label("/far3") == f"far3  ({UNREACHABLE})"
        assert label("/far1/machine.slice/m-bb.scope") == "m-bb.scope  [far1/bb]"
        evil = label("/far2" + EVIL)
        assert evil and "\x1b" not in evil and "\x07" not in evil and "[far2/evil]" in evil
        node = tree.node_for(("cg", "/far1/init.scope"))
        assert node is not None and not node.is_expanded  # outside machine.slice: closed at first
