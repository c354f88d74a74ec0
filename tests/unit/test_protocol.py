"""The control protocol's codec: requests, responses, line and frame splitting."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as s

from nsdash.machines import protocol as proto


def test_request_roundtrip_keeps_id_and_arguments():
    line = proto.encode_request("kill", 7, signal=15, whom="all")
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    req = proto.decode_request(line[:-1])
    assert (req.op, req.id, req.arg("signal"), req.arg("whom")) == ("kill", 7, 15, "all")


@pytest.mark.parametrize("line, code", [
    (b"not json", "malformed"),
    (b"[1, 2]", "malformed"),
    (b'{"id": 1}', "malformed"),
    (b'{"op": 5}', "malformed"),
    (b'{"op": "format-disk"}', "unknown-op"),
    (b'{"op": "hello"}', "malformed"),
    (b'{"op": "hello", "version": "1"}', "malformed"),
    (b'{"op": "kill", "signal": 0}', "malformed"),
    (b'{"op": "kill", "signal": 99}', "malformed"),
    (b'{"op": "kill", "signal": 9, "whom": "everyone"}', "malformed"),
    (b'{"op": "attach", "rows": 0, "cols": 80}', "malformed"),
    (b'{"op": "attach", "replay": -1}', "malformed"),
    (b'{"op": "poweroff", "timeout": true}', "malformed"),
    (b'{"op": "reboot", "timeout": 0}', "malformed"),
    (b"\xff\xfe", "malformed"),
])
def test_bad_requests_name_their_problem(line, code):
    with pytest.raises(proto.BadMessage) as e:
        proto.decode_request(line)
    assert e.value.code == code and e.value.message


def test_responses():
    good = proto.decode_response(proto.ok(3, machine="m")[:-1])
    assert good == {"ok": True, "id": 3, "machine": "m"}
    bad = json.loads(proto.error("version", "nope", 4))
    assert bad == {"ok": False, "id": 4, "error": "version", "message": "nope"}
    with pytest.raises(proto.BadMessage):
        proto.decode_response(b'{"fine": 1}')


def test_line_reader_splits_across_chunks_and_keeps_the_rest():
    r = proto.LineReader()
    assert r.feed(b'{"op":"hel') == []
    assert r.feed(b'lo"}\n{"op":"status"}\nraw') == [b'{"op":"hello"}', b'{"op":"status"}']
    assert r.pending() == b"raw"


def test_line_reader_reports_an_oversized_line_once_and_resyncs():
    r = proto.LineReader(limit=16)
    out = r.feed(b"x" * 40)
    assert len(out) == 1 and isinstance(out[0], proto.BadMessage) and out[0].code == "oversized"
    assert r.feed(b"y" * 40) == []  # still the same overlong line: no second report
    assert r.feed(b'zz\n{"op":"x"}\n') == [b'{"op":"x"}']


def test_frames_roundtrip_and_split_long_output():
    data = bytes(range(256)) * 600  # longer than one frame
    wire = proto.output_frames(data) + proto.winsize_frame(50, 132) + proto.event_frame("reboot")
    reader = proto.FrameReader()
    frames = []
    for i in range(0, len(wire), 999):  # arbitrary chunking
        frames += reader.feed(wire[i:i + 999])
    outputs = [p for k, p in frames if k == proto.FRAME_OUTPUT]
    assert len(outputs) == 3 and b"".join(outputs) == data
    assert proto.parse_winsize(frames[-2][1]) == (50, 132)
    assert json.loads(frames[-1][1]) == {"event": "reboot"}


def test_frame_reader_rejects_unknown_types_and_oversized_lengths():
    with pytest.raises(proto.BadMessage):
        proto.FrameReader().feed(b"Z\0\0\0\1x")
    with pytest.raises(proto.BadMessage):
        proto.FrameReader().feed(b"I\xff\xff\xff\xff")
    with pytest.raises(proto.BadMessage):
        proto.parse_winsize(b"\0\1")


@given(s.lists(s.binary(max_size=300), max_size=20), s.integers(1, 50))
def test_line_reader_never_loses_or_invents_lines(chunks, step):
    lines = [c.replace(b"\n", b"") for c in chunks]
    stream = b"".join(line + b"\n" for line in lines)
    r = proto.LineReader()
    got = []
    for i in range(0, len(stream), step):
        got += r.feed(stream[i:i + step])
    assert got == lines
