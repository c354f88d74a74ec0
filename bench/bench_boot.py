"""Boot speed of every guest: nsdash against systemd-nspawn 252 on the same tree.

For each guest of the matrix (nsdash.demo.trees.MATRIX), each tool boots a copy
of the cached tree of its own in a PTY of its own, as a user runs it in a
terminal (one that answers the size queries systemd 257 and later send to the
console, as a user's terminal does; see ANSWERS):

    nsdash spawn -q -bD COPY -M NAME
    systemd-nspawn -q --keep-unit --register=no -bD COPY -M NAME

and two times are taken from the console:
  login     from exec to the console's login prompt (`NAME login: `)
  poweroff  from typing `poweroff` in a root shell at the console (logged in
            as root, no password) to the tool's exit: the guest's own shutdown.
            Split in two below the table: the guest's shutdown (typed to its PID 1
            gone, seen through a pidfd on it) and the tool's exit after PID 1 (its
            teardown: cgroups, state files, its own process).

Runs alternate (nsdash first on even runs, systemd-nspawn first on odd ones)
after a warm-up run each; the table shows medians, the spread (min-max) and the
ratio nsdash / systemd-nspawn.  A run that does not reach its mark within the
timeout is shown as "-" (and named below the table).  Below the table, per guest,
the boot and the guest's shutdown in phases (BOOT_PHASES, PHASES: the guest's marks from its
own journal, for systemd guests that keep one) with the tool's CPU time, then how many runs of each tool hit Debian's sendsigs wait for processes that outlived
its SIGTERM (about 10 s; see SURVIVORS): a race inside the guest, not the tool.  Each tool boots its own
copy (not -x: systemd-nspawn's -x copies a whole tree on ext4, which would be
measured too), with SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 (cgroup2 only inside, as
nsdash does; on this hybrid host nspawn would otherwise mount the v1 layout,
which Debian unstable's systemd refuses to boot on).  nsdash runs with its bytecode compiled, as an installed wheel
has it, and as the `nsdash` command a user types (bin/nsdash, Python without `site`,
the script `make venv` installs beside the interpreter; `python -m nsdash` where there is
none), running this tree's package.  systemd-nspawn needs a system bus even with --register=no: one is
started for the run if missing (see bench_spawn.py).

With --states it only boots each systemd guest once per tool and prints what
`systemctl is-system-running --wait` and `systemctl list-units --failed` say
inside (the failed units tests/integration/test_guests.py expects).

Run as root: .venv/bin/python bench/bench_boot.py [--runs N] [--markdown] [--states] [--json] [GUEST...]
(--json: the rows for bench/summary.py on stdout, this output on stderr)
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_spawn import clean_nspawn_leftovers, copy_tree, nsdash_env, system_bus  # noqa: E402
from report import Report, compile_checkout, need_root, wants_json  # noqa: E402

from nsdash.demo import trees  # noqa: E402

TOOLS = ("nsdash", "systemd-nspawn")
LOGIN = re.compile(rb"\S login: ")
PROMPT = re.compile(rb"# ")
# Debian's sendsigs prints this when processes outlived its SIGTERM; it then waits up to
# 10 s for them before SIGKILL.  The survivor is the root shell the poweroff was typed in,
# when the login above it died (init's TERM to inittab's getty line) while the poweroff
# job still had the terminal: the kernel's hangup went to that job, not to the shell, and
# an interactive bash ignores SIGTERM.  A race inside the guest, under either tool.
SURVIVORS = re.compile(rb"Currently running processes \(ps\)")
TIMEOUT = 120.0
# Where a systemd guest's own shutdown stands, as its journal records it (monotonic time, the
# host's clock: the guest shares the host's time namespace under either tool): logind took the
# poweroff; PID 1 stopped every unit and execs systemd-shutdown; systemd-shutdown's SIGTERM
# reached journald.  After the last one: journald's exit, the final SIGKILL, reboot(2) and the
# kernel's teardown of PID 1 (the pidfd on it).  First occurrence at or after the typed poweroff.
GUEST_MARKS = (("accepted", "The system will power off now!"), ("units stopped", "Shutting down."),
               ("journal stopped", "Journal stopped"))
PHASES = ("typed to accepted", "accepted to units stopped", "units stopped to journal stopped",
          "journal stopped to PID 1 gone", "tool CPU meanwhile")
# The boot the same way: the tool's start (its exec to the guest's first bytes on the console,
# and its CPU time by then), the guest's own start (to PID 1's "Startup finished"), the getty's
# (to the login prompt).
BOOT_PHASES = ("exec to the guest's first output", "first output to startup finished",
               "startup finished to login prompt", "tool CPU to the first output")


class Failed(Exception):
    """A run did not reach its mark in time."""


def nspawn_env() -> dict[str, str]:
    """systemd-nspawn on a hybrid host gives the container the legacy (v1) cgroup layout,
    which systemd 256 and later refuse to boot on; asked to, it gives it cgroup2 only,
    the layout nsdash gives a machine and the only one on a pure cgroup2 host."""
    return {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}


def nsdash_command() -> list[str]:
    """The `nsdash` a user runs: the script installed beside this interpreter (bin/nsdash: no
    `site`, no runpy), else the package through -m.  `python -m nsdash` (before) paid for
    `site` and runpy on every boot, which the installed command does not."""
    script = Path(sys.executable).parent / "nsdash"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nsdash"]


def nsdash_boot_env() -> dict[str, str]:
    """bench_spawn's environment for nsdash, with this tree's package first on the path."""
    return {**nsdash_env(), "PYTHONPATH": str(ROOT)}


def argv(tool: str, tree: Path, name: str) -> list[str]:
    if tool == "nsdash":
        return [*nsdash_command(), "spawn", "-q", "-bD", str(tree), "-M", name]
    return ["systemd-nspawn", "-q", "--keep-unit", "--register=no", "-bD", str(tree), "-M", name]


ROWS, COLS = 24, 80
# What a terminal answers to the two size queries systemd 257 and later write to the console
# (at boot, before each getty, at shutdown) and then wait about 1/3 s each for: the text area
# in characters (CSI 18 t -> CSI 8 ; rows ; cols t) and the cursor position (CSI 6 n ->
# CSI row ; col R; asked after a move to 32766;32766, so the bottom right corner).  A PTY
# nobody answers on costs every such boot a second or more of timeouts under either tool,
# which a user's terminal does not: the bench answers as a 24x80 terminal would.
ANSWERS = ((b"\x1b[18t", b"\x1b[8;%d;%dt" % (ROWS, COLS)), (b"\x1b[6n", b"\x1b[%d;%dR" % (ROWS, COLS)))
LONGEST_QUERY = max(len(q) for q, _ in ANSWERS)


def answers(out: bytes | bytearray, scanned: int) -> tuple[bytes, int]:
    """The terminal's replies to the queries in OUT that end after offset SCANNED (a query may
    arrive split over two reads), in the order they were asked, and the new scanned offset."""
    start = max(0, scanned - LONGEST_QUERY + 1)
    found = sorted((i, reply) for query, reply in ANSWERS
                   for i in _offsets(out, query, start) if i + len(query) > scanned)
    return b"".join(reply for _, reply in found), len(out)


def _offsets(out: bytes | bytearray, query: bytes, start: int) -> list[int]:
    found = []
    i = out.find(query, start)
    while i >= 0:
        found.append(i)
        i = out.find(query, i + 1)
    return found


class Run:
    """One tool in a PTY of its own (24x80), its output kept to search in; it answers the
    guest's terminal queries as a terminal does (ANSWERS)."""

    def __init__(self, command: list[str], env: dict[str, str] | None) -> None:
        self.start = time.perf_counter()
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execvpe(command[0], command, env if env is not None else os.environ)
            finally:
                os._exit(127)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.out = bytearray()
        self.scanned = 0
        self.eof = False
        self.first_output: float | None = None  # when the guest's first bytes came (-q: the tools print none)
        self.cpu_at_first_output: float | None = None

    def expect(self, pattern: re.Pattern[bytes], since: int, what: str) -> float:
        """Read until PATTERN shows after offset SINCE; the time it showed (perf_counter)."""
        deadline = time.perf_counter() + TIMEOUT
        while not pattern.search(self.out, since):
            if self.eof or time.perf_counter() > deadline:
                raise Failed(f"no {what}")
            self._read(deadline)
        return time.perf_counter()

    def _read(self, deadline: float) -> None:
        if select.select([self.fd], [], [], max(0.0, min(1.0, deadline - time.perf_counter())))[0]:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                chunk = b""
            if chunk and not self.out:
                self.first_output, self.cpu_at_first_output = time.perf_counter(), cpu_seconds(self.pid)
            self.out += chunk
            self.eof = not chunk
            reply, self.scanned = answers(self.out, self.scanned)
            if reply:
                with contextlib.suppress(OSError):
                    os.write(self.fd, reply)

    def type(self, text: bytes) -> None:
        os.write(self.fd, text)

    def wait_exit(self, guest_pidfd: int = -1) -> float:
        """The time the tool exited: when its pidfd polled readable (it is a zombie), the
        console read meanwhile.  No polling interval: a 10 ms sleep between waitpid tries
        (before) added up to 10 ms to either tool's poweroff, at random.  GUEST_PIDFD (the
        guest's PID 1, see guest_pid1): the time it polled readable goes to self.guest_gone."""
        deadline = time.perf_counter() + TIMEOUT
        pidfd = os.pidfd_open(self.pid)
        self.guest_gone = None
        self.cpu_at_gone: float | None = None
        try:
            while True:
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise Failed("no exit")
                waiting = [pidfd] + ([] if self.eof else [self.fd]) + ([guest_pidfd] if guest_pidfd >= 0 else [])
                ready = select.select(waiting, [], [], min(1.0, left))[0]
                now = time.perf_counter()
                if guest_pidfd in ready:
                    self.guest_gone, guest_pidfd = now, -1
                    self.cpu_at_gone = cpu_seconds(self.pid)
                if pidfd in ready:
                    exited = now
                    break
                if self.fd in ready:
                    self._read(deadline)
        finally:
            os.close(pidfd)
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        if os.waitstatus_to_exitcode(status) != 0:
            raise Failed(f"exit status {os.waitstatus_to_exitcode(status)}")
        return exited

    def close(self) -> None:
        if self.pid:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, sig)
                for _ in range(100):
                    if os.waitpid(self.pid, os.WNOHANG)[0]:
                        self.pid = 0
                        break
                    time.sleep(0.1)
                if not self.pid:
                    break
        os.close(self.fd)


