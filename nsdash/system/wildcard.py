"""fnmatch.fnmatchcase without re for the patterns that have no `[`: presets and unit globs.

fnmatch compiles each pattern to a regular expression, and importing it loads re, enum and os
(~12 M instructions of `nsdash systemctl list-unit-files`, whose presets are `*` and `?`
patterns).  A pattern with `[` (a character set, with fnmatch's own rules for `!`, `^`, `]`
and ranges) is still fnmatch's.
"""

from __future__ import annotations


def fnmatchcase(name: str, pattern: str) -> bool:
    """NAME matches PATTERN as fnmatch.fnmatchcase says: `*` any text, `?` any one character
    (a `/` and a newline too), anything else itself."""
    if "[" in pattern:
        import fnmatch

        return fnmatch.fnmatchcase(name, pattern)
    # The classic walk: on a mismatch after a `*`, let that `*` take one more character.
    n = p = 0
    star = -1  # where the last `*` was in PATTERN, and where NAME stood when it was met
    mark = 0
    while n < len(name):
        if p < len(pattern) and pattern[p] == "*":
            star, mark = p, n
            p += 1
        elif p < len(pattern) and (pattern[p] == "?" or pattern[p] == name[n]):
            n += 1
            p += 1
        elif star >= 0:
            mark += 1
            n, p = mark, star + 1
        else:
            return False
    return pattern[p:].strip("*") == ""
