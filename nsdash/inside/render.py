"""systemctl's text layouts for units, unit files and status, as pure functions of the records.

Shared by `nsdash systemctl` and the dashboard's unit views; no I/O here.
"""

from __future__ import annotations

import time

from nsdash.inside.units import JobInfo, UnitFile, UnitInfo, UnitStatus

TYPE_CHECKING = False  # typing costs `systemctl` 2 ms; the annotations are strings
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

    # for the annotations only: unitlog brings the journal locator, which only `status` needs
    from nsdash.inside.procs import UnitProcess
    from nsdash.inside.unitlog import LogLine

# States for which systemctl prints "-" instead of a preset (here, not in inside/presets, which
# reads the preset files: `status` shows a preset but reads none, and loads one module less)
NO_PRESET_STATES = frozenset({"alias", "static", "generated", "transient"})
CLD_EXITED, CLD_KILLED, CLD_DUMPED = 1, 2, 3
EXIT_STATUS_NAMES = {0: "SUCCESS", 1: "FAILURE", 2: "INVALIDARGUMENT", 3: "NOTIMPLEMENTED", 4: "NOPERMISSION",
                     5: "NOTINSTALLED", 6: "NOTCONFIGURED", 7: "NOTRUNNING", 200: "CHDIR", 203: "EXEC",
                     204: "MEMORY", 209: "STDOUT", 217: "USER", 226: "NAMESPACE"}
LEGEND = ("LOAD   = Reflects whether the unit definition was properly loaded.\n"
          "ACTIVE = The high-level unit activation state, i.e. generalization of SUB.\n"
          "SUB    = The low-level unit activation state, values depend on unit type.\n")
LABEL_WIDTH = 11
GREEN, RED, RESET = "\x1b[0;1;32m", "\x1b[0;1;31m", "\x1b[0m"  # systemctl's highlight colours


def paint(text: str, active_state: str, color: bool) -> str:
    """TEXT in the colour systemctl gives ACTIVE_STATE (green active, red failed), if COLOR."""
    if not color:
        return text
    if active_state in ("active", "reloading"):
        return f"{GREEN}{text}{RESET}"
    if active_state == "failed":
        return f"{RED}{text}{RESET}"
    return text  # "TriggeredBy" is the widest label systemctl status aligns on


def sort_key(name: str) -> tuple[str, str]:
    """systemctl's order: by unit type suffix, then by name, both case-insensitive."""
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    return suffix.lower(), name.lower()


def glyph(active_state: str) -> str:
    """The state circle systemctl status prints before a unit."""
    if active_state == "failed":
        return "×"
    if active_state in ("inactive", "maintenance"):
        return "○"
    return "●"


# ---------------------------------------------------------------- tables

def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[list[str]]:
    """Rows padded to column widths (the last column unpadded), as systemd's table does."""
    widths = [max([len(header[i])] + [len(r[i]) for r in rows]) for i in range(len(header))]
    out = []
    for r in [list(header), *rows]:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths[:-1], strict=True)] + [r[-1]]
        out.append(cells)
    return out


def list_units(units: Sequence[UnitInfo], *, legend: bool = True, all_units: bool = False,
               states: Sequence[str] = (), color: bool = False) -> str:
    units = sorted(units, key=lambda u: sort_key(u.name))
    with_jobs = any(u.job_id is not None for u in units)
    header = ["UNIT", "LOAD", "ACTIVE", "SUB"] + (["JOB"] if with_jobs else []) + ["DESCRIPTION"]
    rows = [[u.name, u.load_state, u.active_state, u.sub_state]
            + ([u.job_type or ""] if with_jobs else []) + [u.description] for u in units]
    lines = []
    for i, cells in enumerate(_table(header, rows)):
        marked = i > 0 and (units[i - 1].failed or units[i - 1].load_error)
        text = f"{'●' if marked else ' '} {' '.join(cells)}".rstrip()
        lines.append(paint(text, "failed", color) if marked else text)
    if not legend:
        return "\n".join(lines[1:]) + ("\n" if len(lines) > 1 else "")
    text = "\n".join(lines) + "\n"
    if units:
        text += "\n" + LEGEND + ("JOB    = Pending job for the unit.\n" if with_jobs else "")
    count = f"{len(units)} loaded units listed."
    if all_units or "inactive" in states:
        text += f"{count}\nTo show all installed unit files use 'systemctl list-unit-files'.\n"
    elif not states:
        text += (f"{count} Pass --all to see loaded but inactive units, too.\n"
                 "To show all installed unit files use 'systemctl list-unit-files'.\n")
    else:
        text += f"{count}\n"
    return text


