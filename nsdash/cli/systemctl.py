"""`nsdash systemctl -M NAME VERB ...`: a machine's own systemd, over its own bus, with systemctl's output.

Everything the machine's systemd answers (unit names, descriptions, paths,
process command lines, journal lines) is the guest's: the text output escapes
each record's fields (nsdash.system.text.escape_fields) before laying it out, so
the layout's own colours stay; JSON is escaped by the encoder.

Exit codes follow systemctl: is-active 0/3, is-failed 0/1, status 0/3 (4 for an
unknown unit), start/stop of an unknown unit 5, a failed job 1.  Jobs are
waited for by default, as systemctl does; --no-block only queues them.
"""

from __future__ import annotations

import sys

from nsdash.cli.quickparse import Namespace, Parser
from nsdash.errors import NsdashError, UsageError
from nsdash.inside import render
from nsdash.inside.bus import DEFAULT_TIMEOUT
from nsdash.inside.target import Target, resolve
from nsdash.inside.units import (
    UNIT_TYPES,
    JobFailed,
    Systemd,
    UnitNotFound,
    filter_unit_files,
    filter_units,
    mangle,
    run,
    run_blocking,
)
from nsdash.system import bareos
from nsdash.system.text import escape, escape_fields

TYPE_CHECKING = False  # typing costs `systemctl` 2 ms; the annotations are strings
if TYPE_CHECKING:
    from typing import Any

JOB_VERBS = ("start", "stop", "restart", "reload", "try-restart", "reload-or-restart")
VERBS = ("list-units", "list-unit-files", "list-jobs", "status", "show", *JOB_VERBS, "enable", "disable", "is-active", "is-failed",
         "is-enabled", "daemon-reload", "reset-failed")
READ_ONLY_VERBS = ("list-units", "list-unit-files", "list-jobs", "status", "show", "is-active", "is-failed",
                   "is-enabled")
# Every verb prints through _Out and closes its bus before main() returns; jobs run asyncio
# to its end: nothing is left for the interpreter's teardown (nsdash.cli.run).
TEARDOWN_FREE = True
EXIT_NOT_RUNNING = 3  # systemctl's EXIT_PROGRAM_NOT_RUNNING
EXIT_NO_SUCH_UNIT = 4


def _csv(values: list[str]) -> list[str]:
    return [v for item in values for v in item.split(",") if v]


def build_parser() -> Parser:
    # errors: one line through the dispatcher, not argparse's usage block
    p = Parser(
        "nsdash systemctl", hint="see 'nsdash systemctl --help'",
        description="Manage the units of a running machine through its own systemd and D-Bus.",
        epilog=f"verbs: {', '.join(VERBS)}.  Unlike systemctl, --wait waits for the queued jobs to "
               "finish (the default, as plain systemctl does); --no-block only queues them.")
    p.add_argument("-M", "--machine", required=True, help="the running machine to operate in")
    p.add_argument("verb", nargs="?", default="list-units", help="what to do (default: list-units)")
    p.add_argument("args", nargs="*", help="units or patterns")
    p.add_argument("-t", "--type", action="append", default=[], help="unit types, comma-separated")
    p.add_argument("--state", action="append", default=[], help="load/active/sub states, comma-separated")
    p.add_argument("--failed", action="store_true", help="same as --state=failed")
    p.add_argument("-a", "--all", action="store_true", help="also list inactive units; show: every property")
    p.add_argument("-p", "--property", action="append", default=[], help="show: only these properties")
    p.add_argument("--value", action="store_true", help="show: print values only, without NAME=")
    p.add_argument("--no-legend", action="store_true", help="no header, legend or counts")
    p.add_argument("--no-pager", action="store_true", help="accepted for compatibility (nsdash never pages)")
    p.add_argument("-l", "--full", action="store_true", help="accepted for compatibility (never ellipsized)")
    p.add_argument("-o", "--output", default="short", choices=("short", "json", "json-pretty"))
    p.add_argument("-q", "--quiet", action="store_true", help="is-*: print nothing, answer by exit code")
    p.add_argument("-n", "--lines", type=int, default=10, help="status: journal lines to show (default 10)")
    p.add_argument("--wait", dest="block", action="store_true", default=True,
                   help="wait for start/stop jobs to finish (the default)")
    p.add_argument("--no-block", dest="block", action="store_false", help="only queue the jobs")
    p.add_argument("--job-mode", default="replace", help="how to queue jobs (default: replace)")
    p.add_argument("--now", action="store_true", help="enable/disable: also start/stop the units")
    p.add_argument("--runtime", action="store_true", help="enable/disable: only until the next reboot")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds to wait for each bus answer (default {DEFAULT_TIMEOUT:g})")
    return p


