"""Pure parts of the supervisor, registry and machinectl verbs."""

import json
import re
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nsdash.cli.login import EscapeDetector
from nsdash.cli.machinectl import format_list, parse_signal, table
from nsdash.errors import UsageError
from nsdash.launcher import speccodec
from nsdash.launcher.spec import Bind, ContainerSpec, TmpfsMount
from nsdash.machines import consolelog
from nsdash.machines import state as st
from nsdash.machines.identity import parse_os_release
from nsdash.machines.registry import Machine, parse_fib_trie, validate_name
from nsdash.machines.supervisor import ConsolePace, RebootLimiter, outcome_event
from nsdash.monitor.tree_lines import process_tree


def test_separator_format_is_exact_and_parseable():
    line = consolelog.separator("exited", "status 3", when="2026-11-29T05:00:00Z")
    assert line == b"\n-- nsdash: exited 2026-11-29T05:00:00Z (status 3) --\n"
    assert consolelog.separator("boot 2", when="2026-11-29T05:00:00Z") == \
        b"\n-- nsdash: boot 2 2026-11-29T05:00:00Z --\n"
    m = re.search(consolelog.SEPARATOR, line)
    assert m and m["event"] == b"exited" and m["detail"] == b"status 3"


@pytest.mark.parametrize("detail", [None, "status 3", "signal KILL", 'quote " and \\ back', "tab\there",
                                    "\x1b[2Jescape", "caf\u00e9 \U0001f600", "lone \udc80"])
def test_index_record_is_what_json_writes(detail):
    """Mark.record() writes plain marks without json; every record reads back the same."""
    mark = consolelog.Mark(12345, "2026-11-29T05:00:00Z", "exited", detail)
    assert mark.record() == json.dumps({"offset": 12345, "time": mark.time, "event": "exited",
                                        "detail": detail}).encode() + b"\n"
    assert consolelog.parse_marks(mark.record()) == [mark]


def test_console_log_rotates_once_and_tails_across_the_boundary(tmp_path):
    log = consolelog.ConsoleLog(tmp_path / "console.log", limit=100)
    for i in range(30):
        log.write(f"line {i:02d}\n".encode())  # 8 bytes each
    log.close()
    cur = (tmp_path / "console.log").read_bytes()
    old = (tmp_path / "console.log.1").read_bytes()
    assert len(cur) <= 100 and len(old) <= 100
    assert (old + cur).endswith(b"line 29\n")
    log = consolelog.ConsoleLog(tmp_path / "console.log", limit=100)
    assert log.tail(24) == b"line 27\nline 28\nline 29\n"
    assert log.tail(10_000) == old + cur
    log.close()
    assert consolelog.last_lines(tmp_path / "console.log", 2) == ["line 28", "line 29"]


def test_last_lines_strip_terminal_escapes(tmp_path):
    (tmp_path / "c").write_bytes(b"\x1b[1;32mOK\x1b[0m  started\r\n\x1b[6nlogin: ")
    assert consolelog.last_lines(tmp_path / "c", 5) == ["OK  started", "login: "]


def test_reboot_limiter_allows_a_burst_then_stops_and_forgets_old_reboots():
    lim = RebootLimiter(burst=5, window=10)
    assert all(lim.allow(t) for t in (0, 1, 2, 3, 4))
    assert not lim.allow(5)
    lim = RebootLimiter(burst=5, window=10)
    assert all(lim.allow(t * 3.0) for t in range(20))  # slow reboots never trip it


def test_console_pace_reads_a_busy_exchange_at_once():
    pace = ConsolePace(burst=64, tick=0.01)
    # agetty after a quiet second: "\r\n", then its issue, then "login: ": none waits
    assert [pace.rest_after(n, t, t) for t, n in ((5.0, 3), (5.0003, 34), (5.0006, 13))] == [0.0] * 3
    # a systemd shutdown: 60 status lines 0.3 ms apart, then the cursor query: none waits
    assert [pace.rest_after(90, 6.0 + 0.0003 * i, 6.0 + 0.0003 * i) for i in range(61)] == [0.0] * 61


