"""machinectl's verbs, names and output: list, status, start, login, shell, poweroff,
reboot, terminate, kill, list-images, ps.

The dispatcher passes the verb as argv[0].  Formatting is pure (format_* take
records, return text) so it is tested without machines.  Every table cell and
status line is escaped (nsdash.system.text): hostnames, os-release values,
command lines, cgroup names and the console log come from the guest.  JSON
output is escaped by the encoder (ASCII only).
"""

from __future__ import annotations

import posix
import sys
import time

from nsdash.cli.quickparse import REMAINDER, Namespace, Parser
from nsdash.errors import NsdashError, UsageError
from nsdash.machines.registry import Machine
from nsdash.system import bareos, jsontext
from nsdash.system.text import escape

TYPE_CHECKING = False  # typing and datetime cost 3 ms of `nsdash list`; the annotations are strings
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

VERBS = ("list", "status", "start", "login", "shell", "poweroff", "reboot", "terminate", "kill",
         "list-images", "ps")


# ---------------------------------------------------------------- pure formatting


def table(headers: list[str], rows: list[list[str]], legend: bool = True) -> str:
    """machinectl's tables: left-aligned columns one space apart, the last unpadded; cells escaped."""
    all_rows = ([headers] if legend else []) + [[escape(c) for c in r] for r in rows]
    if not all_rows:
        return ""
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(headers))]
    lines = []
    for r in all_rows:
        cells = [c.ljust(widths[i]) for i, c in enumerate(r[:-1])] + [r[-1]]
        lines.append(" ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


STATUS_WIDTH = 60  # characters of the guest's STATUS= line in the list's STATE column


def machine_state(m: Machine, width: int | None = None) -> str:
    """The guest's progress (starting, running, degraded, ...), with its last STATUS= line
    while it is not simply running; guest text, escaped."""
    s = m.state
    if m.orphan:
        return "orphaned"
    if s is None:
        return "-" if m.source == "nsdash" else "running"
    text: str = s.state
    if s.status_text and s.state != "running":
        status = escape(s.status_text)
        if width is not None and len(status) > width:
            status = status[:width - 1] + "…"
        text += f" ({status})"
    return text


def format_list(machines: list[Machine], legend: bool = True) -> str:
    """machinectl's six columns, then STATE (nsdash's: the guest's progress), last so that
    scripts reading machinectl's columns by position keep working."""
    rows = []
    for m in machines:
        addr = m.addresses[0] + ("…" if len(m.addresses) > 1 else "") if m.addresses else "-"
        service = m.service + (" (orphaned)" if m.orphan else "")
        rows.append([m.name, m.class_, service, m.os, m.version, addr, machine_state(m, STATUS_WIDTH)])
    text = table(["MACHINE", "CLASS", "SERVICE", "OS", "VERSION", "ADDRESSES", "STATE"], rows, legend)
    if legend:
        text += ("\n" if rows else "") + (f"{len(rows)} machines listed.\n" if rows else "No machines.\n")
    return text


def machine_json(m: Machine) -> dict[str, Any]:
    s = m.state
    return {"machine": m.name, "class": m.class_, "service": m.service, "os": m.os if m.os != "-" else None,
            "version": m.version if m.version != "-" else None, "addresses": m.addresses or None,
            "leader": m.leader, "root": m.root, "orphaned": m.orphan,
            "state": s.state if s else None, "status_text": s.status_text if s else None,
            "uuid": s.uuid if s else None, "foreground": s.foreground if s else False,
            "since": s.since if s else None,
            "boot": s.boot if s else None, "cgroup": s.cgroup if s else None,
            "netif": s.netif if s else [], "network": s.network if s else None,
            "supervisor": s.supervisor if s else None,
            "registered": s.registered if s else m.source == "machined"}


def _since(iso: str, now: datetime | None = None) -> str:
    t = _utc_seconds(iso)
    if t is None:
        return iso
    secs = max(0, int((time.time() if now is None else now.timestamp()) - t))
    if secs < 60:
        ago = f"{secs}s ago"
    elif secs < 3600:
        ago = f"{secs // 60}min {secs % 60}s ago"
    else:
        ago = f"{secs // 3600}h {secs % 3600 // 60}min ago"
    return f"{time.strftime('%a %Y-%m-%d %H:%M:%S UTC', time.gmtime(t))}; {ago}"


_ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # how the supervisor writes `since` in state.json


def _utc_seconds(iso: str) -> int | None:
    """ISO (_ISO_FORMAT, UTC) as seconds since the epoch, None where strptime refuses it.

    The form the supervisor writes is read by hand: datetime.strptime imports
    _strptime, calendar and locale, a tenth of `nsdash status`.  Any other
    spelling goes to strptime, so both read alike."""
    fields = (iso[0:4], iso[5:7], iso[8:10], iso[11:13], iso[14:16], iso[17:19])
    if (len(iso) == 20 and iso[4] + iso[7] + iso[10] + iso[13] + iso[16] + iso[19] == "--T::Z"
            and all(f.isascii() and f.isdigit() for f in fields)):
        y, mo, d, h, mi, s = (int(f) for f in fields)
        leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
        month_days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
        if y >= 1000 and 1 <= mo <= 12 and 1 <= d <= month_days[mo - 1] and h < 24 and mi < 60 and s < 60:
            # days from 1970-01-01 to Y-MO-D in the proleptic Gregorian calendar (eras of 400 years)
            yy = y - (mo <= 2)
            era, year_of_era = divmod(yy, 400)
            day_of_year = (153 * (mo + (-3 if mo > 2 else 9)) + 2) // 5 + d - 1
            day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
            days = era * 146097 + day_of_era - 719468
            return days * 86400 + h * 3600 + mi * 60 + s
    from datetime import UTC, datetime

    try:
        return int(datetime.strptime(iso, _ISO_FORMAT).replace(tzinfo=UTC).timestamp())
    except ValueError:
        return None


# ---------------------------------------------------------------- helpers


def _parser(verb: str, names: str | None = "*") -> Parser:
    p = Parser(f"nsdash {verb}")
    if names:
        p.add_argument("names", nargs=names, metavar="NAME")
    return p


def _parse(p: Parser, argv: list[str]) -> Namespace:
    return p.parse_args(argv)  # (an error is one line: nsdash.cli.args.ArgumentParser)


def _output_opts(p: Parser) -> None:
    p.add_argument("-o", "--output", choices=["short", "json", "json-pretty"], default="short")
    p.add_argument("--no-legend", action="store_true")
    p.add_argument("--no-pager", action="store_true")


def _dump(data: Any, mode: str) -> None:
    # json.dumps's text (jsontext hands json what is not plain): json's import is a tenth of `list`
    sys.stdout.write(jsontext.encode(data, indent=2 if mode == "json-pretty" else None) + "\n")


def parse_signal(text: str) -> int:
    """kill's --signal: the one rule (launcher.validate, systemd's signal_from_string()), with
    names in any case, as machinectl's users type them (`-s kill`)."""
    from nsdash.launcher.validate import parse_signal as signal_from_string  # kill's alone

    return signal_from_string(text.upper(), "signal")


def _names_required(ns: Namespace, verb: str) -> list[str]:
    if not ns.names:
        raise UsageError(f"'nsdash {verb}' needs a machine name", "see 'nsdash list' for running machines")
    return [ns.names] if isinstance(ns.names, str) else list(ns.names)


# ---------------------------------------------------------------- verbs


def cmd_list(argv: list[str]) -> int:
    p = _parser("list", None)
    _output_opts(p)
    p.add_argument("--all", "-a", action="store_true", help="ignored (machinectl compatibility)")
    ns = _parse(p, argv)
    from nsdash.machines import registry

    machines = registry.list_machines()
    if ns.output.startswith("json"):
        _dump([machine_json(m) for m in machines], ns.output)
    else:
        sys.stdout.write(format_list(machines, legend=not ns.no_legend))
    return 0


def _limits(m: Machine) -> dict[str, str]:
    """The machine's limits (machines/limits.py), for nsdash's own machines."""
    if m.source != "nsdash" or m.state is None or not m.state.cgroup:
        return {}
    from nsdash.machines import limits

    try:
        return limits.limits(m.name, m.state.cgroup)
    except NsdashError:
        return {}


def _status_text(m: Machine, log_lines: list[str], limits: dict[str, str]) -> str:
    from nsdash.monitor import procs, tree
    from nsdash.monitor.tree_lines import process_tree
    from nsdash.system import cgroupfs

    s = m.state
    head = m.name + (f"({s.uuid})" if s and s.uuid else "")
    out = [head]

    def field(label: str, value: str) -> None:
        out.append(f"{label:>16}: {value}")

    if s:
        field("Since", _since(s.since))
    if m.leader:
        field("Leader", f"{m.leader} ({(procs.cmdline(m.leader) or '?').split()[0].rsplit('/', 1)[-1]})")
    field("Service", f"{m.service}; class {m.class_}")
    if m.orphan:
        field("State", "orphaned (its supervisor died)")
    elif s:
        field("State", f"{s.state}, boot {s.boot}" + (" (in a terminal)" if s.foreground else ""))
        if s.status_text:
            field("Status", escape(s.status_text))
    if m.root:
        field("Root", m.root)
    if s and s.netif:
        field("Iface", " ".join(s.netif))
    if s and s.network:
        field("Network", s.network)
    for i, a in enumerate(m.addresses):
        out.append(f"{'Address' if i == 0 else '':>16}{': ' if i == 0 else '  '}{a}")
    if m.os_release:
        field("OS", m.os_release.get("PRETTY_NAME") or m.os)
    if s and s.cgroup:
        field("Unit", s.cgroup.rsplit("/", 1)[-1])
        if limits:
            field("Limits", " ".join(f"{k}={v}" for k, v in limits.items()))
        # the hierarchy that holds every process, as strings (the launcher's MachineCgroup and pathlib
        # cost `status` a tenth of its run); s.cgroup is where the machine is (a --slice moves it)
        top = tree.primary_mount(cgroupfs.detect()) + s.cgroup
        found: dict[str, list[tuple[int, str]]] = {}
        for sub in cgroupfs.subtree(top):  # no recursion: a guest nests its cgroups at will
            rel = sub[len(top):].lstrip("/")  # (subtree gives TOP, then TOP/...)
            try:
                found["" if rel == "." else rel] = [(pi.pid, pi.cmdline) for pi in procs.processes(sub)]
            except OSError:
                found["" if rel == "." else rel] = []
        for line in process_tree("", found):
            out.append(" " * 18 + line)
    if log_lines:
        out.append("")
        out.extend(log_lines)
    return "\n".join(escape(line) for line in out) + "\n"


def cmd_status(argv: list[str]) -> int:
    p = _parser("status")
    _output_opts(p)
    p.add_argument("-n", "--lines", type=int, default=10)
    ns = _parse(p, argv)
    from nsdash.machines import registry
    from nsdash.machines import state as st
    from nsdash.machines.consolelog import last_lines

    names = _names_required(ns, "status")
    results: list[Any] = []
    texts = []
    for name in names:
        if st.orphaned(name):  # the control client (a writer, and many imports) only to clean it
            from nsdash.machines import client

            client.clean_if_orphan(name)
        m = registry.lookup(name)
        log = bareos.join(st.machine_path(name), st.CONSOLE_LOG)  # a string: pathlib is not on status's path
        lines = last_lines(log, ns.lines) if m.source == "nsdash" else []
        limits = _limits(m)
        results.append({**machine_json(m), "limits": limits, "log": lines})
        texts.append(_status_text(m, lines, limits))
    if ns.output.startswith("json"):
        _dump(results if len(results) > 1 else results[0], ns.output)
    else:
        sys.stdout.write("\n".join(texts))
    return 0


def cmd_start(argv: list[str]) -> int:
    p = _parser("start")
    p.add_argument("--wait", action="store_true", help="return once the guest is up (READY=1, or its init runs)")
    p.add_argument("--wait-timeout", type=float, default=90.0, metavar="SECS",
                   help="how long --wait waits (default 90)")
    ns = _parse(p, argv)
    if not 0 < ns.wait_timeout <= 86400:
        raise UsageError(f"--wait-timeout takes seconds (0 < SECS <= 86400), not {ns.wait_timeout:g}",
                         "for example --wait-timeout=90")
    names = _names_required(ns, "start")
    if posix.geteuid() != 0:  # before the image search: /var/lib/machines is 0700, so "no image" would mislead
        from nsdash.errors import PrivilegeError

        raise PrivilegeError("'nsdash start' needs root", "run it with sudo (machines need namespaces and cgroups)")
    from nsdash.machines import client

    for name in names:
        client.start(name, wait=ns.wait, wait_timeout=ns.wait_timeout)
    return 0


def _simple(verb: str, argv: list[str]) -> int:
    ns = _parse(_parser(verb), argv)
    from nsdash.machines import client

    action = {"poweroff": client.poweroff, "terminate": client.terminate, "reboot": client.reboot}[verb]
    for name in _names_required(ns, verb):
        try:
            action(name)
        except client.OrphanCleaned:
            if verb == "reboot":
                raise
            # its supervisor had died; cleaning up its remains stopped it, as asked (the notice
            # said so): not a second line saying it "is not running" and exit status 1
    return 0


def cmd_set_property(argv: list[str]) -> int:
    """nsdash set-property NAME NAME=VALUE...: systemctl set-property --runtime on the machine's
    scope where systemd made it, else the machine's cgroup files (machines/units.py)."""
    p = _parser("set-property", None)
    p.add_argument("name", metavar="MACHINE")
    p.add_argument("assignments", nargs="+", metavar="NAME=VALUE")
    ns = _parse(p, argv)
    from nsdash.machines import client, registry, units

    client.require_root()
    client.clean_if_orphan(ns.name)
    m = registry.lookup(ns.name, with_machined=False)
    if m.state is None or not m.state.cgroup or m.orphan:
        raise UsageError(f"machine '{ns.name}' is not running", "see 'nsdash list'")
    for assignment in ns.assignments:
        units.set_limit(m.name, m.state.cgroup, assignment)
    return 0


def cmd_kill(argv: list[str]) -> int:
    p = _parser("kill")
    p.add_argument("-s", "--signal", default="SIGTERM")
    p.add_argument("--kill-whom", "--kill-who", dest="whom", choices=["leader", "all"], default="all")
    ns = _parse(p, argv)
    sig = parse_signal(ns.signal)
    from nsdash.machines import client

    for name in _names_required(ns, "kill"):
        client.kill(name, sig, ns.whom)
    return 0


def cmd_list_images(argv: list[str]) -> int:
    p = _parser("list-images", None)
    _output_opts(p)
    ns = _parse(p, argv)
    from nsdash.machines import imagescan
    from nsdash.system.utctime import utc

    rows, data = [], []
    for image in imagescan.discover(crtime=False, facts=False):  # neither is shown here
        ro = "yes" if image.read_only else "no"
        mtime = utc(image.mtime, "%a %Y-%m-%d %H:%M:%S UTC")  # the guest's to set
        rows.append([image.name, image.type, ro, image.where, mtime])
        data.append({"name": image.name, "type": image.type, "ro": image.read_only, "path": image.where,
                     "mtime": int(image.mtime)})
    if ns.output.startswith("json"):
        _dump(data, ns.output)
        return 0
    sys.stdout.write(table(["NAME", "TYPE", "RO", "PATH", "MODIFIED"], rows, not ns.no_legend))
    if not ns.no_legend:
        sys.stdout.write(("\n" if rows else "") + (f"{len(rows)} images listed.\n" if rows else "No images.\n"))
    return 0


def _machine_pids(m: Machine) -> list[int] | None:
    """The PIDs in machine M's cgroup and below it (MachineCgroup.pids' reading, without
    launcher/cgroup and its pathlib), or None where no cgroup is recorded for it (machined's
    machines: every process is looked at)."""
    cgroup = m.state.cgroup if m.state else None
    if not cgroup:
        return None
    from nsdash.system import cgroupfs

    return cgroupfs.procs(cgroupfs.machine_dirs(cgroupfs.detect(), cgroup))


def cmd_ps(argv: list[str]) -> int:
    p = _parser("ps", None)
    _output_opts(p)
    p.add_argument("-M", "--machine", dest="machine")
    ns = _parse(p, argv)
    import psutil

    from nsdash.machines import registry
    from nsdash.monitor.machines import MachineMap, process_cgroup

    pids = None
    if ns.machine is not None:  # only its processes are read, not every process of the host ('' is no name)
        pids = _machine_pids(registry.lookup(ns.machine, details=False))
    mapping = MachineMap()
    rows, data = [], []
    for pid in psutil.pids() if pids is None else pids:
        cg = process_cgroup(pid)
        machine = mapping.machine_of(cg) if cg else None
        if ns.machine is not None and machine != ns.machine:  # (a machine nested in it is its own)
            continue
        try:
            info = psutil.Process(pid).as_dict(["username", "cmdline", "name", "cpu_times"])
        except psutil.Error:  # gone
            continue
        cmd = " ".join(info["cmdline"] or []) or f"[{info['name']}]"
        t = info["cpu_times"]
        secs = int(t.user + t.system) if t else 0
        rows.append([str(pid), machine or "-", info["username"] or "?", f"{secs // 60}:{secs % 60:02d}", cmd])
        data.append({"pid": pid, "machine": machine, "user": info["username"], "cpu_seconds": secs, "command": cmd})
    if ns.output.startswith("json"):
        _dump(data, ns.output)
        return 0
    sys.stdout.write(table(["PID", "MACHINE", "USER", "TIME", "COMMAND"], rows, not ns.no_legend))
    return 0


def cmd_login(argv: list[str]) -> int:
    p = _parser("login", "?")
    ns = _parse(p, argv)
    names = _names_required(ns, "login")
    from nsdash.cli.login import login

    return login(names[0])


def cmd_shell(argv: list[str]) -> int:
    p = Parser("nsdash shell")
    p.add_argument("--uid", default=None, help="root or 0 only: commands run as root")
    p.add_argument("-E", "--setenv", action="append", default=[])
    p.add_argument("target", metavar="NAME")
    p.add_argument("command", nargs=REMAINDER)
    ns = _parse(p, argv)
    user, _, name = ns.target.rpartition("@")
    name = name or ".host"
    if name == ".host":
        raise UsageError("'nsdash shell' enters machines, not the host", "name a machine from 'nsdash list'")
    for asked in (user, ns.uid):
        # machinectl runs the command as that user; running it as root instead would be a surprise
        if asked not in (None, "", "root", "0"):
            raise UsageError(f"'nsdash shell' runs commands as root only, not as '{asked}'",
                             f"drop the user, or change user inside: nsdash shell {name} /bin/su - USER")
    from nsdash.launcher.validate import parse_setenv  # spawn's -E rule (NAME alone: the caller's value)

    env = dict(parse_setenv(item) for item in ns.setenv)
    from nsdash.cli.shell import shell

    return shell(name, list(ns.command), env)


def main(argv: list[str]) -> int:
    verb, rest = argv[0], argv[1:]
    if verb in ("poweroff", "reboot", "terminate"):
        return _simple(verb, rest)
    handler = {"list": cmd_list, "status": cmd_status, "start": cmd_start, "kill": cmd_kill,
               "list-images": cmd_list_images, "ps": cmd_ps, "login": cmd_login, "shell": cmd_shell,
               "set-property": cmd_set_property}.get(verb)
    if handler is None:
        raise UsageError(f"unknown machine verb '{verb}'")
    return handler(rest)
