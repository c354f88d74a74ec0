"""Abuse the supervisor's control socket: garbage, floods, half-open and vanishing clients.

(The protocol's own cases, each error code and the SO_PEERCRED refusal, are in
tests/integration/test_machines.py; this adds volume and hostile timing.)
"""

from __future__ import annotations

import json
import random
import socket
import struct
import time

import pytest
from _machines import teardown
from conftest import run_nsdash

from nsdash.machines import client
from nsdash.machines import state as st

SEED = 8


@pytest.fixture
def machine(busybox_tree, machine_name):
    r = run_nsdash("spawn", "--detach", "-M", machine_name, "-bD", str(busybox_tree))
    assert r.returncode == 0, r.stderr
    yield machine_name
    teardown(machine_name)


def _connect(name: str, timeout: float = 5.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(st.machine_dir(name) / st.CONTROL))  # blocking: waits for room in the backlog
    s.settimeout(timeout)
    return s


def _garbage(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) + b"\n"
    if kind == 1:  # JSON of the wrong shapes
        return json.dumps(rng.choice([None, 1, "op", [], {"op": None}, {"op": 5}, {"op": "kill"},
                                      {"op": "kill", "signal": "9"}, {"op": "attach", "rows": -1},
                                      {"op": "hello", "version": "1"}, {"op": "status", "id": {"x": [1] * 50}}])
                          ).encode() + b"\n"
    if kind == 2:  # deep nesting
        depth = rng.randrange(100, 5000)
        return b"[" * depth + b"]" * depth + b"\n"
    if kind == 3:  # long line
        return b"{" + b"a" * rng.randrange(60_000, 200_000) + b"\n"
    if kind == 4:  # unicode trouble, numbers past Python's limit, an id too big to echo back
        return rng.choice(['{"op":"st\udcffatus"}'.encode("utf-8", "surrogatepass"),
                           b'{"op":"kill","signal":' + b"9" * 5000 + b"}",
                           b'{"op":"status","id":"' + b"i" * 65000 + b'"}']) + b"\n"
    return b'{"op":"hello","version":1}\n' * rng.randrange(1, 4)


def test_garbage_on_many_connections_never_stops_the_supervisor(machine):
    rng = random.Random(SEED)
    sent = 0
    for _ in range(40):
        s = _connect(machine)
        f = s.makefile("rb")
        for _ in range(rng.randrange(1, 8)):
            payload = _garbage(rng)
            s.sendall(payload)
            sent += 1
            for _ in range(payload.count(b"\n") if len(payload) < 60_000 else 1):
                line = f.readline()
                assert line, "the supervisor closed a connection because of a client's input"
                reply = json.loads(line)
                assert isinstance(reply, dict) and "ok" in reply
        if rng.random() < 0.5:
            s.sendall(b'{"op":"stat')  # and vanish mid-line
        s.close()
    assert client.status(machine)["state"] == "running"
    print(f"{sent} hostile requests answered")


def test_half_open_and_flooding_clients_do_not_block_others(machine):
    idle = [_connect(machine) for _ in range(50)]  # connect and say nothing
    slow = _connect(machine)
    slow.sendall(b'{"op":"hel')  # a slowloris: half a line, held open
    try:
        t0 = time.monotonic()
        assert client.status(machine)["state"] == "running"
        assert time.monotonic() - t0 < 2.0
    finally:
        for s in [*idle, slow]:
            s.close()
    assert client.status(machine)["state"] == "running"


def test_attached_client_sending_oversized_and_bogus_frames_is_dropped_alone(machine):
    s = _connect(machine)
    f = s.makefile("rb")
    s.sendall(b'{"op":"hello","version":1}\n{"op":"attach","rows":24,"cols":80}\n')
    assert json.loads(f.readline())["ok"]
    assert json.loads(f.readline())["ok"]
    s.sendall(b"I" + struct.pack(">I", 0xFFFFFFF0) + b"x" * 100)  # a length far over the limit
    s.settimeout(5)
    rest = b""
    try:
        while chunk := s.recv(65536):
            rest += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    s.close()
    assert client.status(machine)["state"] == "running"
    other = client.attach(machine)  # the console still serves the next client
    other.close()


@pytest.mark.parametrize("line", [
    b'{"op":"status","id":"' + b"i" * 65000 + b'"}',  # the answer would be over the line limit
    b'{"op":"kill","signal":' + b"9" * 5000 + b"}",  # past Python's int-digits limit
    b"[" * 50_000 + b"]" * 10_000,  # nesting past the recursion limit
])
def test_requests_that_break_naive_json_handling(machine, line):
    s = _connect(machine)
    f = s.makefile("rb")
    s.sendall(b'{"op":"hello","version":1}\n')
    assert json.loads(f.readline())["ok"]
    s.sendall(line + b"\n")
    reply = f.readline()
    assert reply and isinstance(json.loads(reply), dict)  # an answer (an error, or the echo), not a hang-up
    s.sendall(b'{"op":"status"}\n')
    assert json.loads(f.readline())["status"]["name"] == machine
    s.close()