def test_console_pace_reads_a_flood_once_a_tick_after_its_burst():
    pace = ConsolePace(burst=4, tick=0.01)
    # a flood from a quiet console: the bucket's four looks at once, then a rest of a tick
    # less the quiet between the looks
    assert [pace.rest_after(40, t, t) for t in (1.0, 1.0001, 1.0002)] == [0.0] * 3
    assert pace.rest_after(40, 1.0003, 1.0003) == pytest.approx(0.01 - 0.0003)
    t, rests = 1.0003 + 0.0097, []  # each look begins as its rest ends
    for _ in range(20):
        rests.append(pace.rest_after(65536, t, t))
        t += rests[-1]
    assert rests == [pytest.approx(0.01)] * 20  # one look a tick
    # a look that found nothing takes nothing, and a quiet stretch refills the bucket
    assert pace.rest_after(0, 1.3, 1.3) == 0.0
    assert [pace.rest_after(10, t, t) for t in (1.3001, 1.3002, 1.3003)] == [0.0] * 3


def test_console_pace_never_keeps_more_than_its_burst():
    pace = ConsolePace(burst=4, tick=0.01)
    assert pace.rest_after(10, 100.0, 100.0) == 0.0  # an hour of quiet still allows only BURST at once
    assert [pace.rest_after(10, 100.0 + 0.0001 * i, 100.0 + 0.0001 * i) for i in range(1, 4)][-1] > 0


def test_console_pace_does_not_count_a_look_s_own_time():
    """A flood's look reads 64 KiB, logs it and sends it on, a millisecond or more: the bucket
    refills while the console rests, not while it is read, so a flood costs a look a tick of
    rest.  Counting the look's time too read a flood 100 times a second whatever each look
    took (130 a second over two seconds, the old rule's 66; the supervisor's CPU x1.5)."""
    pace = ConsolePace(burst=4, tick=0.01)
    t, looks = 1.0, 0
    while t < 2.0:  # each look takes 5 ms
        looks += 1
        rest = pace.rest_after(65536, t, t + 0.005)
        t += 0.005 + rest
    assert looks <= 4 + 1.0 / 0.015 + 1, looks  # a look every tick + 5 ms, after the burst (counting its time: 100)
    # a look preempted for 12 ms counts nothing for it: the next one right after it rests
    pace = ConsolePace(burst=2, tick=0.01)
    assert pace.rest_after(4095, 1.0, 1.0) == 0.0
    assert pace.rest_after(4095, 1.0001, 1.0122) > 0


def test_outcome_events():
    assert outcome_event("exited", 3) == ("exited", "status 3")
    assert outcome_event("killed", signal.SIGKILL) == ("killed", "signal SIGKILL")
    assert outcome_event("poweroff", 0) == ("poweroff", None)


def test_state_roundtrip(tmp_path):
    s = st.MachineState(name="m", root="/r", leader=5, cgroup="/machine.slice/machine-m.scope",
                        supervisor=4, started="a", since="b", netif=["ve-m"])
    st.write_state(tmp_path, s)
    assert st.read_state(tmp_path) == s
    assert '"class": "container"' in (tmp_path / "state.json").read_text()
    (tmp_path / "state.json").write_text("{torn")
    assert st.read_state(tmp_path) is None
    for foreign in ("[]", "7", '"x"', "[" * 100_000 + "]" * 100_000, "1" * 5000):  # not a state: none
        (tmp_path / "state.json").write_text(foreign)
        assert st.read_state(tmp_path) is None
    assert not st.supervisor_alive(tmp_path)


def test_spec_codec_roundtrip_keeps_types():
    spec = ContainerSpec(directory=Path("/srv/t"), machine="m", boot=True, command=("a", "b"),
                         setenv=(("A", "1"),), binds=(Bind(Path("/x"), "/y", True),),
                         tmpfs=(TmpfsMount("/tmp"),), capabilities=frozenset({"CAP_NET_ADMIN"}))
    back = speccodec.loads(speccodec.dumps(spec))
    assert back == spec
    assert isinstance(back.directory, Path) and isinstance(back.binds[0].source, Path)
    assert all(type(getattr(back, name)) is type(getattr(spec, name)) for name in spec._fields)


def test_table_and_list_follow_machinectl():
    assert table(["A", "BB"], [["xyz", "1"], ["q", "22"]]) == "A   BB\nxyz 1\nq   22\n"
    ms = [Machine("web", os_release={"ID": "debian", "VERSION_ID": "12"}, addresses=["10.0.0.2", "fe80::1"]),
          Machine("nspawned", service="systemd-nspawn", source="machined")]
    text = format_list(ms)
    # machinectl's six columns first, in its order; nsdash's STATE last
    assert text.splitlines()[0].split() == ["MACHINE", "CLASS", "SERVICE", "OS", "VERSION", "ADDRESSES", "STATE"]
    assert "web      container nsdash         debian 12      10.0.0.2… -\n" in text
    assert text.endswith("\n2 machines listed.\n")
    assert format_list([]) == "MACHINE CLASS SERVICE OS VERSION ADDRESSES STATE\nNo machines.\n"
    assert "listed" not in format_list(ms, legend=False)


