"""Every verb that may run long finds the cyclic garbage collector on.

The launcher (bin/nsdash, python -m nsdash) loads the verb with gc off, and the short
teardown-free verbs (systemctl, journal) keep it off.  A long-running process with gc off
would grow for days: the supervisor a spawn forks inherits its state, so do the verbs the
remote server forks.  Each verb's entry is replaced by a probe that reports gc.isenabled()
(the dispatch, the module's own switches and the remote path are real)."""

from __future__ import annotations

import gc
import importlib

import pytest

from nsdash import cli

# verb argv -> the module whose main() is the verb's long-running entry
LONG_RUNNING = [
    (["dashboard"], "dashboard"),
    ([], "dashboard"),  # no verb: the dashboard
    (["spawn", "-D", "/x", "-b"], "spawn"),  # and the supervisor it forks
    (["_supervise"], "supervise"),
    (["_watch"], "watch"),
    (["_remote"], "remote"),
    (["login", "m"], "machinectl"),
    (["shell", "m"], "machinectl"),
    (["start", "m"], "machinectl"),
    (["trace", "-M", "m"], "trace"),
    (["debug", "-M", "m"], "debug"),
    (["profile", "-M", "m"], "profile"),
]


@pytest.fixture
def gc_off_as_launched():
    gc.disable()  # as bin/nsdash starts
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize(("argv", "module"), LONG_RUNNING, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_long_running_verbs_find_the_collector_on(monkeypatch, gc_off_as_launched, argv, module):
    mod = importlib.import_module(f"nsdash.cli.{module}")
    assert not getattr(mod, "TEARDOWN_FREE", False)
    seen: list[bool] = []
    monkeypatch.setattr(mod, "main", lambda *a, **kw: seen.append(gc.isenabled()) or 0)
    assert cli.main(argv) == 0
    assert seen == [True]


class _Target:
    """What systemctl's resolve() hands on (the probe runner never looks at it)."""

    name = "m"


@pytest.mark.parametrize(("argv", "on"), [
    (["start", "a.service"], True),  # jobs are waited for: minutes
    (["restart", "a.service"], True),
    (["enable", "--now", "a.service"], True),
    (["list-units"], False),  # short and teardown-free: off, as launched
    (["enable", "a.service"], False),
])
def test_systemctl_turns_it_on_for_the_verbs_that_wait(monkeypatch, gc_off_as_launched, argv, on):
    from nsdash.cli import systemctl

    seen: list[bool] = []

    def runner(target, call, timeout, via_supervisor=False, preload=()):
        seen.append(gc.isenabled())
        return 0

    monkeypatch.setattr(systemctl, "resolve", lambda name: _Target())
    monkeypatch.setattr(systemctl, "run", runner)
    monkeypatch.setattr(systemctl, "run_blocking", runner)
    assert cli.main(["systemctl", "-M", "m", *argv]) == 0
    assert seen == [on]


@pytest.mark.parametrize(("argv", "on"), [
    (["cgtop"], True),  # refreshes until ^C
    (["cgtop", "-b"], True),
    (["cgtop", "-b", "-n", "3"], True),
    (["cgtop", "-n", "1"], False),  # once, output not a terminal: short and teardown-free
    (["cgtop", "-b", "-1"], False),
])
def test_cgtop_turns_it_on_unless_it_runs_once(monkeypatch, gc_off_as_launched, argv, on):
    from nsdash.cli import cgtop

    seen: list[bool] = []

    sampled: list[bool] = []

    def probe(sampler, view, delay, iterations):
        seen.append(gc.isenabled())
        sampled.append(sampler.once)
        return 0

    monkeypatch.setattr(cgtop, "_batch", probe)
    monkeypatch.setattr(cgtop, "_interactive", probe)
    monkeypatch.setattr(cgtop.sys.stdin, "isatty", lambda: False)  # (pytest's own stdin may be one)
    assert cli.main(argv) == 0
    assert seen == [on]
    assert cgtop.TEARDOWN_FREE  # its exit skips the interpreter's teardown: nothing is left to do
    # Its sampler keeps the figures its walk read only for a run of one refresh, which shows no
    # rate (the first rate of a longer one would count the walk's time too; monitor.sampler).
    assert sampled == [not on]


@pytest.mark.parametrize("argv", [["journal", "-f", "-M", "m"], ["systemctl", "-M", "m", "list-units"], ["list"]])
def test_every_remote_verb_finds_it_on(monkeypatch, gc_off_as_launched, argv):
    """`nsdash -H HOST VERB`: the local side relays for as long as the verb runs (journal -f)."""
    from nsdash.remote import client

    seen: list[bool] = []
    monkeypatch.delenv("NSDASH_HOST", raising=False)
    monkeypatch.setattr(client, "run", lambda target, args: seen.append(gc.isenabled()) or 0)
    assert cli.main(["-H", "example.invalid", *argv]) == 0
    assert seen == [True]


def test_the_remote_dashboard_finds_it_on(monkeypatch, gc_off_as_launched):
    from nsdash.cli import dashboard

    seen: list[bool] = []
    monkeypatch.delenv("NSDASH_HOST", raising=False)
    monkeypatch.setattr(dashboard, "main", lambda args, hosts=None: seen.append(gc.isenabled()) or 0)
    assert cli.main(["-H", "example.invalid"]) == 0
    assert seen == [True]