def guest_pid1(tool: int, proc: str = "/proc") -> int | None:
    """The host PID of the guest's PID 1 under the tool process TOOL: its child whose PID in
    its own namespace is 1 (both tools reap PID 1 themselves: it is their child once the
    middle process that forked it has gone).  None if there is none."""
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        nspid = fields.get("NSpid", "").split()
        if fields.get("PPid", "").strip() == str(tool) and len(nspid) > 1 and nspid[-1] == "1":
            return int(entry)
    return None


def _messages(journal: list[str]) -> Iterator[tuple[str, float]]:
    """(MESSAGE, monotonic seconds) of each entry of JOURNAL's JSON lines (journalctl -o json)
    that has both; a line that is not such an entry is passed over."""
    for line in journal:
        try:
            entry = json.loads(line)
            message, when = entry.get("MESSAGE"), int(entry["__MONOTONIC_TIMESTAMP"]) / 1e6
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(message, str):
            yield message, when


def shutdown_phases(journal: list[str], typed: float, gone: float) -> dict[str, float] | None:
    """The guest's shutdown in PHASES (seconds) from its journal's JSON lines (journalctl -o json:
    MESSAGE, __MONOTONIC_TIMESTAMP in microseconds), TYPED and GONE on the same clock (seconds);
    None where a mark is missing (a guest without a journal, another init) or out of order."""
    found: dict[str, float] = {}
    for message, when in _messages(journal):
        if when < typed:
            continue
        for mark, text in GUEST_MARKS:
            if mark not in found and message.startswith(text):
                found[mark] = when
    times = [typed, *(found.get(mark) for mark, _ in GUEST_MARKS), gone]
    if any(t is None for t in times):
        return None
    stamps = [float(t) for t in times if t is not None]
    if stamps != sorted(stamps):
        return None
    return {name: b - a for name, a, b in zip(PHASES, stamps, stamps[1:], strict=False)}


