"""A guest's journal lines as long as it likes: what the dashboard keeps of them is bounded.

A BusyBox machine (a private copy of the demo tree) writes to its console,
which is its log (it keeps no journal): lines of 128 KiB of one letter with no
space, of 65,536 wide characters, of 65,536 accented letters (a combining
accent each) and of 65,536 zero-width spaces.  The dashboard's journal pane
gets its lines from the poller's reader (nsdash.tui.poller): every line it is
given holds at most SHOWN_MESSAGE_MAX characters of the message, the guest's
own, cut.  (A line of 1,000,000 wide characters cost the pane ~1.4 s of its UI
thread per line written before, ten lines a slice, and 4 MB per line kept.)
"""

from __future__ import annotations

from conftest import wait_for

from nsdash.journal.entry import SHOWN_MESSAGE_MAX
from nsdash.tui.poller import _HostJournal

# Each line built inside by doubling (BusyBox sh has no string repetition): CHARS * 2**N; about
# 700 KiB in all, within the 2 MiB the console log keeps.
SCRIPT = r"""
line() { s="$2"; i=0; while [ $i -lt $1 ]; do s="$s$s"; i=$((i+1)); done; echo "$s"; }
line 17 "x"; line 16 "$(printf '\344\270\200')"; line 16 "$(printf 'a\314\201')"; line 16 "$(printf '\342\200\213')"
echo huge-lines-done
exec sleep 1000
"""


def test_a_guests_huge_console_lines_reach_the_pane_cut(detached, busybox_tree, machine_name):
    detached("-D", str(busybox_tree), "sh", "-c", SCRIPT)
    reader = _HostJournal((machine_name,))
    try:
        lines = wait_for(lambda: (got := reader.tail(50)) and any("huge-lines-done" in x.message for x in got) and got,
                         timeout=60, what="the guest's lines in its console log")
    finally:
        reader.close()
    messages = [x.message for x in lines if x.message and x.message[0] in "x\u4e00a\u200b"]
    assert len(messages) == 4, [m[:20] for m in messages]
    for message, char in zip(messages, ("x", "\u4e00", "a\u0301", "\u200b"), strict=True):
        assert len(message) <= SHOWN_MESSAGE_MAX, (char, len(message))
        assert len(message) >= SHOWN_MESSAGE_MAX - 2 and message.startswith(char * 8), (char, message[:16])
