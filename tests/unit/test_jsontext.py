"""nsdash.system.jsontext writes what json.dumps writes, for every value (plain ones itself), and reads
what json.loads reads, errors alike."""

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


def _loads(decode, text):
    """('ok', value) or ('error', message): what a reader sees of TEXT."""
    try:
        return "ok", repr(decode(text))
    except ValueError as e:
        return "error", str(e)


@given(VALUES.map(json.dumps) | st.text(max_size=30), st.sampled_from(["", " ", "\n\t", "\r\n "]))
def test_decode_is_json_loads(text, pad):
    for doc in (text, pad + text + pad, text[:-1], text + "x"):
        assert _loads(jsontext.decode, doc) == _loads(json.loads, doc)


@pytest.mark.parametrize("text", ["[NaN, Infinity, -Infinity, 1e400, -0.0]", '{"a": 1, "a": 2}', '"\\ud800"',
                                  '{"a": "tab\tin"}', "{} {}", "", "   ", '{"a":', '"unterminated',
                                  '[1,]', "01", "nul"])
def test_decode_edges_are_json_loads(text):
    assert _loads(jsontext.decode, text) == _loads(json.loads, text)


def test_decoding_a_state_file_does_not_import_json():
    code = ("import sys; from nsdash.system.jsontext import decode; "
            "v = decode('{\"name\": \"web\", \"leader\": 7, \"netif\": [], \"up\": true}\\n'); "
            "print(sorted(n for n in ('json', 're') if n in sys.modules), v)")
    repo = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         cwd=repo, env=dict(os.environ, PYTHONPATH=repo))
    assert out.stdout.strip() == "[] {'name': 'web', 'leader': 7, 'netif': [], 'up': True}"
