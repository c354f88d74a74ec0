"""The watch line a far host pushes to the dashboard (issue 20): its format, its parsing against a
hostile far side, the far side's bounds, and HostWatch reading it through a scripted far side
(NSDASH_SSH_COMMAND runs a script that speaks the protocol; no ssh, no far host)."""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

import pytest

from nsdash.cli.watch import _wishes, bounded_cgroups
from nsdash.monitor.tree import from_paths
from nsdash.remote import watch as w
from nsdash.remote.hosts import HostWatch
from nsdash.remote.target import Target
from nsdash.tui.messages import host_path, split_path
from nsdash.tui.remote import HostCgroups


def _line(**over) -> bytes:
    data = {"v": 1, "machines": [{"machine": "bb", "state": "running"}], "cgroups": ["/", "/machine.slice"],
            "rows": [["/", 3, 1.5, 10, 4096, None, None]], "machine_of": {}, "more": 0, **over}
    return json.dumps(data).encode()


def test_a_line_goes_and_comes_back_whole():
    line = w.encode([{"machine": "bb"}], ["/", "/machine.slice", "/machine.slice/machine-bb.scope"],
                    [["/machine.slice/machine-bb.scope", 2, 0.5, 1234, 8192, 1.0, 2.0]],
                    {"/machine.slice/machine-bb.scope": "bb"}, more=7)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    got = w.parse(line[:-1])
    assert got.machines == ({"machine": "bb"},)
    assert got.cgroups == ("/", "/machine.slice", "/machine.slice/machine-bb.scope")
    assert got.rows == (("/machine.slice/machine-bb.scope", 2, 0.5, 1234, 8192, 1.0, 2.0),)
    assert got.machine_of == {"/machine.slice/machine-bb.scope": "bb"} and got.more == 7


@pytest.mark.parametrize("line, why", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "other than a watch line"),
    (b'{"v": 2, "machines": [], "cgroups": []}', "other than a watch line"),
    (b'{"v": 1, "machines": {}, "cgroups": []}', "without machines or cgroups"),
    (b'{"v": 1, "machines": []}', "without machines or cgroups"),
    (b"[" * 100_000 + b"]" * 100_000, "not JSON"),  # nesting deeper than the parser's recursion
])
def test_what_is_not_a_watch_line_is_refused_in_one_line(line, why):
    with pytest.raises(w.WatchError, match=why) as e:
        w.parse(line)
    assert "\n" not in e.value.oneline()


def test_counts_and_lengths_are_bounded():
    with pytest.raises(w.WatchError, match="more than"):
        w.parse(_line(cgroups=["/"] + [f"/c{i}" for i in range(w.MAX_CGROUPS)]))
    with pytest.raises(w.WatchError, match="more than"):
        w.parse(_line(machines=[{}] * (w.MAX_MACHINES + 1)))
    reader = w.LineReader(limit=100)
    assert reader.feed(b"x" * 60) == []
    with pytest.raises(w.WatchError, match="longer than 100 bytes"):
        reader.feed(b"y" * 60)  # no newline yet, and already too long: refused before any parsing
    assert reader.buffer == b""
    with pytest.raises(w.WatchError, match="longer than 100 bytes"):
        w.LineReader(limit=100).feed(b"z" * 150 + b"\n")


def test_the_reader_splits_lines_across_reads():
    reader = w.LineReader()
    assert reader.feed(b'{"a"') == []
    assert reader.feed(b':1}\n{"b":2}\n{') == [b'{"a":1}', b'{"b":2}']
    assert reader.feed(b"}\n") == [b"{}"]


def test_hostile_values_are_dropped_or_unknown_and_names_stay_raw_for_the_escaper():
    evil = "/machine.slice/\x1b]52;c;QUJD\x07\u202e"
    got = w.parse(_line(
        machines=[{"machine": "bb"}, "not a machine", 7],
        cgroups=["/", "/machine.slice", evil, "relative", "/nowhere/child", "/machine.slice/../etc",
                 "/machine.slice//x", 42, "/" + "a" * (w.MAX_PATH + 1), "/machine.slice",
                 "/" + "/".join(["d"] * (w.MAX_DEPTH + 1))],
        rows=[["/", True, float("nan"), -5, "4096", float("inf"), 1e300],
              [evil, 1, 2.5, 3, 4, 5, 6], [evil, 9, 9, 9, 9, 9, 9],  # a second row for one path: dropped
              ["/unsent", 1, 1, 1, 1, 1, 1], ["/machine.slice", 1], "row"],
        machine_of={evil: "bb\x1b[2J", "/machine.slice": "a/b", "/unsent": "x", "/": 5},
        more=-1))
    assert got.machines == ({"machine": "bb"},)
    # a relative path, a dot, an empty component, a parent never sent, a repeat, too long, too deep: gone
    assert got.cgroups == ("/", "/machine.slice", evil)
    assert got.rows == (("/", None, None, None, None, None, None), (evil, 1, 2.5, 3, 4, 5.0, 6.0))
    assert got.machine_of == {evil: "bb\x1b[2J"}  # raw here: the tree and table escape what they show
    assert got.more == 0


