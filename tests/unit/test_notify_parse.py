"""One sd_notify datagram read as systemd-nspawn reads its payload's (launcher.container.parse_notify):
a C string, tags split at '\\n' and '\\r', an exact READY=1, the first STATUS= tag."""

from __future__ import annotations

import pytest

from nsdash.launcher.container import parse_notify


@pytest.mark.parametrize("data, expected", [
    (b"READY=1", (True, None)),
    (b"READY=1\nSTATUS=up", (True, b"up")),
    (b"STATUS=up\r\nREADY=1\r\n", (True, b"up")),  # '\r' ends a tag too
    (b"STATUS=up\rREADY=1", (True, b"up")),
    (b"STATUS=first\nSTATUS=second", (False, b"first")),  # nspawn takes the first
    (b"STATUS=before\0READY=1\nSTATUS=after", (False, b"before")),  # a C string ends at NUL
    (b"\0READY=1", (False, None)),
    (b"READY=10\nREADY=1 \n ready=1", (False, None)),  # exact tags only
    (b"STATUS=", (False, b"")),
    (b"X_NEWER_SYSTEMD_KEY=1\n\n\nSTATUS=a=b", (False, b"a=b")),
    (b"", (False, None)),
])
def test_parse_notify(data, expected):
    assert parse_notify(data) == expected