def list_unit_files(files: Sequence[UnitFile], presets: dict[str, str] | None = None, *,
                    legend: bool = True) -> str:
    files = sorted(files, key=lambda f: sort_key(f.name))
    header = ["UNIT FILE", "STATE"] + (["PRESET"] if presets is not None else [])
    rows = []
    for f in files:
        row = [f.name, f.state]
        if presets is not None:
            row.append("-" if f.state in NO_PRESET_STATES else presets.get(f.name, "-"))
        rows.append(row)
    lines = [" ".join(cells).rstrip() for cells in _table(header, rows)]
    if not legend:
        return "\n".join(lines[1:]) + ("\n" if rows else "")
    return "\n".join(lines) + f"\n\n{len(files)} unit files listed.\n"


# ---------------------------------------------------------------- times and sizes

def format_timestamp(us: int) -> str:
    """'Sun 2026-11-29 05:33:55 UTC' in the local time zone, as systemd prints it."""
    return time.strftime("%a %Y-%m-%d %H:%M:%S %Z", time.localtime(us / 1e6))


def format_relative(us: int, now_us: int) -> str:
    """systemd's format_timestamp_relative(): '1min 10s ago', '8min ago', '2h 3min ago'."""
    d = now_us - us
    if d <= 0:
        return "now" if d == 0 else "in the future"
    s = d // 1_000_000
    minute, hour, day = 60, 3600, 86400
    week, month, year = 7 * day, 2629800, 31557600
    if s >= year:
        return f"{s // year} years {(s % year) // month} months ago"
    if s >= month:
        return f"{s // month} months {(s % month) // day} days ago"
    if s >= week:
        return f"{s // week} weeks {(s % week) // day} days ago"
    if s >= 2 * day:
        return f"{s // day} days ago"
    if s >= 25 * hour:
        return f"1 day {(s - day) // hour}h ago"
    if s >= 6 * hour:
        return f"{s // hour}h ago"
    if s >= hour:
        return f"{s // hour}h {(s % hour) // minute}min ago"
    if s >= 5 * minute:
        return f"{s // minute}min ago"
    if s >= minute:
        return f"{s // minute}min {s % minute}s ago"
    if s >= 1:
        return f"{s}s ago"
    return f"{d // 1000}ms ago" if d >= 1000 else f"{d}us ago"


def format_bytes(n: int) -> str:
    """systemd's format_bytes(): 200.0K, 1.5M, 512B."""
    for unit, factor in (("E", 1 << 60), ("P", 1 << 50), ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20),
                         ("K", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.1f}{unit}"
    return f"{n}B"


def format_cpu(ns: int) -> str:
    """CPU time at millisecond accuracy: '3ms', '1.352s', '2min 3.400s'."""
    ms = ns // 1_000_000
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest_ms = divmod(ms, 60_000)
    secs = f"{rest_ms / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{minutes}min {secs}" if minutes else secs


def exit_description(code: int | None, status: int | None) -> str:
    """'code=exited, status=1/FAILURE' or 'code=killed, signal=TERM'."""
    if code == CLD_EXITED:
        name = EXIT_STATUS_NAMES.get(status or 0)
        return f"code=exited, status={status}" + (f"/{name}" if name else "")
    if code in (CLD_KILLED, CLD_DUMPED):
        import signal  # a killed main process only: its enums cost every status 0.4 ms

        try:
            sig = signal.Signals(status or 0).name.removeprefix("SIG")
        except ValueError:
            sig = str(status)
        return f"code={'killed' if code == CLD_KILLED else 'dumped'}, signal={sig}"
    return f"code={code}, status={status}"


# ---------------------------------------------------------------- status

def _label(name: str) -> str:
    return f"{name.rjust(LABEL_WIDTH)}: "


def cgroup_tree(control_group: str, processes: Iterable[UnitProcess]) -> list[str]:
    """systemd-cgls style lines under CONTROL_GROUP: a cgroup's processes first, then its children."""
    from nsdash.monitor.tree_lines import process_tree  # status only: list-units loads two modules less

    by_group: dict[str, list[tuple[int, str]]] = {}
    for p in processes:
        by_group.setdefault(p.cgroup, []).append((p.pid, p.cmdline))
    return process_tree(control_group, by_group)