def test_host_cgroups_hang_each_host_under_its_own_node():
    view = w.parse(_line(cgroups=["/", "/machine.slice", "/machine.slice/m-bb.scope", "/init.scope"],
                         rows=[["/machine.slice/m-bb.scope", 2, 1.0, 5, 10, None, None], ["/", 9, 50.0, 7, 11, 1, 2]],
                         machine_of={"/machine.slice/m-bb.scope": "bb"}))
    part = HostCgroups("root@far1:2222", view)
    assert part.node.path == "/root@far1:2222" and part.node.name == "root@far1:2222"
    assert [n.path for n in part.node.iter()] == ["/root@far1:2222", "/root@far1:2222/init.scope",
                                                  "/root@far1:2222/machine.slice",
                                                  "/root@far1:2222/machine.slice/m-bb.scope"]
    assert [r.path for r in part.rows] == ["/root@far1:2222/machine.slice/m-bb.scope", "/root@far1:2222"]
    assert part.rows[1].cpu_percent == 50.0 and part.rows[1].counters.cpu_ns == 7000
    assert part.machine_of == {"/root@far1:2222/machine.slice/m-bb.scope": "root@far1:2222/bb"}
    assert split_path(host_path("far1", "/a/b")) == ("far1", "/a/b") and split_path("/far1") == ("far1", "/")


def test_from_paths_builds_the_sorted_tree_and_leaves_orphans_out():
    root = from_paths(["/", "/b", "/a", "/a/y", "/a/x", "/c/orphan", "/b"])
    assert [n.path for n in root.iter()] == ["/", "/a", "/a/x", "/a/y", "/b"]
    assert all(n.pids is None for n in root.iter())


def test_the_far_side_sends_machine_slice_whole_then_the_top_levels_within_the_bound(tmp_path):
    for d in ("machine.slice/m-a.scope/payload/deep", "machine.slice/m-b.scope", "system.slice/x.service/sub",
              "init.scope", "user.slice/user-0.slice/session-1.scope"):
        (tmp_path / d).mkdir(parents=True)
    paths, more = bounded_cgroups(str(tmp_path), 100)
    assert more == 0
    assert "/machine.slice/m-a.scope/payload/deep" in paths  # machine.slice to the bottom
    assert "/system.slice/x.service" in paths and "/system.slice/x.service/sub" not in paths  # the rest: 2 levels
    assert "/user.slice/user-0.slice" in paths and "/user.slice/user-0.slice/session-1.scope" not in paths
    assert paths[0] == "/" and len(set(paths)) == len(paths)
    assert [n.path for n in from_paths(paths).iter()] == sorted(paths, key=lambda p: p.split("/"))
    few, more = bounded_cgroups(str(tmp_path), 4)
    assert few[0] == "/" and all(p.startswith("/machine.slice") for p in few[1:])  # machines first
    assert more == len(paths) - 4


def test_the_far_side_takes_the_interval_and_a_nudge_from_its_stdin():
    assert _wishes(b"\n", 1.0) == (1.0, True)
    assert _wishes(b"2.5\n", 1.0) == (2.5, True)
    assert _wishes(b"0.001\n", 1.0) == (0.25, True) and _wishes(b"1e9\n", 1.0) == (30.0, True)
    assert _wishes(b"nonsense\n", 1.0) == (1.0, False)


# ---------------------------------------------------------------- HostWatch against a scripted far side

FAR = r'''
import base64, json, os, sys, time
spec = json.load(open(sys.argv[1]))
def send(**m):
    os.write(1, (json.dumps(m) + "\n").encode())
send(t="hello", v=[1, 0], nsdash="fake")
buf = b""
while True:
    data = os.read(0, 65536)
    if not data:
        break
    buf += data
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        m = json.loads(line)
        if m.get("t") == "in" and spec.get("record"):  # what the verb would read on its stdin
            with open(spec["record"], "ab") as f:
                f.write(base64.b64decode(m["d"]))
        if m.get("t") != "run":
            continue
        part = spec.get(m["argv"][0], {})
        for fd in (1, 2):
            out = base64.b64decode(part.get(f"fd{fd}", ""))
            for i in range(0, len(out), 30000):
                send(t="out", ch=m["ch"], fd=fd, d=base64.b64encode(out[i:i + 30000]).decode())
        if part.get("code") is not None:
            send(t="exit", ch=m["ch"], code=part["code"])
'''


def _far(tmp_path: Path, monkeypatch, **verbs: dict) -> Path:
    """A scripted far side answering each verb as VERBS says; what the verbs got on stdin: the path returned."""
    script, spec, record = tmp_path / "far.py", tmp_path / "spec.json", tmp_path / "stdin"
    script.write_text(FAR)
    spec.write_text(json.dumps({"record": str(record), **{
        verb: {k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in part.items()}
        for verb, part in verbs.items()}}))
    monkeypatch.setenv("NSDASH_SSH_COMMAND", f"{sys.executable} {script} {spec}")
    return record


