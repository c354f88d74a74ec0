"""A process's command line (cgls, status's process tree, the dashboard's tree) is shown through
the one sanitiser, nsdash/system/text.py, spelled as every other guest text is."""

from __future__ import annotations

from nsdash.monitor.procs import cmdline
from nsdash.system.text import escape_bytes


def _proc(tmp_path, pid: int, cmdline_bytes: bytes, comm: bytes = b"comm\n") -> str:
    d = tmp_path / str(pid)
    d.mkdir()
    (d / "cmdline").write_bytes(cmdline_bytes)
    (d / "comm").write_bytes(comm)
    return str(tmp_path)


def test_a_hostile_command_line_is_spelled_as_the_sanitiser_spells_it(tmp_path):
    argv = "sh\0-c\0x\x1b]0;T\x07\u009b6n\u202e\u00a0y\0".encode() + b"\xff\0"
    proc = _proc(tmp_path, 7, argv)
    shown = cmdline(7, None, proc)
    assert shown == escape_bytes(argv.replace(b"\0", b" ").rstrip(b" "))
    # \u202e, not \x202e (which reads as a space and "2e"); a byte that is not UTF-8 as \xff
    assert shown == "sh -c x\\x1b]0;T\\x07\\x9b6n\\u202e\u00a0y \\xff"


def test_an_empty_command_line_shows_the_escaped_comm(tmp_path):
    proc = _proc(tmp_path, 8, b"", b"k\x1b[>cw\n")
    assert cmdline(8, None, proc) == "[k\\x1b[>cw]"
    assert cmdline(9, None, proc) is None  # gone


def test_a_cut_command_line_never_ends_inside_an_escape(tmp_path):
    # cgls cuts command lines to the terminal: a cut inside "\x1b" would show "\x1" + "…"
    argv = b"ab\x1bcd\xffef\xe2\x80\xaegh"  # ESC, a byte that is not UTF-8, U+202E
    proc = _proc(tmp_path, 7, argv)
    whole = cmdline(7, None, proc)
    assert whole == "ab\\x1bcd\\xffef\\u202egh"
    for columns in range(1, len(whole) + 2):
        shown = cmdline(7, columns, proc)
        assert shown is not None and len(shown) <= max(columns, 1)
        if len(whole) <= columns:
            assert shown == whole
            continue
        assert shown.endswith("…")
        head = shown[:-1]
        assert whole.startswith(head)
        # every backslash shown begins a whole escape: none is cut
        assert head.count("\\") == sum(1 for e in ("\\x1b", "\\xff", "\\u202e") if e in head)


def test_a_printable_command_line_is_cut_at_its_column(tmp_path):
    proc = _proc(tmp_path, 7, b"sleep\x00infinity")
    assert cmdline(7, 6, proc) == "sleep…"
    assert cmdline(7, 14, proc) == "sleep infinity"
