"""One shape for every bench's results, so `make bench` can print them as one table.

Each bench keeps its own human output; with `--json` that output goes to
stderr and stdout carries one JSON object: the bench's name, the machine's
load while it ran, and rows of {what, nsdash, peer, peer_value, unit, ratio,
spread, better}.  bench/summary.py runs every bench that way and prints the
rows as one table.

    report = Report("cgtop", argv_json)
    with report.capture():            # human output to stderr under --json
        ...
        report.row("cgtop CPU/refresh, 500 cgroups", ours, "systemd-cgtop", theirs, "ms",
                   spread=(lo, hi))
    report.done()                      # prints the JSON under --json
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator, Sequence

from stopping import unwind_on_signals


def _private_state_dir() -> None:
    """Machines a bench starts keep their state in a directory of the bench's own (as the
    test suite's sessions do), removed when the bench ends: a bench leaves the host as it
    found it, /run/nsdash included.  A caller's NSDASH_STATE_DIR is kept."""
    if "NSDASH_STATE_DIR" in os.environ or os.geteuid() != 0:
        return
    import atexit
    import shutil
    import tempfile

    state = tempfile.mkdtemp(prefix="nsdash-bench-", dir="/run")
    os.environ["NSDASH_STATE_DIR"] = state
    atexit.register(shutil.rmtree, state, True)


_private_state_dir()
unwind_on_signals()  # a bench killed (SIGTERM, SIGHUP) still runs its finally blocks and the removal above


def need_root(bench: str, why: str) -> None:
    """Exit (status 1, one line on stderr) unless run as root, which BENCH needs for WHY."""
    if os.geteuid() != 0:
        raise SystemExit(f"{bench} needs root ({why}): run it as root")


def compile_checkout(checkout: str | os.PathLike[str]) -> None:
    """CHECKOUT's package compiled as `make bytecode` leaves it (its .pyc files and, where it
    has nsdash/bundlewrite.py, the bundle the `nsdash` command reads), as an installed wheel runs."""
    import compileall
    import subprocess

    package = os.path.join(checkout, "nsdash")
    compileall.compile_dir(package, quiet=1)
    if os.path.exists(os.path.join(package, "bundlewrite.py")):
        env = dict(os.environ, PYTHONPATH=os.fspath(checkout))
        subprocess.run([sys.executable, "-m", "nsdash.bundlewrite"], env=env, check=True,
                       stdout=subprocess.DEVNULL)


def installed_launcher(checkout: str | os.PathLike[str], into: str | os.PathLike[str]) -> str:
    """CHECKOUT's bin/nsdash as `make venv` installs it in this environment, written in the new
    directory INTO (a checkout from before nsdash/launchscript.py: the file as it is, as the
    Makefile installed it then); its path."""
    import subprocess

    source = os.path.join(checkout, "bin", "nsdash")
    if not os.path.exists(os.path.join(checkout, "nsdash", "launchscript.py")):
        return source
    os.mkdir(into)
    env = dict(os.environ, PYTHONPATH=os.fspath(checkout))
    with open(source) as f:
        text = subprocess.run([sys.executable, "-m", "nsdash.launchscript", sys.prefix], stdin=f,
                              capture_output=True, text=True, check=True, env=env).stdout
    path = os.path.join(into, "nsdash")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)
    return path


def load() -> float:
    """The 1-minute load average now."""
    return os.getloadavg()[0]


def median_spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


class Report:
    """The rows one bench produced, with the load before and after."""

    def __init__(self, bench: str, as_json: bool) -> None:
        self.bench = bench
        self.as_json = as_json
        self.rows: list[dict[str, object]] = []
        self.loads = [load()]
        self.started = time.time()

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        """Under --json, the bench's own prints go to stderr (stdout is the JSON)."""
        if not self.as_json:
            yield
            return
        with contextlib.redirect_stdout(sys.stderr):
            yield

    def row(self, what: str, ours: float, peer: str, peer_value: float | None, unit: str, *,
            ratio: float | None = None, spread: tuple[float, float] | None = None,
            better: str = "lower", note: str = "") -> None:
        """One figure.  RATIO defaults to ours/peer_value; SPREAD is the ratio's (or, with no
        peer, the figure's) min and max over the runs."""
        if ratio is None and peer_value:
            ratio = ours / peer_value
        self.loads.append(load())
        self.rows.append({"bench": self.bench, "what": what, "nsdash": ours, "peer": peer,
                          "peer_value": peer_value, "unit": unit, "ratio": ratio,
                          "spread": list(spread) if spread else None, "better": better,
                          "load": self.loads[-1], "note": note})

    def pair(self, what: str, peer: str, walls: tuple[Sequence[float], Sequence[float]],
             cpus: tuple[Sequence[float], Sequence[float]], *, load: float | None = None,
             row_what: str | None = None) -> None:
        """One alternated pair (A B B A ...), nsdash's runs against PEER's, in seconds: the line a
        person reads (medians in ms with their CPU and [min..max], the wall ratio taken pair by
        pair with its spread, the CPU ratio, the load) and its row (ROW_WHAT, else WHAT)."""
        (walls_a, walls_b), (cpus_a, cpus_b) = walls, cpus
        ratios = [a / b for a, b in zip(walls_a, walls_b, strict=True)]
        cpu_ratios = [a / b for a, b in zip(cpus_a, cpus_b, strict=True) if b > 0]
        ours_ms, theirs_ms = statistics.median(walls_a) * 1000, statistics.median(walls_b) * 1000
        ratio = statistics.median(ratios)
        cpu_ratio = statistics.median(cpu_ratios) if cpu_ratios else float("nan")

        def side(name: str, wall_ms: float, runs: Sequence[float], cpu: Sequence[float]) -> str:
            return (f"{name} {wall_ms:7.1f} ms ({statistics.median(cpu) * 1000:5.1f} CPU) "
                    f"[{min(runs) * 1000:.1f}..{max(runs) * 1000:.1f}]")

        print(f"{what:<26} {side('nsdash', ours_ms, walls_a, cpus_a)}   {side(peer, theirs_ms, walls_b, cpus_b)}   "
              f"wall x{ratio:.2f} [{min(ratios):.2f}..{max(ratios):.2f}]   CPU x{cpu_ratio:.2f}   "
              f"load {load if load is not None else os.getloadavg()[0]:.1f}", flush=True)
        self.row(row_what or what, ours_ms, peer, theirs_ms, "ms", ratio=ratio, spread=(min(ratios), max(ratios)),
                 note=f"CPU x{cpu_ratio:.2f}")

    def done(self) -> None:
        if self.as_json:
            json.dump({"bench": self.bench, "started": self.started, "load": [min(self.loads), max(self.loads)],
                       "seconds": round(time.time() - self.started, 1), "rows": self.rows},
                      sys.stdout)
            sys.stdout.write("\n")


def wants_json(argv: list[str] | None = None) -> bool:
    """True if --json is among the arguments (removed from them, for benches with a parser of their own)."""
    args = sys.argv if argv is None else argv
    if "--json" in args:
        args.remove("--json")
        return True
    return False