def _until(watch: HostWatch, test, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        assert time.monotonic() < deadline, f"{what}: {watch.state()}"
        time.sleep(0.02)


def test_host_watch_takes_good_lines_and_calls_a_bad_one_what_it_is(tmp_path, monkeypatch):
    good = w.encode([{"machine": "bb\x1b[31m", "state": "running"}], ["/", "/machine.slice"], [], {})
    _far(tmp_path, monkeypatch, _watch={"fd1": good + b"{oops\n", "code": None})
    watch = HostWatch(Target("far"), interval=0.2, timeout=10)
    watch.start()
    try:
        _until(watch, lambda: watch.lines >= 1, "the good line")
        _until(watch, lambda: watch.state()[1] is not None, "the bad line reported")
        machines, error, fresh = watch.state()
        assert fresh and machines == [{"machine": "bb\x1b[31m", "state": "running"}]  # kept, shown escaped
        assert error is not None and "not JSON" in error and "\n" not in error
        view = watch.view()
        assert view is not None and view.cgroups == ("/", "/machine.slice")
    finally:
        watch.stop()
    assert not watch._thread.is_alive() and watch._ssh is not None and watch._ssh.poll() is not None


def test_host_watch_refuses_an_endless_line(tmp_path, monkeypatch):
    _far(tmp_path, monkeypatch, _watch={"fd1": b"[" * (w.MAX_LINE + 10), "code": None})
    watch = HostWatch(Target("far"), interval=0.2, timeout=10)
    watch.start()
    try:
        _until(watch, lambda: watch.state()[1] is not None, "the endless line reported", timeout=60)
        assert "longer than" in (watch.state()[1] or "") and watch.lines == 0
    finally:
        watch.stop()


def test_a_far_nsdash_without_watch_is_polled_for_its_list(tmp_path, monkeypatch):
    _far(tmp_path, monkeypatch,
         _watch={"fd2": b"nsdash: '_watch' is not a verb nsdash runs over -H\n", "code": 2},
         list={"fd1": json.dumps([{"machine": "old", "state": "running"}]).encode(), "code": 0})
    watch = HostWatch(Target("far"), interval=0.2, timeout=10)
    watch.start()
    try:
        _until(watch, lambda: watch.state()[2], "the list")
        assert watch.legacy and watch.state()[:2] == ([{"machine": "old", "state": "running"}], None)
        assert watch.view() is None
    finally:
        watch.stop()


def test_a_watch_that_ends_says_why_and_is_tried_again(tmp_path, monkeypatch):
    _far(tmp_path, monkeypatch, _watch={"fd2": b"nsdash: cannot read /sys/fs/cgroup\n", "code": 1})
    watch = HostWatch(Target("far"), interval=0.2, timeout=10)
    watch.start()
    try:
        _until(watch, lambda: watch.state()[1] is not None, "the failure")
        assert watch.state()[1] == "far: nsdash: cannot read /sys/fs/cgroup" and not watch.legacy
        _until(watch, lambda: watch.connects >= 2, "a second try (after 1 s of backoff)")
    finally:
        watch.stop()


def test_the_pace_and_a_nudge_reach_the_running_watch_on_its_stdin(tmp_path, monkeypatch):
    record = _far(tmp_path, monkeypatch, _watch={"fd1": w.encode([], ["/"], [], {}), "code": None})
    watch = HostWatch(Target("far"), interval=1.0, timeout=10)
    watch.start()
    try:
        _until(watch, lambda: watch.lines >= 1, "the first line")
        watch.interval = 2.5  # + and - in the dashboard
        watch.refresh_now()  # after an action
        _until(watch, lambda: record.exists() and record.read_bytes() == b"2.5\n\n", "the wishes on stdin")
        assert _wishes(record.read_bytes(), 1.0) == (2.5, True)  # and what the far side makes of them
        assert watch.interval == 2.5 and watch.connects == 1
    finally:
        watch.stop()


def test_the_hidden_verb_refuses_bad_arguments_and_a_terminal_in_one_line():
    import os
    import pty
    import subprocess

    for bad in (["--every", "1"], ["--interval", "soon"], ["--interval"]):
        r = subprocess.run([sys.executable, "-m", "nsdash", "_watch", *bad], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode != 0 and r.stdout == ""
        assert r.stderr == "nsdash: bad arguments for 'nsdash _watch'; it takes --interval SECONDS only\n", bad
    leader, follower = pty.openpty()
    try:
        r = subprocess.run([sys.executable, "-m", "nsdash", "_watch"], stdout=follower, stderr=subprocess.PIPE,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        os.close(follower)
        os.close(leader)
    assert r.returncode != 0 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("nsdash: 'nsdash _watch' is the far side of the dashboard over -H")