def test_process_tree_draws_processes_then_children():
    procs = {"": [(7, "late"), (1, "init")], "a": [(5, "x")], "a/b": [], "c": [(9, "y")]}
    assert process_tree("", procs) == ["├─1 init", "├─7 late", "├─a", "│ ├─5 x", "│ └─b", "└─c", "  └─9 y"]


def test_process_tree_adds_intermediate_groups_and_ignores_outsiders():
    procs = {"/u.service": [(3, "main")], "/u.service/x/y": [(4, "deep")], "/other": [(5, "no")]}
    assert process_tree("/u.service", procs, groups=["/u.service/empty"]) == [
        "├─3 main", "├─empty", "└─x", "  └─y", "    └─4 deep"]


def test_parse_signal():
    assert parse_signal("KILL") == signal.SIGKILL
    assert parse_signal("sigterm") == signal.SIGTERM
    assert parse_signal("9") == 9
    assert parse_signal("RTMIN+4") == signal.SIGRTMIN + 4
    assert parse_signal("rtmax-1") == signal.SIGRTMAX - 1
    for bad in ("NOPE", "0", "99", "RTMIN+99", "RTMAX-99", "RTMIN+", "-9", "", "KILL\n"):
        with pytest.raises(UsageError):
            parse_signal(bad)


def test_os_release_and_addresses_parsing():
    assert parse_os_release('ID=debian\nVERSION_ID="12"\n# c\nPRETTY_NAME=\'D 12\'\n') == \
        {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "D 12"}
    trie = ("Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.0.0.2\n        /32 host LOCAL\n"
            "     |-- 127.0.0.1\n        /32 host LOCAL\nLocal:\n     |-- 10.0.0.2\n        /32 host LOCAL\n")
    assert parse_fib_trie(trie) == ["10.0.0.2"]


def test_machine_names_are_validated():
    assert validate_name("t1-a.b-c") == "t1-a.b-c"
    for bad in ("", "../x", "a/b", "-x", "x" * 65):
        with pytest.raises(UsageError):
            validate_name(bad)


def test_escape_detector_needs_three_within_a_second():
    d = EscapeDetector()
    assert not d.feed(b"\x1d\x1d", 0.0)
    assert d.feed(b"\x1d", 0.5)
    d = EscapeDetector()
    assert not d.feed(b"\x1d\x1d", 0.0) and not d.feed(b"\x1d", 1.5)
    d = EscapeDetector()
    assert not d.feed(b"\x1dx\x1d\x1d", 0.0)


def test_since_formatting():
    from nsdash.cli.machinectl import _since

    now = datetime(2026, 11, 29, 6, 0, 5, tzinfo=UTC)
    assert _since("2026-11-29T05:58:00Z", now) == "Sun 2026-11-29 05:58:00 UTC; 2min 5s ago"


def test_since_reads_what_strptime_reads():
    """The supervisor's form is read by hand (status imports no _strptime); strptime is the judge."""
    from nsdash.cli.machinectl import _utc_seconds

    def strptime(iso):
        try:
            return int(datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
        except ValueError:
            return None

    def leap(y):
        return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)

    days = [datetime(y, m, d, tzinfo=UTC) for y in (1000, 1600, 1900, 1970, 2000, 2024, 2026, 2100, 9999)
            for m in (1, 2, 3, 12) for d in (1, 28, 29, 31) if m != 2 or d <= 28 or (d == 29 and leap(y))]
    spellings = [t.strftime("%Y-%m-%dT23:59:59Z") for t in days]
    spellings += ["2026-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-04-31T00:00:00Z",
                  "2026-11-29T24:00:00Z", "2026-11-29T05:58:60Z", "2026-1-5T1:2:3Z", "２０２６-11-29T05:58:00Z", "", "x"]
    for iso in spellings:
        assert _utc_seconds(iso) == strptime(iso), iso
    assert _utc_seconds("2024-02-29T23:59:59Z") == 1709251199


def test_list_state_column_shows_a_starting_guest_with_its_status_escaped():
    state = st.MachineState(name="m", root="/r", leader=5, cgroup="/c", supervisor=4, started="a", since="b",
                            state="starting", status_text="Waiting for \x1b]0;owned\x07 disk")
    text = format_list([Machine("m", state=state)], legend=False)
    assert text.rstrip().endswith("starting (Waiting for \\x1b]0;owned\\x07 disk)")
    assert "\x1b" not in text
    running = st.MachineState(name="m", root="/r", leader=5, cgroup="/c", supervisor=4, started="a", since="b",
                              state="running", status_text="Ready.")
    assert format_list([Machine("m", state=running)], legend=False).split()[-1] == "running"


