"""quickparse reads a command line as argparse does, or leaves it to argparse.

For each read-only verb's parser, many command lines (made from that parser's
own options, values that convert and values that do not, positionals, and
spellings only argparse knows) are read both ways: where the quick reading
answers, argparse must give the same namespace; where argparse objects, the
quick reading must not have answered.  The common lines must be read quickly
(else the verbs would import argparse after all).
"""

import contextlib
import io
import random

import pytest

from nsdash.cli import cgls, cgtop, dashboard, journal, machinectl, systemctl
from nsdash.cli.quickparse import Namespace, Parser
from nsdash.errors import UsageError


def _machinectl_list() -> Parser:
    p = machinectl._parser("list", None)
    machinectl._output_opts(p)
    p.add_argument("--all", "-a", action="store_true")
    return p


def _machinectl_status() -> Parser:
    p = machinectl._parser("status")
    machinectl._output_opts(p)
    p.add_argument("-n", "--lines", type=int, default=10)
    return p


PARSERS = {
    "cgls": (cgls.build_parser, False, ["/", "machine.slice", "-"]),
    "cgtop": (cgtop.build_parser, False, ["1", "0", "x", "3", "-1", "cpu", "time", "/"]),
    "dashboard": (dashboard._parser, False, ["2", "0.5", "x", "-1", "1e3"]),
    "journal": (journal.build_parser, False, ["20", "web", "/tmp", "all", "-1", "json", "short", "cat"]),
    "systemctl": (systemctl.build_parser, True, ["-M", "web", "web", "list-units", "status", "dbus.service", "5", "x",
                                                 "json", "2.5"]),
    "list": (_machinectl_list, False, ["json", "short", "web"]),
    "status": (_machinectl_status, False, ["web", "db", "5", "x", "json"]),
}


def _flags(p: Parser) -> list[str]:
    return [f for a in p._actions if not a.positional for f in a.flags]


def _argparse(p: Parser, argv: list[str], intermixed: bool):
    real = p.argparse_parser()
    ns = Namespace()
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            (real.parse_intermixed_args if intermixed else real.parse_args)(argv, namespace=ns)
    except (UsageError, SystemExit):
        return None
    return vars(ns)


def _quick(p: Parser, argv: list[str], intermixed: bool):
    ns = Namespace()
    return vars(ns) if p.quick(argv, ns, intermixed) else None


def _lines(p: Parser, values: list[str], rng: random.Random, n: int):
    flags = _flags(p)
    extra = ["--help", "--", "-", "-b1", "--mach", "--machine=", "--output=json", "--lines=3", "-ak"]
    long_eq = [f"{f}={v}" for f in flags if f.startswith("--") for v in values[:2]]
    pool = flags + values + extra + long_eq
    for _ in range(n):
        line = [rng.choice(pool) for _ in range(rng.randint(0, 5))]
        if rng.random() < 0.5:  # systemctl's -M is required: lines with it, anywhere
            line.insert(rng.randint(0, len(line)), "-M")
        yield line


@pytest.mark.parametrize("verb", sorted(PARSERS))
def test_quick_reading_agrees_with_argparse(verb):
    build, intermixed, values = PARSERS[verb]
    p = build()
    rng = random.Random(verb)
    answered = 0
    for argv in _lines(p, values, rng, 3000):
        quick = _quick(p, argv, intermixed)
        if quick is None:
            continue
        answered += 1
        assert quick == _argparse(p, argv, intermixed), argv
    assert answered > 50  # the generator reaches lines the quick reading takes


@pytest.mark.parametrize(("verb", "argv"), [
    ("cgls", []), ("cgls", ["-a", "--no-pager"]), ("cgls", ["-M", "web", "/system.slice"]),
    ("cgtop", ["-b", "-n", "1"]), ("cgtop", ["-b", "--iterations=2", "-m"]),
    ("journal", ["-M", "web", "-n", "20"]), ("journal", ["-D", "/tmp", "-o", "json", "-n"]),
    ("systemctl", ["-M", "web", "list-units"]), ("systemctl", ["-M", "web", "status", "dbus.service"]),
    ("systemctl", ["status", "-M", "web", "a", "b", "--no-pager"]),
    ("dashboard", []), ("dashboard", ["-d", "2"]), ("dashboard", ["--demo", "--delay=0.5"]),
    ("list", []), ("list", ["-o", "json"]), ("status", ["web"]), ("status", ["web", "-n", "5"]),
])
def test_common_lines_are_read_quickly_and_alike(verb, argv):
    build, intermixed, _ = PARSERS[verb]
    p = build()
    quick = _quick(p, argv, intermixed)
    assert quick is not None
    assert quick == _argparse(p, argv, intermixed)


def test_errors_and_help_still_come_from_argparse(capsys):
    p = cgtop.build_parser()
    with pytest.raises(UsageError, match="invalid int value"):
        p.parse_args(["-n", "x"])
    with pytest.raises(UsageError, match="not allowed with argument"):
        p.parse_args(["-m", "-c"])
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "Differences from systemd-cgtop" in out
    assert "--cgroup-root" not in out and "SUPPRESS" not in out  # help=SUPPRESS still hides it
    opts = p.parse_args(["--iter", "2"])  # an abbreviation: argparse's reading
    assert opts.iterations == 2
