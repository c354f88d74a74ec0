"""bus-call's two ends without a machine: the JSON form of D-Bus values, the request checks, and the
supervisor's worker (machines/busproxy.py) against a real dbus-daemon and against fake buses that
stall, flood or send garbage, each planted where a guest's bus lives (ROOT/run/dbus/system_bus_socket)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from _calls import python_calls

from nsdash.machines import protocol as proto
from nsdash.machines.busproxy import BusProxy, Job
from nsdash.system import dbusjson, jsontext

# ---------------------------------------------------------------- the JSON form


@pytest.mark.parametrize("value", [
    ["text", 0, -1, 2**64 - 1, True, False, 1.5, float("inf"), "/org/freedesktop/systemd1"],
    [b"\x00\xffbytes", b""],
    [{"Id": "a.service", "InvocationID": b"\x01\x02", "Names": ["a", "b"], "Nested": {"k": [1, [2, b"x"]]}}],
    [{1: "one", 2: "two"}, {"\0b": "not a tag", "x": 1}, {"\0d": []}, {}],
    [("a", 1), [("x", b"y", ("z",))], {"LoadError": ("", "")}],
    [[["unit", "desc", "loaded", "active", "running", "", "/o/p", 0, "", "/"]]],
])
def test_dbus_values_round_trip_through_json(value):
    text = json.dumps(dbusjson.encode(value))
    assert jsontext.decode(text, dbusjson.decode_hook) == value
    assert dbusjson.restore(json.loads(text)) == value
    assert [type(v) for v in jsontext.decode(text, dbusjson.decode_hook)] == [type(v) for v in value]


def test_dicts_whose_later_keys_are_not_plain_strings_are_sent_as_pairs():
    """encode() walks a str-keyed dict once: a key past the first that is no plain string (or a
    tag's look-alike) still sends the whole dict as pairs, and subclasses encode as their base."""

    class Name(str):
        pass

    value = [{"a": 1, 2: "b"}, {"a": 1, "\0t": [2]}, {Name("n"): Name("v")}, {"a": [{"b": b"c"}]}]
    encoded = dbusjson.encode(value)
    assert encoded[0] == {dbusjson.DICT_TAG: [["a", 1], [2, "b"]]}
    assert encoded[1] == {dbusjson.DICT_TAG: [["a", 1], ["\0t", [2]]]}
    assert jsontext.decode(json.dumps(encoded), dbusjson.decode_hook) == value


def test_a_properties_answer_is_encoded_without_a_call_per_value():
    """A GetAll's a{sv} as the supervisor encodes it: plain values are taken by their type, not
    through a call each (the encoding was a tenth of a bus-call's time in the supervisor)."""
    body = [{f"P{n}": ("text" if n % 3 else n) for n in range(300)} | {"L": ["a", "b"], "B": b"\x01"}]
    encoded, calls = python_calls(dbusjson.encode, body)
    assert calls <= 8  # 7: the lists and their comprehensions, the dict, the bytes; main made 612
    assert jsontext.decode(json.dumps(encoded), dbusjson.decode_hook) == body


def test_values_without_a_dbus_type_are_refused():
    with pytest.raises(dbusjson.NotEncodable):
        dbusjson.encode([object()])


def test_jsontext_writes_finite_floats_as_json_does():
    for value in (0.1, 1e300, -2.5, 10.0, {"timeout": 7.5}):
        assert jsontext.encode(value) == json.dumps(value)


# ---------------------------------------------------------------- the request


def _request(**args) -> bytes:
    fields = {"destination": "org.freedesktop.systemd1", "path": "/org/freedesktop/systemd1",
              "interface": "org.freedesktop.systemd1.Manager", "member": "ListUnits", **args}
    return proto.encode_request("bus-call", 1, **{k: v for k, v in fields.items() if v is not None})[:-1]


def test_bus_call_requests_are_checked():
    req = proto.decode_request(_request(signature="s", body=["x"], timeout=2.5))
    assert (req.op, req.arg("member"), req.arg("body")) == ("bus-call", "ListUnits", ["x"])
    for bad in ({"member": None}, {"path": ""}, {"interface": "x" * 256}, {"signature": 5},
                {"body": "x"}, {"timeout": 0}, {"timeout": 121}, {"timeout": True}):
        with pytest.raises(proto.BadMessage) as e:
            proto.decode_request(_request(**bad))
        assert e.value.code == "malformed"


def test_replies_over_the_limit_become_one_error_line():
    line = proto.bus_reply(7, ["x" * proto.BUS_REPLY_MAX])
    reply = json.loads(line)
    assert (reply["ok"], reply["error"], reply["id"]) == (False, "oversized", 7)
    assert json.loads(proto.bus_reply(8, [[1, "a"]])) == {"ok": True, "id": 8, "body": [[1, "a"]]}


# ---------------------------------------------------------------- the worker


LEADER = 4242


@pytest.fixture
def tmp_path():
    """A short directory: the bus sockets are bound by path, and AF_UNIX paths end at 108 bytes."""
    path = tempfile.mkdtemp(prefix="busproxy", dir="/tmp")
    yield Path(path)
    shutil.rmtree(path)


def _root(tmp_path):
    run = tmp_path / "proc" / str(LEADER) / "root" / "run" / "dbus"
    run.mkdir(parents=True)
    return str(run / "system_bus_socket")


def _job(timeout: float = 5.0, **args) -> Job:
    fields = {"destination": "org.freedesktop.DBus", "path": "/org/freedesktop/DBus",
              "interface": "org.freedesktop.DBus", "member": "GetId", "timeout": timeout, **args}
    return Job("key", 1, LEADER, fields)


def _answer(proxy: BusProxy, job: Job) -> dict:
    line = proxy.answer(job)
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # one line, whatever happened
    return json.loads(line)


@pytest.fixture
def daemon(tmp_path):
    """A real dbus-daemon (the session configuration: this uid may call anything) at the guest's path."""
    path = _root(tmp_path)
    proc = _start_daemon(path)
    try:
        yield path
    finally:
        proc.terminate()
        proc.wait(10)


def _start_daemon(path: str) -> subprocess.Popen:
    if shutil.which("dbus-daemon") is None:
        pytest.fail("dbus-daemon is not installed (apt-get install dbus)")
    proc = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile",
                             f"--address=unix:path={path}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:  # the socket file appears at bind(), before listen(): wait until a connect is taken
            assert time.monotonic() < deadline, "dbus-daemon did not start"
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.01)
            finally:
                probe.close()
    except BaseException:
        proc.terminate()
        proc.wait(10)
        raise
    return proc


