"""The style rules kept between starts (nsdash.tui.rulecache, issue 16): a start with a warm cache
parses no CSS and paints the same frame; an edited source is parsed again; a file someone else
could have written is not read.  Textual's Stylesheet._parse_rules is what the cache overrides:
if Textual stops going through it, the first test fails (the parser runs although every rule
is cached)."""

from __future__ import annotations

import inspect
import os
import pickle

import pytest
from textual.css import stylesheet as textual_stylesheet
from textual.css.stylesheet import Stylesheet
from tuikit import feed_sample, sample_app

from nsdash.tui import rulecache
from nsdash.tui.installed import textual_version
from nsdash.tui.rulecache import RuleCache, RuleStylesheet


def described(rules) -> list[tuple]:
    """Each rule set as what it selects and sets (repr of each value: a layout has no __eq__)."""
    return [(rule.selectors, rule.is_default_rules, rule.tie_breaker, rule.selector_names,
             sorted((name, repr(value)) for name, value in rule.styles.get_rules().items()))
            for rule in rules]


async def _run(rules: RuleCache | None) -> tuple[str, list[tuple]]:
    """The sample dashboard at 160x48: its frame (as SVG) and its rules."""
    app = sample_app(rules=rules)
    async with app.run_test(size=(160, 48)) as pilot:
        await feed_sample(app, pilot)
        frame = app.export_screenshot()
        css = described(app.stylesheet.rules)
    return frame, css


def _counting_parser(monkeypatch) -> list[object]:
    parsed: list[object] = []
    real_parse = textual_stylesheet.parse

    def counting_parse(scope, css, read_from, **kw):
        parsed.append(read_from)
        return real_parse(scope, css, read_from, **kw)

    monkeypatch.setattr(textual_stylesheet, "parse", counting_parse)
    return parsed


async def test_a_warm_cache_parses_no_css_and_paints_the_same_frame(tmp_path, monkeypatch):
    path = str(tmp_path / "cache" / "rules.pickle")
    parsed = _counting_parser(monkeypatch)
    plain_frame, plain_css = await _run(None)
    assert parsed, "Textual parsed nothing: the counting parser is not the one it calls"

    parsed.clear()
    cold = RuleCache(path)
    cold_frame, _ = await _run(cold)  # parses as Textual does; saved when the app ends
    assert parsed and cold.misses == 0 and os.path.exists(path)
    assert os.stat(path).st_mode & 0o777 == 0o600

    parsed.clear()
    warm = RuleCache(path)
    warm_frame, warm_css = await _run(warm)
    assert parsed == []  # every source's rules came from the file
    assert warm.hits > 0
    assert warm_css == plain_css
    assert warm_frame == plain_frame == cold_frame


def test_an_edited_source_is_parsed_again(tmp_path, monkeypatch):
    cache = RuleCache(str(tmp_path / "rules.pickle"))
    sheet = RuleStylesheet(cache=cache)
    sheet.add_source("#a { width: 3; }", read_from=("styles/x.tcss", ""))
    sheet.parse()
    cache.save()

    parsed = _counting_parser(monkeypatch)
    again = RuleStylesheet(cache=RuleCache(cache.path))
    again.add_source("#a { width: 3; }", read_from=("styles/x.tcss", ""))
    again.parse()
    assert parsed == []
    edited = RuleStylesheet(cache=RuleCache(cache.path))
    edited.add_source("#a { width: 4; }", read_from=("styles/x.tcss", ""))
    edited.parse()
    assert parsed == [("styles/x.tcss", "")]
    assert [r.styles.width.value for r in edited.rules if r.styles.width is not None] == [4]


def test_other_variables_are_another_entry(tmp_path):
    """A source's rules depend on the theme's variables substituted into it."""
    cache = RuleCache(str(tmp_path / "rules.pickle"))
    for colour in ("red", "blue"):
        sheet = RuleStylesheet(variables={"accent": colour}, cache=cache)
        sheet.add_source("#a { color: $accent; }", read_from=("styles/x.tcss", ""))
        sheet.parse()
    assert cache.misses == 2 and cache.hits == 0


def test_a_source_with_errors_is_not_kept(tmp_path):
    cache = RuleCache(str(tmp_path / "rules.pickle"))
    sheet = RuleStylesheet(cache=cache)
    sheet.add_source("#a { width: nonsense; }", read_from=("styles/x.tcss", ""))
    with pytest.raises(Exception):  # noqa: B017 - Textual's StylesheetParseError, as without the cache
        sheet.parse()
    assert cache.misses == 0


