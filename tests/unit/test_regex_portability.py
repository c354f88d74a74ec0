"""nsdash's regular expressions mean the same on every Python 3.11 it runs on.

`make venv` prefers Debian's /usr/bin/python3.11 (3.11.2 on Debian 12), whose
re gets possessive quantifiers wrong (CPython gh-106052, fixed in 3.11.5);
atomic groups came in the same release.  So no pattern handed to `re` uses
either: a fast path that worked on a newer 3.11 would silently differ there.
"""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# A quantifier followed by `+` (possessive), or `(?>` (an atomic group).  An escaped
# `\+` or `\*` is a literal character, not a quantifier.
_UNPORTABLE = re.compile(r"(?<!\\)(?:[*+?}])\+|\(\?>")
_RE_FUNCTIONS = {"compile", "match", "fullmatch", "search", "findall", "finditer", "sub", "subn", "split"}


def _pattern_texts(call: ast.Call) -> list[str]:
    """The literal text of CALL's pattern argument (the constant parts of an f-string)."""
    if not call.args:
        return []
    arg = call.args[0]
    parts = arg.values if isinstance(arg, ast.JoinedStr) else [arg]
    return [p.value for p in parts if isinstance(p, ast.Constant) and isinstance(p.value, (str, bytes))]


def _unportable_patterns(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
                and node.func.attr in _RE_FUNCTIONS):
            for text in _pattern_texts(node):
                text = text if isinstance(text, str) else text.decode("latin-1")
                if _UNPORTABLE.search(text):
                    found.append(text)
    return found


def test_the_check_finds_possessive_quantifiers_and_atomic_groups():
    assert _unportable_patterns('import re\nre.compile(f"((?:[{x}]++|a*+m)++)")')
    assert _unportable_patterns('import re\nre.match(r"(?>ab|a)c", s)')
    assert _unportable_patterns('import re\nre.compile(rb"a{2,3}+")')
    assert not _unportable_patterns('import re\nre.compile(r"(?:[a-z]+|\\+\\+)+(\\r\\n)?")')


def test_no_pattern_in_nsdash_uses_them():
    offenders = {}
    for path in sorted((REPO / "nsdash").rglob("*.py")):
        found = _unportable_patterns(path.read_text())
        if found:
            offenders[str(path.relative_to(REPO))] = found
    assert offenders == {}
