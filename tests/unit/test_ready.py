"""nsdash.system.ready: select()'s answers, for descriptors past select()'s 1024 too."""

from __future__ import annotations

import contextlib
import os
import resource
import select

import pytest

from nsdash.system.ready import readable, wait


@contextlib.contextmanager
def _pipe_past_fd_setsize():
    """A pipe whose ends are numbered 1024 and up (the limit raised for it if need be)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    r, w = os.pipe()
    try:
        high_r, high_w = os.dup2(r, 1030), os.dup2(w, 1031)
        yield high_r, high_w
    finally:
        for fd in (r, w, 1030, 1031):
            with contextlib.suppress(OSError):
                os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_pipe_past_1024_is_waited_on_where_select_refuses_it():
    with _pipe_past_fd_setsize() as (r, w):
        with pytest.raises(ValueError):
            select.select([r], [], [], 0)  # why this module exists
        assert readable([r], 0) == []
        assert wait([r], [w], 0) == ([], [w])
        os.write(w, b"x")
        assert readable([r], 1) == [r]


def test_an_ended_pipe_is_ready_and_a_closed_descriptor_is_an_error():
    r, w = os.pipe()
    try:
        os.close(w)
        assert readable([r], None) == [r]  # at its end: the read says so (b"")
        assert os.read(r, 1) == b""
    finally:
        os.close(r)
    with pytest.raises(OSError):
        readable([r], 0)


def test_a_timeout_returns_nothing_and_a_descriptor_asked_both_ways_answers_both():
    r, w = os.pipe()
    try:
        assert readable([r], 0.01) == []
        os.write(w, b"x")
        assert wait([r, w], [r, w], 0) == ([r], [w])
    finally:
        os.close(r)
        os.close(w)