def boot_phases(journal: list[str], first_output: float, login: float) -> dict[str, float] | None:
    """The guest's boot after its first output in BOOT_PHASES' two middle phases (seconds), from
    its journal's "Startup finished" (the first at or after FIRST_OUTPUT); None without one."""
    for message, when in _messages(journal):
        if message.startswith("Startup finished") and first_output <= when <= login:
            return {BOOT_PHASES[1]: when - first_output, BOOT_PHASES[2]: login - when}
    return None


def guest_journal(tree: Path) -> list[str]:
    """The JSON lines of the last boot in TREE's persistent journal, [] if it keeps none."""
    where = tree / "var/log/journal"
    if not where.is_dir() or shutil.which("journalctl") is None:
        return []
    done = subprocess.run(["journalctl", "-D", str(where), "-b", "0", "-o", "json", "--no-pager",
                           "--output-fields=MESSAGE,__MONOTONIC_TIMESTAMP"], capture_output=True, text=True,
                          timeout=30, check=False)
    return done.stdout.splitlines()


def cpu_seconds(pid: int, proc: str = "/proc") -> float | None:
    """CPU time of PID's threads so far (schedstat, nanoseconds: a tick's 10 ms is too coarse
    for a 150 ms phase), None once it is gone."""
    total = 0
    try:
        for task in os.listdir(f"{proc}/{pid}/task"):
            with open(f"{proc}/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9


STATE_QUERY = (b"echo \"@@$(systemctl is-system-running --wait) $(systemctl list-units --failed --plain"
               b" --no-legend --no-pager | cut -d' ' -f1 | sort | tr '\\n' ' ')@@\"\r")
STATE_ANSWER = re.compile(rb"@@([a-z-]+) ([^@$\r\n]*)@@")


def boot_once(tool: str, tree: Path, name: str, env: dict[str, str] | None,
              states: list[str] | None = None,
              phases: list[dict[str, float]] | None = None) -> tuple[float, float, bool, float | None]:
    """(boot-to-login, poweroff, survivors, shutdown) in seconds for one boot of TREE by TOOL;
    survivors: the guest's shutdown waited for processes that outlived SIGTERM; shutdown: from
    poweroff typed to the guest's PID 1 gone (None if PID 1 was not found), the rest of the
    poweroff being the tool's exit after it.

    With STATES, systemd's state and failed units are asked at the console first
    and appended to it ("running", "degraded: a.service b.service").  With PHASES, the guest's
    shutdown in phases (shutdown_phases, read from its journal after the run) and the tool's CPU
    time from the typed poweroff to PID 1 gone are appended to it, where the guest keeps a journal."""
    run = Run(argv(tool, tree, name), env)
    try:
        login = run.expect(LOGIN, 0, "login prompt") - run.start
        mark = len(run.out)
        run.type(b"root\r")
        run.expect(PROMPT, mark, "root shell")
        if states is not None:
            mark = len(run.out)
            run.type(STATE_QUERY)
            run.expect(STATE_ANSWER, mark, "systemd's state")
            answer = STATE_ANSWER.search(run.out, mark)
            assert answer is not None
            state, failed = answer.group(1).decode(), answer.group(2).decode().split()
            states.append(f"{state}: {' '.join(failed)}" if failed else state)
            run.expect(PROMPT, answer.end(), "root shell")
        pid1 = guest_pid1(run.pid)
        guest = os.pidfd_open(pid1) if pid1 is not None else -1
        try:
            cpu_typed = cpu_seconds(run.pid)
            typed, mark = time.perf_counter(), len(run.out)
            run.type(b"poweroff\r")
            off = run.wait_exit(guest) - typed
        finally:
            if guest >= 0:
                os.close(guest)
        shutdown = run.guest_gone - typed if run.guest_gone is not None else None
        if phases is not None:
            phases.append(run_phases(run, guest_journal(tree), login + run.start, typed, cpu_typed))
        return login, off, bool(SURVIVORS.search(run.out, mark)), shutdown
    finally:
        run.close()


def run_phases(run: Run, journal: list[str], login_at: float, typed: float,
               cpu_typed: float | None) -> dict[str, float]:
    """One run's PHASES and BOOT_PHASES that could be told (seconds; perf_counter's clock is
    CLOCK_MONOTONIC, the journal's too)."""
    found: dict[str, float] = {}
    if run.first_output is not None:
        found[BOOT_PHASES[0]] = run.first_output - run.start
        if run.cpu_at_first_output is not None:
            found[BOOT_PHASES[3]] = run.cpu_at_first_output
        found.update(boot_phases(journal, run.first_output, login_at) or {})
    if run.guest_gone is not None:
        split = shutdown_phases(journal, typed, run.guest_gone)
        if split is not None and cpu_typed is not None and run.cpu_at_gone is not None:
            found.update(split, **{PHASES[4]: run.cpu_at_gone - cpu_typed})
    return found


def measure(guest: str, runs: int, workdir: Path, tag: str) -> dict[str, dict[str, list[float]]]:
    src = trees.ensure(guest)
    copies = {tool: copy_tree(src, workdir / f"{guest}-{tool}") for tool in TOOLS}
    env = {"nsdash": nsdash_boot_env(), "systemd-nspawn": nspawn_env()}
    samples: dict[str, dict[str, list[float]]] = {t: {"login": [], "poweroff": [], "survivors": [], "shutdown": [],
                                                      "exit": []} for t in TOOLS}
    failures: list[str] = []
    for i in range(1 + runs):  # run 0 warms up
        for tool in (TOOLS if i % 2 == 0 else TOOLS[::-1]):
            name = f"{tag}-{guest[:6]}-{'a' if tool == 'nsdash' else 'b'}"
            split: list[dict[str, float]] = []
            try:
                login, off, survivors, shutdown = boot_once(tool, copies[tool], name, env[tool], phases=split)
            except Failed as e:
                failures.append(f"{guest} {tool} run {i}: {e}")
                continue
            if i:
                for phase, seconds in (split[0] if split else {}).items():
                    samples[tool].setdefault(phase, []).append(seconds)
                samples[tool]["login"].append(login)
                samples[tool]["poweroff"].append(off)
                samples[tool]["survivors"].append(float(survivors))
                if shutdown is not None:
                    samples[tool]["shutdown"].append(shutdown)
                    samples[tool]["exit"].append(off - shutdown)
    for line in failures:
        print(f"  {line}", file=sys.stderr)
    for copy in copies.values():
        shutil.rmtree(copy, ignore_errors=True)
    return samples


def system_states(guests: list[str], workdir: Path, tag: str) -> None:
    """Print what each systemd guest reports under each tool: is-system-running and its failed units."""
    for guest in [g for g in guests if trees.MATRIX[g] == "systemd"]:
        src = trees.ensure(guest)
        for tool in TOOLS:
            copy = copy_tree(src, workdir / f"{guest}-{tool}")
            states: list[str] = []
            try:
                boot_once(tool, copy, f"{tag}-{guest[:6]}", nsdash_boot_env() if tool == "nsdash" else nspawn_env(),
                          states)
            except Failed as e:
                states.append(f"failed: {e}")
            finally:
                shutil.rmtree(copy, ignore_errors=True)
            print(f"{guest:<10} {tool:<15} {states[0]}", flush=True)


def machines_sharing_the_slice(layout: object | None = None) -> list[str]:
    """The machines running under machine.slice now (the bench's own are stopped before and
    after its runs).  Where the cpu controller
    groups (a v1 cpu hierarchy, or cgroup2 with it enabled) every nsdash machine shares
    machine.slice's one CPU weight, while systemd-nspawn --keep-unit's guest stays where the bench
    runs, each of its sessions an autogroup of its own weight.  With other machines busy (a test
    run, another bench), nsdash's guest gets the smaller share: the comparison is fair at rest."""
    from nsdash.system import cgroupfs

    lay = layout if isinstance(layout, cgroupfs.Layout) else cgroupfs.detect()
    slice_dir = lay.unified_path("/machine.slice")
    if slice_dir is None or not slice_dir.is_dir():
        return []
    running = []
    for scope in sorted(slice_dir.iterdir()):
        try:
            populated = "populated 1" in (scope / "cgroup.events").read_text()
        except OSError:
            continue
        if populated:
            running.append(scope.name)
    return running


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def ratio(a: list[float], b: list[float]) -> str:
    return f"{statistics.median(a) / statistics.median(b):.2f}" if a and b else "-"


def table(results: dict[str, dict[str, dict[str, list[float]]]], markdown: bool) -> list[str]:
    head = ("guest", "init", "login nsdash", "login nspawn", "ratio", "poweroff nsdash",
            "poweroff nspawn", "ratio")
    rows = []
    for guest, s in results.items():
        n, p = s["nsdash"], s["systemd-nspawn"]
        rows.append((guest, trees.MATRIX[guest], cell(n["login"]), cell(p["login"]),
                     ratio(n["login"], p["login"]), cell(n["poweroff"]), cell(p["poweroff"]),
                     ratio(n["poweroff"], p["poweroff"])))
    return _format(head, rows, markdown)


def _format(head: tuple[str, ...], rows: list[tuple[str, ...]], markdown: bool) -> list[str]:
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return lines + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    return ["  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)) for r in (head, *rows)]


def split_table(results: dict[str, dict[str, dict[str, list[float]]]], markdown: bool) -> list[str]:
    """The poweroff column in two: the guest's own shutdown (typed to its PID 1 gone) and the
    tool's exit after PID 1 (milliseconds), medians (min-max), nsdash / systemd-nspawn."""
    head = ("guest", "shutdown nsdash", "shutdown nspawn", "ratio", "exit after PID 1 nsdash (ms)",
            "nspawn (ms)")
    rows = []
    for guest, s in results.items():
        n, p = s["nsdash"], s["systemd-nspawn"]
        ms = {tool: [v * 1000 for v in s[tool].get("exit", [])] for tool in TOOLS}
        rows.append((guest, cell(n.get("shutdown", [])), cell(p.get("shutdown", [])),
                     ratio(n.get("shutdown", []), p.get("shutdown", [])),
                     cell_ms(ms["nsdash"]), cell_ms(ms["systemd-nspawn"])))
    return _format(head, rows, markdown)


def phase_table(results: dict[str, dict[str, dict[str, list[float]]]], markdown: bool) -> list[str]:
    """The guest's boot in BOOT_PHASES and its shutdown in PHASES (milliseconds, medians (min-max),
    nsdash / systemd-nspawn; the journal's phases for guests that keep one): which step takes
    longer under which tool."""
    head = ("guest", "phase", "nsdash (ms)", "nspawn (ms)", "ratio")
    rows: list[tuple[str, ...]] = []
    for guest, s in results.items():
        for phase in BOOT_PHASES + PHASES:
            ms = {tool: [v * 1000 for v in s[tool].get(phase, [])] for tool in TOOLS}
            if ms["nsdash"] and ms["systemd-nspawn"]:
                rows.append((guest, phase, cell_ms(ms["nsdash"]), cell_ms(ms["systemd-nspawn"]),
                             ratio(ms["nsdash"], ms["systemd-nspawn"])))
    return _format(head, rows, markdown) if rows else []


def cell_ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def boot_to_poweroff(samples: dict[str, list[float]]) -> list[float]:
    """Each run's boot to login plus its poweroff to exit: the boot-to-poweroff of that run
    (issue 16's figure across the matrix), without the time the login itself took.  A run
    holds both figures or neither (measure appends them together)."""
    return [a + b for a, b in zip(samples["login"], samples["poweroff"], strict=True)]


def report_rows(report: Report, results: dict[str, dict[str, dict[str, list[float]]]]) -> None:
    """Rows per guest for bench/summary.py: boot to login, poweroff to exit, and their sum per
    run (boot-to-poweroff); the spread is the ratio's over the pairs of runs."""
    for guest, s in results.items():
        totals = {tool: {**s[tool], "total": boot_to_poweroff(s[tool])} for tool in s}
        for figure, what in (("login", "boot to login"), ("poweroff", "poweroff typed to exit"),
                             ("shutdown", "poweroff: the guest's shutdown (typed to its PID 1 gone)"),
                             ("exit", "poweroff: the tool's exit after the guest's PID 1"),
                             ("total", "boot-to-poweroff (login + poweroff)")):
            ours, theirs = totals["nsdash"].get(figure, []), totals["systemd-nspawn"].get(figure, [])
            if not ours or not theirs:
                continue
            pairs = [a / b for a, b in zip(ours, theirs, strict=False) if b]
            report.row(f"{what}, {guest} ({trees.MATRIX[guest]})", statistics.median(ours), "systemd-nspawn",
                       statistics.median(theirs), "s", spread=(min(pairs), max(pairs)) if pairs else None)


def main() -> int:
    report = Report("boot", wants_json())
    with report.capture():
        status = run(report)
    report.done()
    return status


def run(report: Report) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("guests", nargs="*", metavar="GUEST", help=f"{', '.join(trees.MATRIX)} (default: all)")
    ap.add_argument("--runs", type=int, default=3, help="measured runs per tool and guest (default 3)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--states", action="store_true",
                    help="only print each systemd guest's state and failed units under each tool")
    args = ap.parse_args()
    need_root("bench_boot", "it boots every guest of the matrix under both tools")
    unknown = [g for g in args.guests if g not in trees.MATRIX]
    if unknown:
        ap.error(f"unknown guest {unknown[0]!r}; choose from {', '.join(trees.MATRIX)}")
    guests = args.guests or list(trees.MATRIX)
    compile_checkout(ROOT)  # as `make bytecode` leaves it: .pyc files and the bundle
    trees.ensure_all(guests)
    tag = f"bb{os.getpid()}"
    load = os.getloadavg()
    started = time.monotonic()
    sharing = set(machines_sharing_the_slice())
    results = {}
    with tempfile.TemporaryDirectory(prefix="nsdash-bench-boot-", dir="/var/tmp") as tmp, system_bus():
        if args.states:
            try:
                system_states(guests, Path(tmp), tag)
            finally:
                clean_nspawn_leftovers(tag)
            return 0
        try:
            for guest in guests:
                results[guest] = measure(guest, max(1, args.runs), Path(tmp), tag)
                print(f"{guest}: done", file=sys.stderr, flush=True)
        finally:
            clean_nspawn_leftovers(tag)
    print(f"Seconds, median (min-max) of {args.runs} runs after a warm-up, alternating; "
          f"load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after "
          f"({time.monotonic() - started:.0f} s); {os.cpu_count()} CPUs; systemd-nspawn "
          f"{os.popen('systemd-nspawn --version').readline().split()[1]}")
    others = sorted(sharing | set(machines_sharing_the_slice()))
    if others:
        print(f"Note: {len(others)} other machines ran under machine.slice (e.g. {others[0]}); they share "
              "its CPU weight with nsdash's guest, not with systemd-nspawn's: measure with none running")
    print("\n".join(table(results, args.markdown)))
    print("The poweroff column split: the guest's own shutdown (s) and the tool's exit after its PID 1 (ms)")
    print("\n".join(split_table(results, args.markdown)))
    phases = phase_table(results, args.markdown)
    if phases:
        print("The boot and the guest's shutdown in phases (ms; the guest's marks from its journal), "
              "and the tool's CPU time")
        print("\n".join(phases))
    for guest, s in results.items():
        counts = {tool: (int(sum(s[tool]["survivors"])), len(s[tool]["survivors"])) for tool in TOOLS}
        if any(n for n, _ in counts.values()):
            print(f"{guest}: the guest's shutdown waited for processes that outlived SIGTERM in "
                  + ", ".join(f"{n} of {m} {tool} runs" for tool, (n, m) in counts.items()))
    report_rows(report, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