def _saved(tmp_path) -> str:
    cache = RuleCache(str(tmp_path / "c" / "rules.pickle"))
    sheet = RuleStylesheet(cache=cache)
    sheet.add_source("#a { width: 3; }", read_from=("styles/x.tcss", ""))
    sheet.parse()
    cache.save()
    assert cache.path is not None and RuleCache(cache.path)._stored
    return cache.path


@pytest.mark.parametrize("how", ["file writable by others", "directory writable by others", "symbolic link",
                                 "another user's file", "a second hard link", "broken", "another format"])
def test_a_file_it_cannot_trust_or_read_is_a_miss(tmp_path, how):
    path = _saved(tmp_path)
    if how == "file writable by others":
        os.chmod(path, 0o622)
    elif how == "directory writable by others":
        os.chmod(os.path.dirname(path), 0o777)
    elif how == "symbolic link":
        os.rename(path, path + ".real")
        os.symlink(path + ".real", path)
    elif how == "another user's file":
        os.chown(path, 65534, 65534)
    elif how == "a second hard link":  # another file of ours linked in place (protected_hardlinks off)
        os.link(path, path + ".other")
    elif how == "broken":
        with open(path, "wb") as f:
            f.write(b"\x80\x05not a pickle")
    else:
        with open(path, "wb") as f:
            f.write(pickle.dumps((rulecache.FORMAT + 1, {})))
    assert RuleCache(path)._stored == {}


def test_nothing_is_written_when_nothing_was_parsed(tmp_path):
    path = _saved(tmp_path)
    before = os.stat(path).st_mtime_ns
    cache = RuleCache(path)
    sheet = RuleStylesheet(cache=cache)
    sheet.add_source("#a { width: 3; }", read_from=("styles/x.tcss", ""))
    sheet.parse()
    cache.save()
    assert cache.hits == 1 and os.stat(path).st_mtime_ns == before


def test_the_default_place_follows_xdg(tmp_path):
    version = textual_version()
    found = rulecache.default_path({"XDG_CACHE_HOME": str(tmp_path), "HOME": "/nonexistent"})
    assert found is not None and found.startswith(f"{tmp_path}/nsdash/") and version in found
    assert rulecache.default_path({"HOME": str(tmp_path)}).startswith(f"{tmp_path}/.cache/nsdash/")
    assert rulecache.default_path({"XDG_CACHE_HOME": "relative"}) is None
    assert rulecache.default_path({}) is None


def test_textual_parses_through_the_method_the_cache_overrides():
    """Pinned: Textual 8.2.8's Stylesheet.parse calls _parse_rules with these arguments."""
    names = list(inspect.signature(Stylesheet._parse_rules).parameters)
    assert names == ["self", "css", "read_from", "is_default_rules", "tie_breaker", "scope"]
    assert "self._parse_rules(" in inspect.getsource(Stylesheet.parse)
    assert rulecache.usable() and isinstance(rulecache.for_dashboard(), RuleCache)


def test_on_a_textual_whose_parser_call_differs_the_dashboard_parses_as_textual_does(monkeypatch):
    """Another 8.2 (pyproject allows any): RuleStylesheet's override would fail the start."""
    def other(self, css, read_from, is_default_rules=False, tie_breaker=0, scope="", inline=False):
        raise AssertionError("not called here")

    monkeypatch.setattr(Stylesheet, "_parse_rules", other)
    assert not rulecache.usable() and rulecache.for_dashboard() is None


async def test_the_rules_are_written_once_the_first_full_frame_is_out(tmp_path):
    """Not only when the app ends: a dashboard closed at once (a benchmark's, killed with its
    terminal) would otherwise parse at every start."""
    path = str(tmp_path / "rules.pickle")
    app = sample_app(rules=RuleCache(path))
    async with app.run_test(size=(160, 48)) as pilot:
        await feed_sample(app, pilot, steps=1)
        assert os.path.exists(path)  # still running
        assert RuleCache(path)._stored


def test_a_fifo_in_a_shared_directory_does_not_hang_the_start(tmp_path):
    """XDG_CACHE_HOME on a shared directory (a careless operator): another user's FIFO where the
    file would be must be a miss at once, not an open(2) waiting for a writer forever."""
    import subprocess
    import sys

    shared = tmp_path / "shared" / "nsdash"
    shared.mkdir(parents=True)
    os.chmod(shared, 0o777)
    fifo = shared / "rules.pickle"
    os.mkfifo(fifo, 0o600)
    code = f"from nsdash.tui.rulecache import RuleCache; print(len(RuleCache({str(fifo)!r})._stored))"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("RuleCache blocked opening a FIFO")
    assert done.returncode == 0 and done.stdout == "0\n", done.stderr


