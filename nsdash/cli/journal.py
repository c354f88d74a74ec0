"""`nsdash journal`: journalctl for machines, read from their own journal files.

Differences from journalctl: it never reads the host's journal (name a machine
with -M or a directory with -D), never pages, and machines without a journal
show their console log instead.  Entries are the guest's text: shown escaped
(nsdash.journal.format says how; json and cat are exact only into a pipe or file).
"""

from __future__ import annotations

import sys
import time

from nsdash.cli.quickparse import Parser
from nsdash.errors import UsageError
from nsdash.system import bareos
from nsdash.system.text import escape

# Every path closes its journal files and flushes its output before main() returns: nothing is
# left for the interpreter's teardown (nsdash.cli.run).  A follow turns the collector back on.
TEARDOWN_FREE = True


def build_parser() -> Parser:
    p = Parser("nsdash journal", "Show machines' journals (journalctl's options).",
               hint="see 'nsdash journal --help'",
               epilog="Where nsdash differs from journalctl: it reads machines' own journal files (no "
                       "journald needed) and never the host's journal; it never pages; a machine whose init "
                       "keeps no journal shows its console log (with the supervisor's boot separators); "
                       "-f also looks every 100 ms, as journald signals changes only every 250 ms; "
                       "several -M are merged by time, each line tagged with its machine.")
    p.add_argument("-M", "--machine", action="append", default=[], metavar="NAME",
                   help="a machine to show (repeat to merge several)")
    p.add_argument("-D", "--directory", action="append", default=[], metavar="DIR",
                   help="a journal directory to show")
    p.add_argument("-f", "--follow", action="store_true", help="show new entries as they are written")
    p.add_argument("-n", "--lines", nargs="?", const="10", metavar="N",
                   help="show the last N entries (10 when N is left out; 'all' for all)")
    p.add_argument("-p", "--priority", metavar="PRIORITY", help="a level (0-7 or emerg..debug) or FROM..TO")
    p.add_argument("-u", "--unit", action="append", default=[], metavar="UNIT",
                   help="entries of this unit (glob allowed; repeat for several)")
    p.add_argument("-b", "--boot", nargs="?", const="0", metavar="N|ID",
                   help="one boot: 0 the last, -1 the one before, 1 the first, or a boot ID")
    p.add_argument("-S", "--since", metavar="TIME", help="entries at or after TIME")
    p.add_argument("-U", "--until", metavar="TIME", help="entries at or before TIME")
    p.add_argument("-o", "--output", default="short", choices=["short", "short-precise", "json", "cat"],
                   help="output format")
    p.add_argument("--output-fields", metavar="FIELDS",
                   help="json: only these fields, comma-separated (the cursor, timestamps and _BOOT_ID always)")
    p.add_argument("--list-boots", action="store_true", help="list the boots in the journal")
    p.add_argument("--no-pager", action="store_true", help="accepted for compatibility (nsdash never pages)")
    return p


def _use_color() -> bool:
    forced = bareos.getenv("SYSTEMD_COLORS")
    if forced is not None:
        return forced.lower() in ("1", "yes", "true", "on", "16", "256", "24bit")
    return sys.stdout.isatty() and bareos.getenv("NO_COLOR") is None and bareos.getenv("TERM") != "dumb"


def _lines(text: str | None, follow: bool) -> int | None:
    if text is None:
        return 10 if follow else None
    if text == "all":
        return None
    t = text.lstrip("+")
    if not t.isdigit():
        raise UsageError(f"invalid number of lines '{text}'", "give a number, e.g. -n 20, or -n all")
    return int(t)


def _report_skipped(log, already: int) -> int:
    skipped = log.skipped
    for line in skipped[already:]:
        sys.stderr.write(f"nsdash: {escape(line)}\n")  # names files the guest made
    return len(skipped)


def _list_boots(log) -> int:
    from nsdash.journal.reader import JournalSource

    for src in log.sources:
        if isinstance(src, JournalSource):
            print(f"{'IDX':>3} {'BOOT ID':32} {'FIRST ENTRY':27} LAST ENTRY")
            for b in src.boots():
                first = time.strftime("%a %Y-%m-%d %H:%M:%S %Z", time.localtime(b.first // 10**6))
                last = time.strftime("%a %Y-%m-%d %H:%M:%S %Z", time.localtime(b.last // 10**6))
                print(f"{b.index:>3} {escape(b.boot_id)} {first:27} {last}")  # the guest wrote the file
            continue
        # A console log's source: its module is loaded already where there is one (a journal's
        # listing imports neither it nor what it brings: pathlib, os, re, ctypes).
        from nsdash.journal.console import ConsoleSource

        if isinstance(src, ConsoleSource):
            numbers = src.boot_numbers()
            print(f"{'IDX':>3} BOOT (console log of {src.machine})")
            for i, n in enumerate(numbers):
                print(f"{i - len(numbers) + 1:>3} boot {n}")
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from nsdash.journal import filters as flt

    if not args.machine and not args.directory:
        raise UsageError("no machine or journal directory given",
                         "name a machine with -M NAME (see 'nsdash list') or a directory with -D DIR")
    for d in args.directory:
        if not bareos.isdir(d):
            what = "is not a directory" if bareos.lexists(d) else "does not exist"
            raise UsageError(f"journal directory '{d}' {what}", "give a directory that holds *.journal files")
    filters = flt.Filters(
        priorities=flt.parse_priority(args.priority) if args.priority else None,
        units=tuple(flt.mangle_unit(u) for u in args.unit),
        boot=flt.parse_boot(args.boot) if args.boot is not None else None,
        since=flt.parse_time(args.since) if args.since else None,
        until=flt.parse_time(args.until) if args.until else None,
    )
    if filters.since is not None and filters.until is not None and filters.since > filters.until:
        raise UsageError("--since= must be before --until=", "swap them, or give a range that is not empty")  # journalctl's
    lines = _lines(args.lines, args.follow)
    if args.follow:
        import gc

        gc.enable()  # it may follow for days: its garbage is collected (nsdash.cli.run keeps it off)

    from nsdash.journal.format import Printer
    from nsdash.journal.merge import open_logs

    fields = tuple(f for f in (args.output_fields or "").split(",") if f) or None
    printer = Printer(sys.stdout, args.output, _use_color(), tag_machines=len(args.machine) > 1,
                      output_fields=fields)
    with open_logs(args.machine, args.directory,
                   filters if not args.list_boots else flt.Filters(),
                   detail=args.output == "json", only=printer.fields_needed(), follow=args.follow) as log:
        if args.list_boots:
            return _list_boots(log)
        if args.follow:
            log.filenos()  # watch before reading, so nothing written meanwhile waits for the next change
            log.end_with_reader_of(sys.stdout.fileno())
        if lines is None:
            printer.write_all(log.entries())
        else:
            printer.write_all(log.tail(lines))
        if printer.count == 0 and not args.follow and args.output.startswith("short"):
            print("-- No entries --")
        sys.stdout.flush()
        reported = _report_skipped(log, 0)
        if args.follow:
            while True:
                log.wait()
                new = log.read_new()
                if new:
                    printer.write_all(new)
                    sys.stdout.flush()
                reported = _report_skipped(log, reported)
    return 0