def test_a_real_call_answers_its_body_and_reuses_the_connection(tmp_path, daemon):
    proxy = BusProxy(lambda: None, proc=str(tmp_path / "proc"))
    first = _answer(proxy, _job())
    assert first["ok"] and len(first["body"][0]) == 32  # the bus ID
    wire = proxy._wire
    names = _answer(proxy, _job(member="ListNames"))
    assert "org.freedesktop.DBus" in names["body"][0]
    assert proxy._wire is wire  # no new connection, no second Hello
    creds = _answer(proxy, _job(member="GetConnectionCredentials", signature="s", body=[wire.unique_name]))
    assert creds["body"][0]["ProcessID"] == os.getpid()
    error = _answer(proxy, _job(member="NoSuchMethod"))
    assert (error["ok"], error["error"], error["name"]) == (False, "bus-error",
                                                            "org.freedesktop.DBus.Error.UnknownMethod")
    proxy._close()


def test_a_kept_connection_found_closed_is_made_again_once(tmp_path):
    """The guest's dbus restarted between two calls: the second still answers, on a new connection."""
    path = _root(tmp_path)
    proc = _start_daemon(path)
    try:
        proxy = BusProxy(lambda: None, proc=str(tmp_path / "proc"))
        first = _answer(proxy, _job())
        proc.terminate()
        proc.wait(10)  # (it removes its socket file)
        proc = _start_daemon(path)
        second = _answer(proxy, _job())
        assert first["ok"] and second["ok"] and first["body"] != second["body"]  # another daemon's ID
        proxy._close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_guest_without_a_bus_socket_says_so(tmp_path):
    _root(tmp_path)
    proxy = BusProxy(lambda: None, proc=str(tmp_path / "proc"))
    assert _answer(proxy, _job())["message"] == "no-socket"
    gone = Job("key", 1, 999_999_999, _job().args)
    assert _answer(proxy, gone)["error"] == "bus-unreachable"


def test_a_leader_gone_since_the_call_was_queued_is_not_connected_to(tmp_path, daemon):
    """The call was queued on a boot whose init has since been reaped: its PID (LEADER here) may
    be another process's now, with another root and another bus in it (the host's).  The worker
    connects only while the pidfd taken at queueing still names a live process."""
    child = subprocess.Popen(["true"])
    gone = os.pidfd_open(child.pid)
    child.wait()  # reaped: its PID is free for anyone
    proxy = BusProxy(lambda: None, proc=str(tmp_path / "proc"))
    job = Job("key", 1, LEADER, _job().args, gone)
    reply = _answer(proxy, job)
    assert (reply["ok"], reply["error"]) == (False, "bus-unreachable") and "gone" in reply["message"]
    assert proxy._wire is None
    job.release()
    alive = Job("key", 2, LEADER, _job().args, os.pidfd_open(os.getpid()))
    assert _answer(proxy, alive)["ok"]  # a live leader's call goes through
    alive.release()
    proxy._close()


