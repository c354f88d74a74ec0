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
