"""The far trace's command line (nsdash.tui.remote_trace), pure."""

from __future__ import annotations

from nsdash.cli.trace import split_args
from nsdash.tui.remote_trace import trace_argv


def test_a_whole_machine_a_unit_and_a_far_process_become_the_far_verbs_words():
    assert trace_argv("bb", None, None, []) == ["trace", "-M", "bb", "--all", "--"]
    assert trace_argv("bb", None, "cron.service", ["-e", "openat"]) == [
        "trace", "-M", "bb", "cron.service", "--", "-e", "openat"]
    assert trace_argv("bb", 4242, None, []) == ["trace", "-M", "bb", "--host-pid", "4242", "--"]


def test_the_far_side_splits_them_back_into_its_words_and_stracess():
    # the far `nsdash trace` parses these words: ours before "--", strace's after, even one that looks like ours
    ours, strace = split_args(trace_argv("bb", None, None, ["-e", "trace=%file", "-s", "200"])[1:])
    assert ours == ["-M", "bb", "--all"] and strace == ["-e", "trace=%file", "-s", "200"]
    ours, strace = split_args(trace_argv("bb", 7, None, ["--all"])[1:])
    assert ours == ["-M", "bb", "--host-pid", "7"] and strace == ["--all"]
