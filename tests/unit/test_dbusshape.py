"""dbusshape.conforms: a reply body against the signature systemd answers with (pure logic)."""

from __future__ import annotations

import pytest

from nsdash.system.dbusshape import conforms

ROW = ["a.service", "A", "loaded", "active", "running", "", "/o/a", 0, "", "/"]


@pytest.mark.parametrize(("body", "signature"), [
    ([[ROW, tuple(ROW)]], "a(ssssssouso)"),
    ([[]], "a(ssssssouso)"),
    ([{"Id": "x", "Anything": [1, {"k": b""}]}], "a{sv}"),
    (["/org/freedesktop/systemd1/job/7"], "o"),
    ([True, [("symlink", "/a", "/b")]], "ba(sss)"),
    ([b"\x01\x02", 1.5, 2**64 - 1], "aydt"),
    ([{1: ["a"]}], "a{ias}"),
    ([], ""),
])
def test_bodies_of_the_signature_conform(body, signature):
    assert conforms(body, signature)


@pytest.mark.parametrize(("body", "signature"), [
    ([[["x.service"]]], "a(ssssssouso)"),  # a row too short
    ([[ROW + ["extra"]]], "a(ssssssouso)"),  # a row too long
    ([[[*ROW[:7], "7", *ROW[8:]]]], "a(ssssssouso)"),  # a number as text
    ([[["x"]]], "a{sv}"),  # a list where a dict is promised
    ([{1: "x"}], "a{sv}"),  # a key of another type
    ([7], "o"),
    ([True], "u"),  # a bool is no number here
    (["a", "b"], "s"),  # more values than types
    ([], "o"),  # fewer
    ("s", "s"),  # not a body at all
    ([["x"]], "ay"),
    ([1], "z"),  # a type this module does not know
])
def test_bodies_of_another_shape_do_not(body, signature):
    assert not conforms(body, signature)