class FakeBus:
    """A bus at the guest's path that authenticates, then behaves as BEHAVIOUR says."""

    def __init__(self, path: str, behaviour: str) -> None:
        self.behaviour = behaviour
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(4)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(0.1)
        with conn:
            if self.behaviour != "silent":
                self._authenticate(conn)
            while not self.stop.is_set():
                try:
                    if self.behaviour == "huge":  # a header promising 64 MiB, then that many bytes
                        conn.sendall(struct.pack("<cBBBIII", b"l", 2, 0, 1, 64 << 20, 1, 0) + bytes(1 << 16))
                    elif self.behaviour == "garbage":
                        conn.sendall(b"\xff" * 64)
                        self.stop.wait(10)
                    elif self.behaviour == "dribble":  # a valid header, a byte at a time
                        for byte in struct.pack("<cBBBIII", b"l", 2, 0, 1, 8, 1, 0):
                            conn.sendall(bytes([byte]))
                            if self.stop.wait(0.2):
                                return
                    else:
                        self.stop.wait(0.1)
                except OSError:
                    return

    @staticmethod
    def _authenticate(conn: socket.socket) -> None:
        data = b""
        while b"BEGIN\r\n" not in data:
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                return
            data += chunk
            if b"AUTH" in chunk:
                conn.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.listener.close()


@pytest.mark.parametrize(("behaviour", "code"), [("silent", "bus-timeout"), ("dribble", "bus-timeout"),
                                                  ("huge", "oversized"), ("garbage", "bus-unreachable")])
def test_a_misbehaving_bus_gets_one_error_line_and_a_new_connection_after(tmp_path, behaviour, code):
    bus = FakeBus(_root(tmp_path), behaviour)
    try:
        proxy = BusProxy(lambda: None, proc=str(tmp_path / "proc"))
        reply = _answer(proxy, _job(timeout=1.0))
        assert (reply["ok"], reply["error"], reply["id"]) == (False, code, 1)
        assert proxy._wire is None  # a connection left mid-message is never reused
    finally:
        bus.close()


def test_the_worker_answers_through_the_engine_and_refuses_beyond_its_queue(tmp_path):
    bus = FakeBus(_root(tmp_path), "silent")
    woken = threading.Event()
    try:
        proxy = BusProxy(woken.set, proc=str(tmp_path / "proc"))
        accepted = [proxy.submit(Job(i, i, LEADER, _job(timeout=1.0).args)) for i in range(12)]
        assert accepted.count(False) >= 12 - 8 - 1  # the queue holds 8, the worker maybe one more
        answers: list = []
        while len(answers) < accepted.count(True):
            assert woken.wait(30), "the worker never woke the engine"
            woken.clear()
            answers += proxy.take()
        assert sorted(key for key, _ in answers) == [i for i, ok in enumerate(accepted) if ok]
        assert {json.loads(line)["error"] for _, line in answers} == {"bus-timeout"}
        proxy.quiesce(30)  # as before a reboot: the thread ends (clone3 into the cgroup wants no other)
        assert proxy._thread is None and not any(t.name == "bus-call" for t in threading.enumerate())
        assert proxy.take() == []
        woken.clear()
        assert proxy.submit(Job("again", 99, LEADER, _job(timeout=0.5).args))  # and starts again on demand
        assert woken.wait(30)
        assert [key for key, _ in proxy.take()] == ["again"]
        proxy.quiesce(30)
    finally:
        bus.close()


# ---------------------------------------------------------------- the client


