"""`nsdash _remote`: the far side of -H, started by sshd (see nsdash.remote.server).  Hidden:
nobody types it; `nsdash -H HOST VERB` on the near side runs it over ssh.  And the verbs
over several hosts at once (`nsdash -H A -H B list`)."""

from __future__ import annotations

import os
import sys

from nsdash.errors import NsdashError
from nsdash.remote import server  # (here: loaded with the collector off, as the launcher keeps it)
from nsdash.system.text import escape, escape_json


def main(argv: list[str]) -> int:
    """Serve the session (with the collector on, as for every long verb: a dashboard's session
    serves for hours; each verb's fork turns it off again while the verb imports)."""
    from nsdash.cli import main as nsdash_main
    from nsdash.errors import UsageError

    if argv:
        raise UsageError("'nsdash _remote' takes no arguments", "it is the far side of 'nsdash -H HOST VERB'")
    code = server.main(nsdash_main)
    # The session is over and wrote only through os.write: the interpreter's teardown would do
    # nothing but hold up ssh's end, which the client waits for on every -H command.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


HOST_TIMEOUT = 20.0  # seconds a host has to greet and answer before it is reported unreachable


def several_hosts(targets: list, argv: list[str]) -> int:
    """`nsdash -H A -H B list [--no-legend] [-o json]`: every host's machines in one table, a
    HOST column first.  Hosts are asked at once, one thread and ssh each; a host that fails
    or does not answer in time is one line on stderr (and exit 1), the others are shown."""
    import concurrent.futures
    import json
    import sys

    from nsdash.cli.args import ArgumentParser
    from nsdash.cli.machinectl import table
    from nsdash.errors import UsageError
    from nsdash.remote.hosts import list_machines
    from nsdash.remote.session import Session

    if not argv or argv[0] != "list":
        raise UsageError("several hosts work with 'list' only", "give one -H for other verbs")
    p = ArgumentParser(prog="nsdash -H HOST -H HOST list", add_help=False)
    p.add_argument("--no-legend", action="store_true")
    p.add_argument("-o", "--output", choices=("short", "json"), default="short")
    ns, unknown = p.parse_known_args(argv[1:])
    if unknown:
        raise UsageError(f"'{unknown[0]}' is not an option of list over several hosts",
                         "use --no-legend or -o json")

    def ask(target) -> list[dict]:
        with Session(target, HOST_TIMEOUT) as session:
            return list_machines(session)

    failed = 0
    found: list[tuple[str, dict]] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        futures = [pool.submit(ask, t) for t in targets]
        for target, future in zip(targets, futures, strict=True):
            try:
                found += [(str(target), m) for m in future.result()]
            except (NsdashError, ValueError) as e:
                failed += 1
                message = e.oneline() if isinstance(e, NsdashError) else f"{target}: {e}"
                sys.stderr.write(f"nsdash: {escape(message)}\n")
    if ns.output == "json":
        sys.stdout.write(escape_json(json.dumps([{"host": h, **m} for h, m in found])) + "\n")
        return 1 if failed else 0

    def cell(value: object) -> str:
        if isinstance(value, list):
            return (str(value[0]) + ("…" if len(value) > 1 else "")) if value else "-"
        return "-" if value in (None, "") else str(value)

    rows = [[h, cell(m.get("machine")), cell(m.get("class")), cell(m.get("service")), cell(m.get("os")),
             cell(m.get("version")), cell(m.get("addresses")), cell(m.get("state"))] for h, m in found]
    sys.stdout.write(table(["HOST", "MACHINE", "CLASS", "SERVICE", "OS", "VERSION", "ADDRESSES", "STATE"], rows,
                           not ns.no_legend))
    if not ns.no_legend:
        sys.stdout.write(("\n" if rows else "") + (f"{len(rows)} machines listed on {len(targets) - failed} of "
                                                   f"{len(targets)} hosts.\n"))
    return 1 if failed else 0