def test_root_with_another_users_home_leaves_nothing_in_it(tmp_path):
    """`sudo -E nsdash` (HOME kept): root must not make ~/.cache or ~/.cache/nsdash in the user's
    home (root's 0700 directories there would break the user's own cache and programs)."""
    if os.geteuid() != 0:
        pytest.fail("the suite runs as root")
    home = tmp_path / "alice"
    home.mkdir()
    os.chown(home, 65534, 65534)
    path = rulecache.default_path({"HOME": str(home)})
    assert path is not None
    cache = RuleCache(path)
    sheet = RuleStylesheet(cache=cache)
    sheet.add_source("#a { width: 3; }", read_from=("styles/x.tcss", ""))
    sheet.parse()
    cache.save()
    assert os.listdir(home) == []


async def test_a_key_pressed_while_the_first_frames_rules_are_written_does_not_wait(tmp_path, monkeypatch):
    """The first full frame's write runs in a thread of its own: while it is held (here: until the
    key has been handled, 10 s at most) the UI thread goes on, and the key's sort is done at once."""
    import threading

    from nsdash.tui.widgets.cpu_table import CpuTable

    held, written = threading.Event(), []
    real_write = RuleCache._write

    def held_write(self, data: bytes) -> None:
        held.wait(timeout=10)  # (on the UI thread, as before the thread, the key would wait this out)
        real_write(self, data)
        written.append(threading.current_thread().name)

    monkeypatch.setattr(RuleCache, "_write", held_write)
    path = str(tmp_path / "rules.pickle")
    cache = RuleCache(path)
    app = sample_app(rules=cache)
    async with app.run_test(size=(160, 48)) as pilot:
        await feed_sample(app, pilot, steps=1)
        assert cache.saved_once  # the first full frame is out: its write has begun
        table = app.screen.query_one(CpuTable)
        table.focus()
        await pilot.press("m")
        assert table.order == "memory" and written == []  # the key done, the write still held
        held.set()
        cache.wait()
        assert written == ["nsdash-rule-cache"] and RuleCache(path)._stored
    assert os.listdir(tmp_path) == ["rules.pickle"]


def _child(tmp_path, code: str) -> None:
    """CODE run by a Python of its own, with `cache`: a RuleCache at tmp_path/c/rules.pickle that
    has parsed a source."""
    import subprocess
    import sys

    setup = ("from nsdash.tui.rulecache import RuleCache, RuleStylesheet\n"
             f"cache = RuleCache({str(tmp_path / 'c' / 'rules.pickle')!r})\n"
             "sheet = RuleStylesheet(cache=cache)\n"
             "sheet.add_source('#a { width: 3; }', read_from=('styles/x.tcss', ''))\n"
             "sheet.parse()\n")
    subprocess.run([sys.executable, "-c", setup + code], check=False, timeout=60,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_a_write_begun_as_the_program_ends_is_finished(tmp_path):
    _child(tmp_path, "cache.save_soon()\n")  # and the main thread ends at once
    assert os.listdir(tmp_path / "c") == ["rules.pickle"]
    assert RuleCache(str(tmp_path / "c" / "rules.pickle"))._stored


@pytest.mark.parametrize("old", [False, True], ids=["first write", "over an older file"])
def test_a_start_killed_while_writing_leaves_no_file_behind(tmp_path, old):
    """Killed (SIGKILL: nothing of ours runs) with the data written, just before the file is named."""
    path = tmp_path / "c" / "rules.pickle"
    if old:
        _child(tmp_path, "cache.save()\n")
        before = path.read_bytes()
    _child(tmp_path, "import os, signal\n"
                     "from nsdash.tui import rulecache\n"
                     "rulecache._link_in_place = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
                     "cache.misses = 1\n"
                     "cache.save_soon()\n"
                     "cache.wait()\n"
                     "raise SystemExit('not killed')\n")
    assert os.listdir(tmp_path / "c") == (["rules.pickle"] if old else [])
    if old:
        assert path.read_bytes() == before


def test_a_file_system_without_unnamed_files_gets_a_named_one_renamed_in_place(tmp_path, monkeypatch):
    import errno

    real_open = os.open

    def no_tmpfile(path, flags, *args, **kw):
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(rulecache.os, "open", no_tmpfile)
    path = _saved(tmp_path)
    assert os.listdir(os.path.dirname(path)) == ["rules.pickle"]
    assert os.stat(path).st_mode & 0o777 == 0o600