class _Out:
    """Collects what the verb prints, so nothing is half-printed when a later call fails."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.text: list[str] = []
        self.errors: list[str] = []

    @property
    def json(self) -> bool:
        return self.fmt != "short"

    def emit(self, data: Any) -> None:
        import json  # -o json only: its modules cost list-units about 1.5 ms

        self.text.append(json.dumps(data, indent=2 if self.fmt == "json-pretty" else None) + "\n")

    def flush(self) -> None:
        # Nothing to print (main() failed first): no write, whose failure on a full disk would
        # hide the error in flight (`finally` runs this).
        if self.text:
            sys.stdout.write("".join(self.text))
        for line in self.errors:
            sys.stderr.write(escape(line) + "\n")


def main(argv: list[str]) -> int:
    args = build_parser().parse_intermixed_args(argv)
    if args.verb not in VERBS:
        raise UsageError(f"unknown systemctl verb '{args.verb}'", f"use one of: {', '.join(VERBS)}")
    args.type = _csv(args.type)
    args.state = _csv(args.state) + (["failed"] if args.failed else [])
    bad = [t for t in args.type if t not in UNIT_TYPES]
    if bad:
        raise UsageError(f"unknown unit type '{bad[0]}'", f"use one of: {', '.join(UNIT_TYPES)}")
    needs_units = args.verb in (*JOB_VERBS, "status", "show", "enable", "disable", "is-active", "is-failed", "is-enabled")
    if needs_units and not args.args:
        raise UsageError(f"'{args.verb}' needs at least one unit", f"e.g. nsdash systemctl -M {args.machine} "
                         f"{args.verb} nginx.service")
    if args.lines < 0:
        raise UsageError("--lines must be 0 or more", "e.g. -n 20")
    target = resolve(args.machine)
    out = _Out(args.output)
    try:
        # Only jobs wait for signals (JobRemoved); every other verb makes plain calls and
        # runs without asyncio or dbus-fast, whose imports cost more than the whole answer.
        waits = args.verb in JOB_VERBS or (args.verb in ("enable", "disable") and args.now)
        if waits:
            import gc

            gc.enable()  # a job may be waited for minutes: asyncio's garbage is collected (nsdash.cli.run)
            rc = run(target, lambda sd: _dispatch(sd, target, args, out), timeout=args.timeout)
        else:
            # The readers' calls are made by the machine's supervisor (bus-call), which has the
            # D-Bus code loaded already; the verbs that change something speak to the bus here.
            rc = run_blocking(target, lambda sd: _dispatch(sd, target, args, out), timeout=args.timeout,
                              via_supervisor=args.verb in READ_ONLY_VERBS,
                              preload=_status_modules(args, out) if args.verb == "status" else ())
    finally:
        out.flush()
    return rc


async def _dispatch(sd: Systemd, target: Target, args: Namespace, out: _Out) -> int:
    verb = args.verb
    if verb == "list-units":
        units = filter_units(await sd.list_units(), types=args.type, states=args.state, patterns=args.args,
                             all_units=args.all)
        if out.json:
            out.emit(render.units_json(units))
        else:
            out.text.append(render.list_units([escape_fields(u) for u in units], legend=not args.no_legend,
                                              all_units=args.all,
                                              states=args.state, color=_color()))
        return 0
    if verb == "list-unit-files":
        from nsdash.inside import presets

        files = filter_unit_files(await sd.list_unit_files(), types=args.type, states=args.state,
                                  patterns=args.args)
        rules = presets.read_rules(target.root_dir)  # (a string: no pathlib)
        table = {f.name: presets.preset_of(f.name, rules) for f in files}
        if out.json:
            out.emit(render.unit_files_json(files, table))
        else:
            out.text.append(render.list_unit_files([escape_fields(f) for f in files],
                                                   {escape(k): escape(v) for k, v in table.items()},
                                                   legend=not args.no_legend))
        return 0
    if verb == "status":
        return await _status(sd, target, args, out)
    if verb == "show":
        names = _csv(args.property)
        records: list[dict[str, Any]] = []
        texts: list[str] = []
        for unit in args.args:
            props = await sd.properties(unit)
            records.append({k: v for k, v in props.items() if not names or k in names})
            texts.append(render.show(props, names, args.value, args.all))
        if out.json:
            import json

            out.emit(json.loads(json.dumps(records, default=str)))
        else:
            out.text.append(escape("\n".join(texts), newline=True))
        return 0
    if verb == "list-jobs":
        jobs = await sd.list_jobs()
        if out.json:
            out.emit([{"job": j.job_id, "unit": j.unit, "type": j.kind, "state": j.state} for j in jobs])
        else:
            out.text.append(render.list_jobs([escape_fields(j) for j in jobs], legend=not args.no_legend))
        return 0
    if verb in JOB_VERBS:
        return await _jobs(sd, verb, [mangle(u) for u in args.args], args, out)
    if verb in ("enable", "disable"):
        return await _install(sd, verb, args, out)
    if verb in ("is-active", "is-failed"):
        good = ("active", "reloading") if verb == "is-active" else ("failed",)
        states = [(mangle(u), await sd.active_state(u)) for u in args.args]
        _report_states(states, args, out)
        if any(s in good for _, s in states):
            return 0
        return EXIT_NOT_RUNNING if verb == "is-active" else 1
    if verb == "is-enabled":
        states = []
        for unit in args.args:
            try:
                states.append((mangle(unit), await sd.unit_file_state(unit)))
            except UnitNotFound:
                states.append((mangle(unit), "not-found"))
        _report_states(states, args, out)
        enabled = {"enabled", "enabled-runtime", "static", "alias", "indirect", "generated"}
        return 0 if any(s in enabled for _, s in states) else 1
    if verb == "daemon-reload":
        await sd.daemon_reload()
        return 0
    if verb == "reset-failed":
        for unit in args.args or [None]:
            await sd.reset_failed(unit)
        return 0
    raise AssertionError(verb)


def is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _color() -> bool:
    """Colour like systemctl on a terminal; never into pipes, files or with NO_COLOR set."""
    return sys.stdout.isatty() and not bareos.getenv("NO_COLOR") and bareos.getenv("TERM") != "dumb"


def _report_states(states: list[tuple[str, str]], args: Namespace, out: _Out) -> None:
    if args.quiet:
        return
    if out.json:
        out.emit([{"unit": u, "state": s} for u, s in states])
    else:
        out.text += [f"{escape(s)}\n" for _, s in states]


# What status imports once the unit's properties are in, in that order: imported while the
# machine's supervisor greets and gets them (SupervisorBus.meanwhile), they cost no time of their own.
_STATUS_MODULES = ("nsdash.system.dbusshape", "nsdash.inside.procs", "nsdash.inside.unitlog")
_LOG_MODULES = ("nsdash.journal.filters", "nsdash.journal.format", "nsdash.journal.merge")
_TREE_MODULES = ("nsdash.monitor.tree_lines",)


def _status_modules(args: Namespace, out: _Out) -> tuple[str, ...]:
    return _STATUS_MODULES + (_LOG_MODULES if args.lines else ()) + (() if out.json else _TREE_MODULES)


async def _status(sd: Systemd, target: Target, args: Namespace, out: _Out) -> int:
    rc = 0
    texts: list[str] = []
    records: list[dict[str, Any]] = []
    names: list[str] = []
    for arg in args.args:
        if arg.isdigit():
            names.append(await sd.find_unit_of_pid(int(arg)))
        elif is_glob(arg):  # like systemctl: every loaded unit the pattern matches
            names += [u.name for u in filter_units(await sd.list_units([arg]), all_units=True)]
        else:
            names.append(mangle(arg))
    for name in names:
        st = await sd.status(name)
        from nsdash.inside import procs, unitlog  # status only: unitlog brings the journal locator

        if st.load_state == "not-found" and st.active_state == "inactive":
            out.errors.append(f"nsdash: unit {name} could not be found in machine '{target.name}'; "
                              f"see 'nsdash systemctl -M {target.name} list-unit-files'")
            rc = rc or EXIT_NO_SUCH_UNIT
            continue
        processes = procs.unit_processes(target, st.control_group) if st.control_group else []
        log = unitlog.unit_lines(target, st.name, args.lines) if args.lines else []
        triggers = list(zip(st.triggered_by, await sd.active_states(st.triggered_by), strict=True))
        if out.json:
            records.append(render.status_json(st, processes, log))
        else:
            texts.append(render.status(escape_fields(st), processes=[escape_fields(p) for p in processes or ()],
                                       log=[escape_fields(line) for line in log],
                                       triggers=[(escape(t), s) for t, s in triggers], color=_color()))
        if st.active_state not in ("active", "reloading"):
            rc = rc or EXIT_NOT_RUNNING
    if out.json:
        out.emit(records)
    elif texts:
        out.text.append("\n".join(texts))
    return rc


async def _jobs(sd: Systemd, verb: str, units: list[str], args: Namespace, out: _Out) -> int:
    """Queue every job first, then wait for all of them, as systemctl does."""
    if args.block:
        await sd.subscribe()
    queued = []
    rc = 0
    for unit in units:
        try:
            queued.append(await sd.enqueue(verb, unit, args.job_mode))
        except UnitNotFound as e:
            out.errors.append(f"nsdash: failed to {verb} {unit}: {e.oneline()}")
            rc = UnitNotFound.exit_code
    results = []
    for job in queued:
        try:
            results.append(await sd.finish(job) if args.block else job)
        except JobFailed as e:
            out.errors.append(f"nsdash: {e.oneline()}")
            results.append(e.outcome)
            rc = rc or 1
    if out.json:
        out.emit([{"unit": j.unit, "job": j.job_id, "kind": j.kind, "result": j.result} for j in results])
    return rc


async def _install(sd: Systemd, verb: str, args: Namespace, out: _Out) -> int:
    if verb == "enable":
        changes = await sd.enable(args.args, runtime=args.runtime)
    else:
        changes = await sd.disable(args.args, runtime=args.runtime)
    for c in changes:
        if c.kind == "symlink":
            out.errors.append(f"Created symlink {c.path} → {c.source}.")
        elif c.kind == "unlink":
            out.errors.append(f'Removed "{c.path}".')
    rc = 0
    if args.now:
        rc = await _jobs(sd, "start" if verb == "enable" else "stop", [mangle(u) for u in args.args], args, out)
    elif out.json:
        out.emit([{"type": c.kind, "path": c.path, "source": c.source} for c in changes])
    return rc


__all__ = ["main", "build_parser", "NsdashError"]
