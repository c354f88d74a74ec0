"""nsdash.system.jsontext writes what json.dumps writes, for every value (plain ones itself)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsdash.system import jsontext

LEAVES = st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False)
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


@given(VALUES, st.sampled_from([None, 0, 1, 2]))
def test_encode_is_json_dumps(value, indent):
    assert jsontext.encode(value, indent) == json.dumps(value, indent=indent)


def test_plain_documents_do_not_import_json():
    """The point of the module: a state file of plain values is written without json."""
    code = ("import sys; from nsdash.system.jsontext import encode; "
            "text = encode({'name': 'web', 'cgroup': r'/machine-a\\x2db \"q\".scope', 'leader': 7, 'netif': [], "
            "'up': True, 'uuid': None}, 1); "
            "print('json' in sys.modules); print(text)")
    repo = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         cwd=repo, env=dict(os.environ, PYTHONPATH=repo))
    imported, text = out.stdout.split("\n", 1)
    assert imported == "False"
    assert json.loads(text) == {"name": "web", "cgroup": '/machine-a\\x2db "q".scope', "leader": 7, "netif": [],
                                "up": True, "uuid": None}


@pytest.mark.parametrize("value", [{1: "a", None: 2}, {"k": "caf\u00e9 \"q\""}, [signal.SIGKILL, True, 1.5],
                                   {"nested": {"a": [], "b": {}}}, "tab\tand\x1b"])
def test_what_json_converts_is_left_to_json(value):
    for indent in (None, 1):
        assert jsontext.encode(value, indent) == json.dumps(value, indent=indent)


def _loads(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError as e:
        return type(e)


def _decode(text: str) -> object:
    """The hand reading (decode() itself hands text to json.loads where json is imported, as here)."""
    try:
        return jsontext.decode_plain(text)
    except ValueError as e:
        return type(e)


@given(VALUES, st.sampled_from([None, 0, 1, 2]))
def test_decode_is_json_loads(value, indent):
    text = json.dumps(value, indent=indent)
    assert _decode(text) == _loads(text)


@given(st.text(alphabet='{}[]",:\\/ -01.5eEtruefalsn\n\u00e9', max_size=30))
def test_decode_of_any_text_is_json_loads(text):
    """Malformed text too: the same value, or the same error."""
    assert _decode(text) == _loads(text)


@pytest.mark.parametrize("text", ['{"a": "q\\"uote\\\\d\\/", "b": [1, -2, true, null, {}], "c": []}',
                                  ' [ 0 , -0 , 12 ] ', '{"a": 1, "a": 2}', '"\\u00e9"', '[01]', '1.5', '-',
                                  '{"a" 1}', '[1,]', '"tab\tin"'])
def test_decode_cases(text):
    assert _decode(text) == _loads(text)


def test_state_is_read_without_json(tmp_path):
    """A state file as the supervisor writes it is read back without importing json."""
    code = ("import sys; from nsdash.system.jsontext import encode, decode; "
            "doc = {'name': 'web', 'cgroup': r'/machine-a\\x2db \"q\".scope', 'leader': 7, 'netif': [], "
            "'up': True, 'uuid': None, 'since': '2026-12-05T05:35:31Z'}; "
            "print(decode(encode(doc, 1)) == doc, 'json' in sys.modules, "
            "all(decode(encode(doc)) == doc for _ in range(40)), 'json' in sys.modules)")
    repo = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         cwd=repo, env=dict(os.environ, PYTHONPATH=repo))
    assert out.stdout.split() == ["True", "False", "True", "True"]  # past HAND_READS files: json


def test_decode_takes_json_where_it_is_imported(monkeypatch):
    """json's C decoder is several times faster: the hand reading is only for processes without json."""
    def hand(text):
        raise AssertionError("read by hand although json is imported")

    monkeypatch.setattr(jsontext, "decode_plain", hand)
    assert jsontext.decode('{"a": [1, "b"]}') == {"a": [1, "b"]}
