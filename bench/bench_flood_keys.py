"""Key-to-effect latency of the real dashboard while a machine floods its console and its log.

The real `nsdash` runs in tmux (160x48) with a state directory of its own,
showing one BusyBox machine's screen: its console attached in the console
pane, its log (the console log: BusyBox keeps no journal) followed in the
journal pane.  The machine floods on demand: while /run/go exists inside it,
`yes > /dev/console` runs, so both panes take the flood.  Phases alternate
(rest, flood, rest, flood, ...) in one dashboard session; in each, keys the
app itself handles are pressed one at a time: `p` (the journal pane's
priority filter: its border shows the new filter, and the kept lines are
written again), Tab (the focus to the console pane) and ctrl+] (back to the
journal pane; the footer shows the focused pane's keys), each timed from `tmux send-keys` until its row of the screen,
read back with `tmux capture-pane`, changes.  The
figures include tmux's own path, the same at rest and under the flood.

How the bench talks to tmux (--method): `control` (the default) keeps one tmux
control-mode client (`tmux -C attach`, no pane output sent to it, its size
ignored) and sends each key and each row's capture through it, one line each
way, polling every POLL s; `fork` (before session 8) runs a tmux client
process per send and per capture, back to back: on a 2-core host under a flood
those forks competed for the CPU with tmux's server and the dashboard, and a
capture waited for its own process to start.

With --sample OUT the dashboard runs under bench/stack_sampler.py (its UI thread's
stacks into OUT) and every key's send and effect times go to OUT.keys, so
bench/slow_keys.py can say what the UI thread did while the slowest keys waited.

--repo runs both the dashboard and the machine (its supervisor) from that checkout, so
main and a branch can be compared side by side.  Per phase the bench says how long the
dashboard, tmux's server and the machine's supervisor waited on a run queue (run delay,
from /proc/PID/task/*/schedstat) and the CPU each took.

--app trivial puts a plain Python tty program in the keys' window instead (it repaints one
row per key, nothing else): the dashboard still runs, on the same machine's screen, in a
second window of the same tmux server, so the flood costs the host what it costs with the
dashboard in front.  What the trivial program's keys take is what any program gets from
tmux, the kernel and the scheduler on this host under that flood.

Run as root: .venv/bin/python bench/bench_flood_keys.py [--rounds N] [--keys K] [--repo CHECKOUT] [--sample OUT]
    [--method control|fork] [--app dashboard|trivial]
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import Report, need_root, wants_json  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
MACHINE = "keyflood"
SOCK = f"nsdash-keys-{os.getpid()}"
FLOOD = ("while :; do if [ -e /run/go ]; then yes > /dev/console & p=$!; "
         "while [ -e /run/go ]; do sleep 0.05; done; kill $p; fi; sleep 0.05; done")
BORDER_ROW = 46  # the journal pane's bottom border in the machine screen at 160x48 (0-based)
FOOTER_ROW = 47  # the footer: its keys follow the focus
# key -> the row its effect shows on, pressed in this order: p cycles the journal's priority filter
# (its border says which; it writes the kept lines again), Tab moves the focus to the console pane
# and ctrl+] back to the journal (the footer shows the focused pane's keys).
KEYS = {"p": BORDER_ROW, "Tab": FOOTER_ROW, "C-]": FOOTER_ROW}


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", SOCK, *args], capture_output=True, text=True, check=False).stdout


POLL = 0.002  # s: between two captures of a row (control method; a fork takes longer than this)


class Control:
    """One tmux control-mode client: a command is a line written, its answer the lines between
    the %begin and %end (or %error) that follow; notifications outside those are skipped."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["tmux", "-L", SOCK, "-C", "attach", "-t", "k"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self._answer()  # the attach's own (empty) block comes first
        self.command("refresh-client -f no-output,ignore-size")  # no %output stream, the window keeps its size

    def command(self, line: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return self._answer(line)

    def _answer(self, line: str = "attach") -> str:
        assert self.proc.stdout is not None
        out: list[str] = []
        inside = False
        while True:
            got = self.proc.stdout.readline()
            if not got:
                raise SystemExit(f"bench_flood_keys: the tmux control client ended during {line!r}")
            text = got.decode(errors="replace").rstrip("\n")
            if not inside:
                inside = text.startswith("%begin ")
            elif text.startswith("%error "):
                raise SystemExit(f"bench_flood_keys: tmux refused {line!r}: {out}")
            elif text.startswith("%end "):
                return "\n".join(out)
            else:
                out.append(text)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


CONTROL: Control | None = None  # set by main() for --method control


def row(y: int) -> str:
    if CONTROL is not None:
        return CONTROL.command(f"capture-pane -p -t k -S {y} -E {y}").rstrip("\n")
    return tmux("capture-pane", "-p", "-t", "k", "-S", str(y), "-E", str(y)).rstrip("\n")


def send(key: str) -> None:
    if CONTROL is not None:
        CONTROL.command(f"send-keys -t k {key}")
    else:
        tmux("send-keys", "-t", "k", key)


def screen() -> str:
    return tmux("capture-pane", "-p", "-t", "k")


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise SystemExit(f"bench_flood_keys: timed out waiting for {what}\n{screen()}")


def nsdash(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "nsdash", *args], capture_output=True, text=True, cwd=env["PYTHONPATH"],
                          env=env, timeout=60)


