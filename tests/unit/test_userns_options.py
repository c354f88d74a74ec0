"""--private-users= / --private-users-ownership= parsing and the "pick" rule (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsdash.errors import UsageError
from nsdash.launcher import userns
from nsdash.launcher.userns import PrivateUsers, parse_ownership, parse_private_users, pick_base


@pytest.mark.parametrize("value,expected", [
    ("no", PrivateUsers("no")), ("false", PrivateUsers("no")), ("0", PrivateUsers("no")),
    ("yes", PrivateUsers("yes")), ("true", PrivateUsers("yes")),
    ("pick", PrivateUsers("pick")), ("identity", PrivateUsers("identity", 0)),
    ("524288", PrivateUsers("fixed", 524288, 65536)),
    ("524288:1000", PrivateUsers("fixed", 524288, 1000)),
])
def test_private_users_values(value, expected):
    assert parse_private_users(value) == expected


@pytest.mark.parametrize("value", ["", "maybe", "-1", "1:0", "1:-5", "4294967295:2", "x:1", "1:x", ":"])
def test_bad_private_users_values_are_usage_errors(value):
    with pytest.raises(UsageError, match="private-users"):
        parse_private_users(value)


@pytest.mark.parametrize("value,expected", [("off", "off"), ("no", "off"), ("chown", "chown"),
                                            ("map", "map"), ("AUTO", "auto")])
def test_ownership_values(value, expected):
    assert parse_ownership(value) == expected


@given(st.text(max_size=20))
def test_any_text_parses_or_is_a_usage_error(text):
    try:
        parse_private_users(text)
    except UsageError as e:
        assert "private-users" in e.message


def test_pick_is_stable_aligned_and_in_range():
    a = pick_base("web")
    assert a == pick_base("web")
    assert a % userns.RANGE_SIZE == 0
    assert userns.PICK_FIRST <= a < userns.PICK_LAST
    assert pick_base("db") != a  # different names spread over the slots


def test_pick_skips_ranges_in_use():
    first = pick_base("web")
    nxt = pick_base("web", used=[(first + 5, 1)])
    assert nxt != first and nxt % userns.RANGE_SIZE == 0
    assert not (nxt <= first + 5 < nxt + userns.RANGE_SIZE)


def test_pick_reuses_a_previous_pick_recorded_in_the_tree_owner():
    prev = userns.PICK_FIRST + 7 * userns.RANGE_SIZE
    assert pick_base("anything", root_owner=prev) == prev
    assert pick_base("web", root_owner=0) == pick_base("web")  # an unshifted tree: the name's slot
    assert pick_base("web", root_owner=prev + 1) == pick_base("web")  # not a slot start


def test_resolve_range(tmp_path):
    assert userns.resolve_range(PrivateUsers("no"), "m", tmp_path) is None
    assert userns.resolve_range(PrivateUsers("identity", 0), "m", tmp_path) == (0, 65536)
    assert userns.resolve_range(PrivateUsers("fixed", 10, 20), "m", tmp_path) == (10, 20)
    owner = tmp_path.stat().st_uid
    assert userns.resolve_range(PrivateUsers("yes"), "m", tmp_path) == (owner, 65536)


def test_host_ranges_reads_passwd_and_subuid(tmp_path):
    (tmp_path / "passwd").write_text("root:x:0:0::/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n")
    (tmp_path / "subuid").write_text("bob:100000:65536\n")
    assert userns.host_ranges(tmp_path) == [(0, 1), (1000, 1), (100000, 65536)]


def test_id_map_text():
    assert userns.id_map(524288, 65536) == "0 524288 65536\n"


def test_effective_ownership():
    base, size = userns.PICK_FIRST, userns.RANGE_SIZE
    eff = userns.effective_ownership
    assert eff("auto", 0, base, size, False) == "auto"  # decided by the idmap probe at start
    assert eff("auto", base, base, size, False) == "chown"  # an earlier chown shifted it: stay there
    assert eff("map", 0, base, size, True) == "map"
    assert eff("off", 0, base, size, True) == "off"
    with pytest.raises(UsageError, match="needs a tree owned by IDs 0..65535"):
        eff("map", base, base, size, False)
    with pytest.raises(UsageError, match="-x/--ephemeral"):
        eff("chown", 0, base, size, True)
    with pytest.raises(UsageError, match="-x/--ephemeral"):
        eff("auto", base, base, size, True)  # auto on a shifted tree would chown