def status(st: UnitStatus, *, processes: Sequence[UnitProcess] | None = None,
           log: Sequence[LogLine] = (), triggers: Sequence[tuple[str, str]] = (),
           now_us: int | None = None, color: bool = False) -> str:
    """The text of `systemctl status UNIT`."""
    now_us = now_us if now_us is not None else int(time.time() * 1e6)
    out = [f"{paint(glyph(st.active_state), st.active_state, color)} {st.name}"
           + (f" - {st.description}" if st.description else "")]

    details = [st.fragment_path] if st.fragment_path else []
    if st.unit_file_state:
        details.append(st.unit_file_state)
        if st.unit_file_preset and st.unit_file_state not in NO_PRESET_STATES:
            details.append(f"preset: {st.unit_file_preset}")
    loaded = st.load_state + (f" ({'; '.join(details)})" if details else "")
    if st.load_error and st.load_state != "loaded":
        loaded = f"{st.load_state} (Reason: {st.load_error})"
    out.append(_label("Loaded") + loaded)

    active = f"{st.active_state} ({st.sub_state})"
    if st.failed and st.result and st.result != "success":
        active = f"{st.active_state} (Result: {st.result})"
    active = paint(active, st.active_state, color)
    since = st.active_enter_us if st.active_state in ("active", "reloading") else st.inactive_enter_us
    if st.active_state in ("active", "reloading", "inactive", "failed") and since:
        active += f" since {format_timestamp(since)}; {format_relative(since, now_us)}"
    out.append(_label("Active") + active)

    if triggers:
        out.append(_label("TriggeredBy") + f"{glyph(triggers[0][1])} {triggers[0][0]}")
        out += [" " * (LABEL_WIDTH + 2) + f"{glyph(state)} {name}" for name, state in triggers[1:]]
    if st.documentation:
        out.append(_label("Docs") + st.documentation[0])
        out += [" " * (LABEL_WIDTH + 2) + doc for doc in st.documentation[1:]]

    main = st.main_pid
    if main:
        comm = next((p.comm for p in processes or () if p.pid == main), None)
        out.append(_label("Main PID") + f"{main}" + (f" ({comm})" if comm else ""))
    elif st.exec_main_pid and st.exec_main_code:
        out.append(_label("Main PID") + f"{st.exec_main_pid} ({exit_description(st.exec_main_code, st.exec_main_status)})")

    if st.tasks_current is not None:
        out.append(_label("Tasks") + f"{st.tasks_current}" + (f" (limit: {st.tasks_max})" if st.tasks_max else ""))
    if st.memory_current is not None:
        out.append(_label("Memory") + format_bytes(st.memory_current))
    if st.cpu_usage_ns is not None:
        out.append(_label("CPU") + format_cpu(st.cpu_usage_ns))
    if st.control_group and (processes or st.active_state != "inactive"):
        out.append(_label("CGroup") + st.control_group)
        out += [" " * (LABEL_WIDTH + 2) + line for line in cgroup_tree(st.control_group, processes or ())]
    text = "\n".join(out) + "\n"
    if log:
        text += "\n" + "\n".join(line.short() for line in log) + "\n"
    return text


def list_jobs(jobs: Sequence[JobInfo], *, legend: bool = True) -> str:
    if not jobs:
        return "No jobs running.\n" if legend else ""
    rows = [[str(j.job_id), j.unit, j.kind, j.state] for j in jobs]
    lines = [" ".join(cells).rstrip() for cells in _table(["JOB", "UNIT", "TYPE", "STATE"], rows)]
    if not legend:
        return "\n".join(lines[1:]) + "\n"
    return "\n".join(lines) + f"\n\n{len(jobs)} jobs listed.\n"


# What `show` prints unquoted in a list (a regular expression would bring re to list-units and status)
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:/@+=,-")


def property_value(name: str, value: Any) -> str:
    """A property as `systemctl show` prints it: timestamps as dates, yes/no, [not set], quoted lists."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        if value == 2**64 - 1:
            return "infinity" if name.endswith("Max") or name.startswith("Limit") else "[not set]"
        if name.endswith("Timestamp"):
            return format_timestamp(value) if value else ""
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return " ".join(v if _PLAIN.issuperset(v) else f'"{v}"' for v in value)
    return str(value)


def show(props: dict[str, Any], names: Sequence[str] = (), value_only: bool = False, all_props: bool = False) -> str:
    """`systemctl show`: Name=value lines; without -p, empty and structured properties are left out."""
    out = []
    for name, value in props.items():
        if names and name not in names:
            continue
        structured = isinstance(value, list | tuple) and not all(isinstance(v, str) for v in value)
        text = property_value(name, value)
        if not names and not all_props and (structured or text == "" or text == "[not set]"):
            continue
        out.append(text if value_only else f"{name}={text}")
    return "".join(line + "\n" for line in out)


# ---------------------------------------------------------------- JSON

def units_json(units: Sequence[UnitInfo]) -> list[dict[str, Any]]:
    """list-units rows keyed like systemctl -o json: unit, load, active, sub, job, description."""
    return [{"unit": u.name, "load": u.load_state, "active": u.active_state, "sub": u.sub_state,
             "job": u.job_type, "description": u.description}
            for u in sorted(units, key=lambda u: sort_key(u.name))]


def unit_files_json(files: Sequence[UnitFile], presets: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return [{"unit_file": f.name, "path": f.path, "state": f.state,
             "preset": None if presets is None or f.state in NO_PRESET_STATES else presets.get(f.name)}
            for f in sorted(files, key=lambda f: sort_key(f.name))]


def status_json(st: UnitStatus, processes: Sequence[UnitProcess] | None, log: Sequence[LogLine]) -> dict[str, Any]:
    data: dict[str, Any] = st._asdict()
    data["processes"] = None if processes is None else [p._asdict() for p in processes]
    data["journal"] = [line._asdict() for line in log]
    return data