def flood(go: Path, on: bool) -> None:
    """Start or stop the machine's flood (FLOOD runs `yes > /dev/console` while GO exists)."""
    if on:
        go.touch()
    else:
        go.unlink(missing_ok=True)


def leader(state: Path) -> int:
    import json

    return int(json.loads((state / "machines" / MACHINE / "state.json").read_text())["leader"])


def supervisor(state: Path) -> int:
    import json

    return int(json.loads((state / "machines" / MACHINE / "state.json").read_text())["supervisor"])


def busybox_tree() -> Path:
    from nsdash.demo import trees

    return trees.ensure("busybox")


def app_pid() -> int:
    """The dashboard's PID (the pane's command execs it)."""
    return int(tmux("list-panes", "-t", "k", "-F", "#{pane_pid}").strip())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def press(key: str, where: int, timeout: float = 5.0) -> tuple[float, float]:
    """(when KEY was sent, seconds until screen row WHERE showed a change)."""
    before = row(where)
    started = time.monotonic()
    send(key)
    while True:
        now = time.monotonic()
        if row(where) != before:
            return started, time.monotonic() - started
        if now - started > timeout:
            return started, float("inf")
        if CONTROL is not None:
            time.sleep(POLL)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# The trivial program: raw tty, one row repainted per key (the row the dashboard's effect shows on).
TRIVIAL = (
    "import os, tty\n"
    "tty.setraw(0)\n"
    "os.write(1, b'\\x1b[2J')\n"
    "n = 0\n"
    "while (b := os.read(0, 64)):\n"
    "    n += 1\n"
    f"    row = {FOOTER_ROW + 1} if b in (b'\\t', b'\\x1d') else {BORDER_ROW + 1}\n"
    "    os.write(1, f'\\x1b[{row};1Hkey {n} {b!r}\\x1b[K'.encode())\n"
)


def sched(pid: int) -> tuple[float, float]:
    """(CPU seconds, run-queue seconds) of PID's threads so far (/proc/PID/task/*/schedstat)."""
    cpu = delay = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            ran, waited, _ = (task / "schedstat").read_text().split()
        except (OSError, ValueError):
            continue  # a thread gone meanwhile
        cpu += int(ran)
        delay += int(waited)
    return cpu / 1e9, delay / 1e9