def test_state_keeps_status_text_and_foreground(tmp_path):
    s = st.MachineState(name="m", root="/r", leader=5, cgroup="/c", supervisor=4, started="a", since="b",
                        state="degraded", status_text="1 unit failed", foreground=True, command=["sh"])
    st.write_state(tmp_path, s)
    back = st.read_state(tmp_path)
    assert back == s and back.status_text == "1 unit failed" and back.foreground and back.command == ("sh",)


def test_initctl_request_is_telinits_struct():
    from nsdash.machines import shutdown

    data = shutdown.initctl_request("0")
    assert len(data) == 384  # sizeof(struct init_request) in sysvinit's initreq.h
    magic, cmd, runlevel, sleeptime = __import__("struct").unpack_from("=iiii", data)
    assert (magic, cmd, runlevel, sleeptime) == (0x03091969, 1, ord("0"), 3)
    assert data[16:] == bytes(368)
    assert shutdown.initctl_request("6")[8] == ord("6")


def test_protocol_wait_flag_is_checked():
    from nsdash.machines import protocol as proto

    assert proto.decode_request(b'{"op":"poweroff","wait":true}').arg("wait") is True
    with pytest.raises(proto.BadMessage):
        proto.decode_request(b'{"op":"terminate","wait":"yes"}')


def test_marks_go_to_the_side_index_with_the_offset_of_their_line(tmp_path):
    log = consolelog.ConsoleLog(tmp_path / "console.log")
    log.write(b"guest says hi")
    line = log.mark("boot 2", "first\nsecond", when="2026-11-29T05:00:00Z")
    log.close()
    assert line == b"\n-- nsdash: boot 2 2026-11-29T05:00:00Z (first second) --\n"  # one line, whatever the detail
    [mark] = consolelog.read_marks(tmp_path / "console.log")
    data = (tmp_path / "console.log").read_bytes()
    assert data[mark.offset:].split(b"\n")[0] == mark.text.encode() == line.strip(b"\n")
    assert (mark.event, mark.detail) == ("boot 2", "first second")
    (tmp_path / "console.log.idx").write_bytes(mark.record() + b'{"offset": 3, "ti')  # a cut-off record
    assert consolelog.read_marks(tmp_path / "console.log") == [mark]


@pytest.mark.parametrize("stream, start", [
    (b"\xa9 tail of a character\r\nwhole line\r\n", b"whole line\r\n"),
    (b"5;1H\x1b[2Jrest\nnext\n", b"next\n"),  # cut inside a CSI: its tail is shown as text
    (b"31;1m red \x1b[0m\nnext\n", b"next\n"),
    (b"itle text\nmore title\x07 shown\nnext\n", b"next\n"),  # inside an OSC that holds an LF
    (b"itle\x1b\\after\nnext\n", b"next\n"),  # ... ended by ST
    (b"ok\n\x1b]0;open title\nstill title\nnext\n", b"\x1b]0;open title\nstill title\nnext\n"),
    (b"abc\x1b[12\n;3Hx\nnext\n", b"next\n"),  # an LF inside a CSI is not its end
])
def test_a_replay_starts_in_the_ground_state(stream, start):
    assert stream[consolelog.safe_start(stream):] == start


def test_a_replay_never_starts_inside_an_open_sequence():
    assert consolelog.safe_start(b"no newline at all") == len(b"no newline at all")
    assert consolelog.safe_start(b"x\x1b[3") == len(b"x\x1b[3")
    assert consolelog.safe_start(b"x\x1b]0;title\nstill in it") == len(b"x\x1b]0;title\nstill in it")


def test_tail_safe_cuts_only_a_cut_stream(tmp_path):
    log = consolelog.ConsoleLog(tmp_path / "console.log")
    log.write("[  OK  ] caf\u00e9\r\n\x1b[32mgreen\x1b[0m\r\nlogin: ".encode())
    whole = (tmp_path / "console.log").read_bytes()
    assert log.tail_safe(1 << 20) == whole  # the machine's first byte is a ground state
    assert whole[13:14] == b"\xa9" and whole[18:19] == b"3"
    assert log.tail_safe(len(whole) - 13) == b"\x1b[32mgreen\x1b[0m\r\nlogin: "  # cut inside the "é"
    assert log.tail_safe(len(whole) - 18) == b"login: "  # cut inside ESC[32m
    log.close()