def _fake_supervisor(path: str, hello: dict, answers: list[bytes], behind_hello: bytes = b"") -> threading.Thread:
    """A control socket that greets with HELLO's fields (BEHIND_HELLO in the same write: an answer
    there before it is asked), then answers each request with the next of ANSWERS."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            f = conn.makefile("rb")
            for reply in [json.dumps({"ok": True, "id": 1, **hello}).encode() + b"\n" + behind_hello, *answers]:
                if not f.readline():
                    return
                if reply:  # (b"": the request read, nothing sent: the client may be gone)
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_the_client_falls_back_where_no_supervisor_makes_bus_calls(tmp_path, monkeypatch):
    from nsdash.machines.buscall import CallFailed, SupervisorBus

    monkeypatch.setenv("NSDASH_STATE_DIR", str(tmp_path))
    assert SupervisorBus.open("m", 5) is None  # no supervisor at all: a machine of machined's
    (tmp_path / "machines" / "old").mkdir(parents=True)
    old = _fake_supervisor(str(tmp_path / "machines" / "old" / "control"), {"version": 1, "machine": "old"}, [])
    assert SupervisorBus.open("old", 5) is None  # an older supervisor: hello says nothing of bus_call
    old.join(10)
    # A supervisor that ends before its greeting (its machine stopping): EOF, not an EOFError out
    # of the verb (a traceback); the caller's own way to the bus then says what became of it.
    (tmp_path / "machines" / "ending").mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "machines" / "ending" / "control"))
    listener.listen(1)

    def end_unanswered() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            conn.recv(4096)

    ending = threading.Thread(target=end_unanswered, daemon=True)
    ending.start()
    assert SupervisorBus.open("ending", 5, meanwhile=("json",)) is None
    ending.join(10)

    (tmp_path / "machines" / "new").mkdir()
    body = json.dumps({"ok": True, "id": 2, "body": dbusjson.encode([{"Id": "a.service", "ID": b"\x01"}])})
    error = json.dumps({"ok": False, "id": 3, "error": "bus-error", "message": "no such unit",
                        "name": "org.freedesktop.systemd1.NoSuchUnit"})
    new = _fake_supervisor(str(tmp_path / "machines" / "new" / "control"), {"version": 1, "bus_call": True},
                           [body.encode() + b"\n", error.encode() + b"\n"])
    bus = SupervisorBus.open("new", 5)
    assert bus is not None
    assert bus.call("d", "/p", "i", "m", "", [], 5) == [{"Id": "a.service", "ID": b"\x01"}]
    with pytest.raises(CallFailed) as e:
        bus.call("d", "/p", "i", "m", "s", ["x"], 5)
    assert (e.value.code, e.value.name, e.value.message) == ("bus-error", "org.freedesktop.systemd1.NoSuchUnit",
                                                             "no such unit")
    bus.close()
    new.join(10)


def test_the_client_imports_what_it_will_need_while_the_supervisor_works(tmp_path, monkeypatch):
    """SupervisorBus.open(meanwhile=...) (systemctl status' journal reader, ~2 ms of imports): the
    modules are loaded while an answer is not there yet, one at a time, from the greeting on.  The
    fake supervisor answers the hello only once the first module has been imported and the call
    once the second has: without the look between modules the client would wait for them."""
    from nsdash.machines.buscall import SupervisorBus

    monkeypatch.setenv("NSDASH_STATE_DIR", str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    events = [threading.Event(), threading.Event()]
    for n in range(2):
        (tmp_path / f"s21_preloaded{n}.py").write_text(f"import builtins\nbuiltins.__s21_events__[{n}].set()\n")
    monkeypatch.setattr("builtins.__s21_events__", events, raising=False)
    (tmp_path / "machines" / "m").mkdir(parents=True)
    path = str(tmp_path / "machines" / "m" / "control")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    answered_after: list[bool] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            f = conn.makefile("rb")
            f.readline()
            answered_after.append(events[0].wait(10))  # (a bound only: the client never waits for it)
            conn.sendall(json.dumps({"ok": True, "id": 1, "version": 1, "bus_call": True}).encode() + b"\n")
            f.readline()
            answered_after.append(events[1].wait(10))
            conn.sendall(json.dumps({"ok": True, "id": 2, "body": ["x"]}).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    bus = SupervisorBus.open("m", 5, ("s21_preloaded0", "no_such_module_s21", "s21_preloaded1"))
    try:
        assert bus is not None
        assert bus.call("d", "/p", "i", "m", "", [], 5) == ["x"]
    finally:
        if bus is not None:
            bus.close()
        for n in range(2):
            sys.modules.pop(f"s21_preloaded{n}", None)
        thread.join(10)
    assert answered_after == [True, True]
    assert "no_such_module_s21" not in sys.modules  # a module that fails to import is left to its importer


def test_an_answer_already_there_is_read_before_any_import(tmp_path, monkeypatch):
    from nsdash.machines.buscall import SupervisorBus

    monkeypatch.setenv("NSDASH_STATE_DIR", str(tmp_path))
    (tmp_path / "machines" / "m").mkdir(parents=True)
    # the hello answered with the call's answer behind it: there before it is asked; b"": the
    # call's request read, nothing more sent
    answer = json.dumps({"ok": True, "id": 2, "body": [1]}).encode() + b"\n"
    thread = _fake_supervisor(str(tmp_path / "machines" / "m" / "control"), {"version": 1, "bus_call": True},
                              [b""], behind_hello=answer)
    bus = SupervisorBus.open("m", 5)
    assert bus is not None
    bus.meanwhile.append("no_such_module_s21")
    try:
        assert bus.call("d", "/p", "i", "m", "", [], 5) == [1]
        assert bus.meanwhile == ["no_such_module_s21"]  # not tried: the answer was read first
    finally:
        bus.close()
        thread.join(10)