def main() -> int:
    global CONTROL
    as_json = wants_json()
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4, help="rest/flood pairs (default 4)")
    ap.add_argument("--keys", type=int, default=25, help="keys per phase (default 25)")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds a phase runs before its keys (default 2)")
    ap.add_argument("--repo", type=Path, default=REPO, help="the checkout whose dashboard runs (default: this one)")
    ap.add_argument("--sample", type=Path, help="sample the dashboard's UI thread into this file (and OUT.keys)")
    ap.add_argument("--method", choices=("control", "fork"), default="control",
                    help="how keys are sent and rows read: one tmux control client (default) or a tmux process each")
    ap.add_argument("--app", choices=("dashboard", "trivial"), default="dashboard",
                    help="whose keys are timed: the dashboard's, or a trivial tty program's with the dashboard "
                         "in another window (a baseline)")
    ap.add_argument("--times", type=Path, help="every key's phase, name, send time and seconds to its effect, into this file")
    args = ap.parse_args()
    need_root("bench_flood_keys", "it starts a machine")
    report = Report("flood_keys", as_json)
    state = Path(tempfile.mkdtemp(prefix="nsdash-keys-", dir="/run"))
    env = {**os.environ, "NSDASH_STATE_DIR": str(state), "PYTHONPATH": str(args.repo)}
    results: dict[str, list[float]] = {f"{phase} {key}": [] for phase in ("rest", "flood") for key in KEYS}
    loads: list[float] = []
    times: list[str] = []  # phase, key, sent, seconds to its effect (for --sample)
    cpu: dict[str, float] = {"rest": 0.0, "flood": 0.0}
    wall: dict[str, float] = {"rest": 0.0, "flood": 0.0}
    peak = float("nan")
    with report.capture():
        r = nsdash(env, "spawn", "--detach", "-q", "-x", "-D", str(busybox_tree()), "-M", MACHINE,
                   "/bin/sh", "-c", FLOOD)
        if r.returncode != 0:
            raise SystemExit(f"bench_flood_keys: the machine did not start: {r.stderr.strip()}")
        go = Path(f"/proc/{leader(state)}/root/run/go")
        try:
            sampler = f"{REPO}/bench/stack_sampler.py {args.sample.resolve()} 500 " if args.sample else ""
            command = f"cd {args.repo} && NSDASH_STATE_DIR={state} PYTHONPATH={args.repo} exec {PY} {sampler}-m nsdash"
            tmux("new-session", "-d", "-s", "k", "-x", "160", "-y", "48", command)
            wait(lambda: f"selected: {MACHINE}" in screen(), 20, "the dashboard")
            tmux("send-keys", "-t", "k", "a")
            wait(lambda: f"Console: {MACHINE}" in screen(), 10, "the machine screen")
            tmux("send-keys", "-t", "k", "C-]")
            wait(lambda: "p Priority" in screen(), 5, "the journal pane's focus")
            wait(lambda: "following" in row(BORDER_ROW), 5, "the journal border on its row")
            pid = dashboard = app_pid()
            if args.app == "trivial":
                # The dashboard goes on in a window of its own (the machine screen, console attached,
                # journal following); the keys' window runs the trivial program.
                tmux("rename-window", "-t", "k", "dashboard")
                tmux("new-window", "-d", "-t", "k:", "-n", "trivial", f"exec {PY} -c {shlex.quote(TRIVIAL)}")
                tmux("select-window", "-t", "k:trivial")
                wait(lambda: tmux("list-panes", "-t", "k:trivial", "-F", "#{pane_pid}").strip(), 5, "the program")
                pid = app_pid()
            procs = {"app": pid, "tmux": int(tmux("display", "-p", "#{pid}").strip()),
                     "supervisor": supervisor(state)}
            if args.app == "trivial":
                procs["dashboard"] = dashboard
            waited: dict[str, dict[str, list[float]]] = {phase: {n: [0.0, 0.0] for n in procs}
                                                         for phase in ("rest", "flood")}
            if args.method == "control":
                CONTROL = Control()
            for _ in range(args.rounds):
                for phase in ("rest", "flood"):
                    flood(go, phase == "flood")
                    time.sleep(args.settle)
                    c0, w0 = cpu_seconds(pid), time.monotonic()
                    s0 = {n: sched(p) for n, p in procs.items()}
                    for _ in range(args.keys):
                        for key, where in KEYS.items():
                            sent, took = press(key, where)
                            results[f"{phase} {key}"].append(took)
                            times.append(f"{phase}\t{key}\t{sent:.6f}\t{took:.6f}\n")
                            time.sleep(random.uniform(0.1, 0.3))
                    cpu[phase] += cpu_seconds(pid) - c0
                    for n, p in procs.items():
                        ran, delay = sched(p)
                        waited[phase][n][0] += ran - s0[n][0]
                        waited[phase][n][1] += delay - s0[n][1]
                    wall[phase] += time.monotonic() - w0
                    loads.append(os.getloadavg()[0])
            go.unlink(missing_ok=True)
            peak = peak_rss_mb(pid)
        finally:
            if CONTROL is not None:
                CONTROL.close()
            tmux("kill-server")
            # kill-server leaves the socket file behind
            (Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}" / SOCK).unlink(missing_ok=True)
            nsdash(env, "terminate", MACHINE)
            subprocess.run(["rm", "-rf", str(state)], check=False)
        if args.sample:
            Path(f"{args.sample}.keys").write_text("".join(times))
        if args.times:
            args.times.write_text("".join(times))
        for phase in ("rest", "flood"):
            for key in KEYS:
                ms = [v * 1000 for v in results[f"{phase} {key}"]]
                print(f"{phase:5} key {key}: key-to-effect median {statistics.median(ms):.0f} ms, "
                      f"p95 {percentile(ms, 0.95):.0f} ms, max {max(ms):.0f} ms over {len(ms)} keys")
            print(f"{phase:5}: {args.app} CPU {100 * cpu[phase] / wall[phase]:.0f}% of a core")
            print(f"{phase:5}: CPU and run-queue wait (ms per s): " + ", ".join(
                f"{n} {1000 * ran / wall[phase]:.0f}/{1000 * delay / wall[phase]:.0f}"
                for n, (ran, delay) in waited[phase].items()))
        print(f"{args.app} peak memory (VmHWM): {peak:.0f} MB")
        print(f"load average during the run: {min(loads):.1f}-{max(loads):.1f} (method: {args.method}, "
              f"app: {args.app}, repo: {args.repo})")
        for key in KEYS:
            rest_ms = [v * 1000 for v in results[f"rest {key}"]]
            flood_ms = [v * 1000 for v in results[f"flood {key}"]]
            for what, f in (("median", statistics.median), ("p95", lambda v: percentile(v, 0.95)), ("max", max)):
                report.row(f"{args.app} key '{key}' to effect while a machine floods, {what}", f(flood_ms),
                           "at rest", f(rest_ms), "ms")
    report.done()
    return 0


if __name__ == "__main__":
    sys.exit(main())