# The bytes that make or break an escape sequence, and some text around them.
_ESCAPE_BYTES = [b"\x1b", b"\x1b[", b"\x1b(", b"[", b"(", b")", b"\r", b"\n", b"0", b"1;31", b"?25", b" ", b"!", b"/", b"m", b"K",
                 b"B", b"~", b"\x7f", b"a", "é".encode(), b"\xe2\x82", b"\xff"]


def _escape_soup():
    from hypothesis import strategies as hst

    token = hst.sampled_from(_ESCAPE_BYTES)
    return hst.lists(hst.one_of(token, token, token, hst.binary(max_size=4)), max_size=30).map(b"".join)


def test_strip_escapes_is_re_sub():
    """The hand-made stripper `nsdash status` uses removes exactly what re.sub of STRIPPED removes."""
    from hypothesis import given, settings

    @settings(max_examples=3000, deadline=None)
    @given(_escape_soup())
    def check(data):
        assert consolelog.strip_escapes(data) == re.sub(consolelog.STRIPPED, b"", data)

    check()
    boot = b"\x1b[0;32m  OK  \x1b[0m] Started \x1b(B\x1b[1;39mjournald\x1b[0m.\r\n\x1b[?25l\x1b[K\x1b"
    assert consolelog.strip_escapes(boot) == b"  OK  ] Started journald.\n\x1b"


def test_last_lines_of_a_rotated_log(tmp_path):
    log = tmp_path / "console.log"
    (tmp_path / ("console.log" + consolelog.ROTATED)).write_bytes(b"old one\r\nold \x1b[1mtwo\x1b[0m\n")
    log.write_bytes(b"\n\x1b[32mnew\x1b[0m one\r\n   \n")
    assert consolelog.last_lines(str(log), 2) == ["old two", "new one"]
    assert consolelog.last_lines(log, 10) == ["old one", "old two", "new one"]


def test_tail_safe_from_where_the_reader_left_off_is_whole(tmp_path):
    """A tail that starts where the reader's stream left off (SINCE) goes on from its last byte:
    nothing is cut, not the first line, not a sequence the reader's last bytes began."""
    log = consolelog.ConsoleLog(tmp_path / "console.log")
    log.write(b"x" * 100 + b"\r\nshown before\r\n\x1b[3")
    since = log.position
    log.write(b"2mgreen\x1b[0m\r\nfirst line\r\nlast line\r\n")
    after = b"2mgreen\x1b[0m\r\nfirst line\r\nlast line\r\n"
    assert log.tail_safe(len(after), since=since) == after
    assert log.tail_safe(1 << 14, since=since) == after  # never more than came after it
    assert log.tail_safe(len(after), since=log.position) == b""
    # Without SINCE, or when more than NBYTES came after it, the cut point is unknown: safe_start's.
    assert log.tail_safe(len(after)) == b"first line\r\nlast line\r\n"
    assert log.tail_safe(len(after) - 1, since=since) == b"first line\r\nlast line\r\n"
    log.close()


def test_tail_safe_from_a_point_the_log_lost_bytes_after_is_cut(tmp_path):
    """Bytes the log could not keep (a full disk) break the stream: the tail is cut safely."""
    import os

    log = consolelog.ConsoleLog(tmp_path / "console.log")
    log.write(b"before\r\n")
    since = log.position
    fd, log._fd = log._fd, os.open(tmp_path / "console.log", os.O_RDONLY)  # every write fails
    log.write(b"lost line\r\n")
    os.close(log._fd)
    log._fd = fd
    log.write(b"kept\r\nlast\r\n")
    assert log.dropped == len(b"lost line\r\n") and log.whole_from == log.position - len(b"kept\r\nlast\r\n")
    assert log.tail_safe(1 << 14, since=since) == b"before\r\nkept\r\nlast\r\n"  # the log's start: whole
    assert log.tail_safe(12, since=since) == b"last\r\n"
    assert log.tail_safe(12, since=log.whole_from) == b"kept\r\nlast\r\n"
    log.close()


def test_tail_safe_from_before_a_rotation_is_whole(tmp_path):
    log = consolelog.ConsoleLog(tmp_path / "console.log", limit=64)
    log.write(b"a" * 40 + b"\r\n")
    since = log.position - 10
    log.write(b"rotated here\r\n" * 2)
    assert (tmp_path / "console.log.1").exists()
    assert log.tail_safe(40, since=since) == b"a" * 8 + b"\r\n" + b"rotated here\r\n" * 2
    log.close()
