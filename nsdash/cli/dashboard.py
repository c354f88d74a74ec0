"""`nsdash` with no verb: the full-screen dashboard.  `nsdash --demo` starts the demo machines first.

The demo machines are the two cached trees (nsdash.demo.trees) booted
ephemerally and detached, named demo-busybox and demo-debian; machines already
running are left alone.  Quitting the dashboard leaves every machine running.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from nsdash.cli.quickparse import Parser
from nsdash.errors import NsdashError, UsageError

if TYPE_CHECKING:
    from nsdash.tui.app import NsdashApp

DEMO_MACHINES = (("demo-busybox", "busybox"), ("demo-debian", "debian"))

# Once the app has ended (the terminal restored, its threads joined, the rule cache written),
# nothing is left for the interpreter's teardown but freeing what the kernel frees at exit:
# nsdash.cli.run exits without it after the atexit handlers (issue 16: q to the shell's turn).
EXIT_AFTER_HANDLERS = True


def _parser() -> Parser:
    # nsdash.cli.quickparse: argparse and gettext only for --help or an error (neither is on the
    # way to the first frame otherwise: Textual imports neither; issue 16)
    p = Parser(prog="nsdash", description="Open the nsdash dashboard.", hint="see 'nsdash dashboard --help'")
    p.add_argument("--demo", action="store_true",
                   help="build the demo trees if needed and start demo-busybox and demo-debian first")
    p.add_argument("-d", "--delay", type=float, default=1.0, metavar="SECONDS",
                   help="refresh delay (default 1 s; + and - change it in the CPU table)")
    return p


def start_demo_machines(notice=print) -> list[str]:
    """Start the demo machines that are not running yet; return the names started."""
    from nsdash.demo import trees
    from nsdash.launcher.options import spec_from
    from nsdash.machines import client
    from nsdash.machines import state as st

    client.require_root()
    started = []
    for name, tree in DEMO_MACHINES:
        if st.supervisor_alive(st.machine_dir(name)):
            continue
        notice(f"nsdash: preparing the {tree} demo tree…")
        directory = trees.ensure(tree)
        # the one spec builder, as `nsdash spawn -bxD TREE -M NAME` (the demo trees carry no .nspawn file)
        spec = spec_from(["--boot", "--ephemeral", "--link-journal=no", "--settings=no", f"--machine={name}",
                          f"--directory={directory}"])
        client.spawn(spec, detach=True, notice=None)
        started.append(name)
    return started


def hosts_file(env=None) -> list:
    """The hosts in $XDG_CONFIG_HOME/nsdash/hosts (~/.config/nsdash/hosts): one [USER@]HOST[:PORT]
    a line, # comments; none if there is no such file."""
    import os
    from pathlib import Path

    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or "/nonexistent", ".config")
    path = Path(base) / "nsdash" / "hosts"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {e}", "fix or remove the file") from None
    from nsdash.remote.target import parse_target  # (shlex and all: only when there is a file)

    targets = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            target = parse_target(line)
        except UsageError as e:
            raise UsageError(f"{path}:{number}: {e.message}", "one [USER@]HOST[:PORT] a line") from None
        if target not in targets:
            targets.append(target)
    return targets


def main(argv: list[str], hosts: list | None = None) -> int:
    """HOSTS: the remote hosts of -H (else those of the hosts file, if any): the dashboard over
    them, their machines only, as machinectl -H shows the remote host's only."""
    args = _parser().parse_args(argv)
    if not hosts:
        hosts = hosts_file()
    if hosts and args.demo:
        raise UsageError("--demo starts this host's demo machines, not a remote host's",
                         "leave out -H (and move ~/.config/nsdash/hosts away), or --demo")
    if not 0.25 <= args.delay <= 30:
        raise UsageError(f"refresh delay {args.delay:g} s is out of range", "pick 0.25 to 30 seconds")
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        raise UsageError("the dashboard needs a terminal", "run it in a terminal, or use 'nsdash list' or "
                         "'nsdash cgtop -b' for text output")
    if args.demo:
        try:
            start_demo_machines(lambda text: sys.stderr.write(text + "\n"))
        except NsdashError:
            raise
        except OSError as e:
            raise NsdashError(f"could not start the demo machines: {e}", "run 'make trees' and retry") from e
    from nsdash.tui import gcpause

    gcpause.hold()  # until the first full frame (the app releases it)
    first = None
    if not hosts:
        from nsdash.tui.host_readers import FirstSnapshot

        # This host's first snapshot, taken in a thread while the main thread imports Textual
        # (nsdash.tui.host_readers says why); the app's poller takes it over.
        first = FirstSnapshot()
    app_class = load_app()
    from nsdash.tui.rulecache import for_dashboard

    # the style rules parsed by the last start (nsdash.tui.rulecache): none parsed again; this
    # host's open files left to the kernel at exit (a far host's ssh sessions are ended as always)
    app_class(interval=args.delay, hosts=hosts or None, first=first, rules=for_dashboard(),
              process_ends=not hosts).run()
    return 0


def load_app() -> type[NsdashApp]:
    """The dashboard's app class, Textual imported without what its first frame never uses:
    asyncio's TLS (asyncio_without_tls) and the modules nsdash.tui.standins stands in for; its
    widget classes made by nsdash.tui.nodeclasses."""
    from nsdash.tui import standins

    with asyncio_without_tls(), standins.deferred():
        from nsdash.tui import nodeclasses  # (before any widget class is made: Textual's DOMNode only)

        nodeclasses.install()  # each widget class's bookkeeping from its bases' once (nsdash.tui.nodeclasses)
        from nsdash.tui.app import NsdashApp
    return NsdashApp


@contextlib.contextmanager
def asyncio_without_tls() -> Iterator[None]:
    """Import Textual's asyncio without ssl: asyncio imports it (and with it OpenSSL's libraries)
    for TLS connections, which the dashboard never makes (its far hosts are reached through ssh),
    about 2% of the start's instructions before the first frame (issue 16).  While the block runs
    `import ssl` fails, which asyncio takes as "no TLS here"; after it ssl imports as usual (asyncio
    alone goes on without).  Nothing is changed if asyncio or ssl was imported before."""
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        yield
        return
    modules: dict[str, Any] = sys.modules
    modules["ssl"] = None  # None: "not importable", as the import system documents
    try:
        yield
    finally:
        if modules.get("ssl", False) is None:
            del modules["ssl"]
