#!/usr/bin/env python3
"""The read-only verbs machinectl has, against machinectl, on a host booted with systemd (issue 16).

This machine runs no systemd, so the systemd host is the Debian demo tree booted
ephemeral (-xbD) by nsdash, with this checkout and the venv's packages bound in
read-only (as tests/integration/test_systemd_host.py does).  Inside it, nsdash
boots the same tree again as machine M, so systemd-machined has one machine
registered, and a small directory tree IMG (an os-release, a hostname) is made
in its /var/lib/machines, where both tools list images (both are checked to show
it alike before the timing; it is removed after).  Then one script run INSIDE
the host (this file with --inside) alternates each pair (A B B A ...) after a warm-up run and times every whole
process with CLOCK_MONOTONIC, CPU (user + system) from wait4's rusage; so the
cost of getting into the host (`nsdash shell`) stays out of the figures.

  list                 nsdash list                 machinectl list
  list -o json         nsdash list -o json         machinectl list --output=json
  status M             nsdash status M             machinectl status M
  ps -M M              nsdash ps -M M              machinectl status M (its process tree: no ps verb)
  list-images          nsdash list-images          machinectl list-images
  image-status IMG     nsdash image-status IMG     machinectl image-status IMG
  show-image IMG       nsdash show-image IMG       machinectl show-image IMG

nsdash runs there as users get it: the tree's own python3 (Debian 12's 3.11)
started with -S on bin/nsdash (the launcher `make venv` installs), PYTHONPATH
naming the bound checkout and site-packages, bytecode compiled beforehand.
The ratio is taken pair by pair and its median reported with its spread.

Run as root: .venv/bin/python bench/bench_nested.py [--runs N] [--json]
"""

from __future__ import annotations

import json
import os
import sys
import time

CHECKOUT, SITE = "/opt/nsdash", "/opt/site"  # where the host sees this checkout and the venv's packages
INNER = "benchinner"
IMAGE = "benchimage"  # made in the host's /var/lib/machines for the image verbs
BEFORE_CHECKOUT = "/opt/before"  # --before DIR: another checkout (a git archive), bound here


# ---------------------------------------------------------------- inside the booted host (stdlib only)


def _run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one whole process, output thrown away."""
    start = time.clock_gettime(time.CLOCK_MONOTONIC)
    pid = os.posix_spawnp(argv[0], argv, env, file_actions=[
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)])
    _, status, usage = os.wait4(pid, 0)
    wall = time.clock_gettime(time.CLOCK_MONOTONIC) - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed (status {status})")
    return wall, usage.ru_utime + usage.ru_stime


def _pair(ours: list[str], theirs: list[str], runs: int, env: dict[str, str],
          env_b: dict[str, str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"wall_a": [], "wall_b": [], "cpu_a": [], "cpu_b": []}
    for i in range(runs + 1):
        order = (("a", ours, env), ("b", theirs, env_b))
        for key, argv, environ in (order if i % 2 == 0 else order[::-1]):
            wall, cpu = _run_once(argv, environ)
            if i:  # the first round warms the page cache and is thrown away
                out[f"wall_{key}"].append(wall)
                out[f"cpu_{key}"].append(cpu)
    return out


def inside(runs: int, machine: str, before: bool = False) -> None:
    """Time the pairs here (in the booted host); one JSON object per pair on stdout.  BEFORE: also
    `status M`, `ps -M M` and the image verbs of this checkout against the one bound at
    BEFORE_CHECKOUT (--before)."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": f"{CHECKOUT}:{SITE}", "LANG": "C.UTF-8"}
    nsdash = ["/usr/bin/python3", "-S", f"{CHECKOUT}/bin/nsdash"]
    pairs = [("python3 -S -c pass (floor)", [*nsdash[:2], "-c", "pass"], "/bin/true", ["/bin/true"]),
             ("list", [*nsdash, "list"], "machinectl list", ["machinectl", "list"]),
             ("list -o json", [*nsdash, "list", "-o", "json"], "machinectl list --output=json",
              ["machinectl", "list", "--output=json"]),
             ("status M", [*nsdash, "status", machine], "machinectl status M",
              ["machinectl", "status", machine]),
             ("ps -M M", [*nsdash, "ps", "-M", machine], "machinectl status M",
              ["machinectl", "status", machine]),
             *((f"{verb} IMG" if arg else verb, [*nsdash, verb, *arg], f"machinectl {verb}" + (" IMG" if arg else ""),
                ["machinectl", verb, *arg])
               for verb, arg in (("list-images", []), ("image-status", [IMAGE]), ("show-image", [IMAGE])))]
    if before:
        old = ["/usr/bin/python3", "-S", f"{BEFORE_CHECKOUT}/bin/nsdash"]
        for args in (["status", machine], ["ps", "-M", machine], ["list-images"], ["image-status", IMAGE],
                     ["show-image", IMAGE]):
            what = " ".join(args).replace(machine, "M").replace(IMAGE, "IMG")
            pairs.append((f"{what} (this checkout)", [*nsdash, *args], f"{what} (--before's)", [*old, *args]))
    for label, ours, peer, theirs in pairs:
        # each checkout imports its own code
        env_b = dict(env, PYTHONPATH=f"{BEFORE_CHECKOUT}:{SITE}") if f"{BEFORE_CHECKOUT}/" in " ".join(theirs) else env
        result = _pair(ours, theirs, runs, env, env_b)
        print(json.dumps({"what": label, "peer": peer, "load": os.getloadavg()[0], **result}), flush=True)


# ---------------------------------------------------------------- on this machine


def _inside_host(name: str):
    """inside(script) runs a shell script in the booted host NAME and returns its stdout."""
    from bench_verbs import run_nsdash

    def run(script: str, timeout: float = 120) -> str:
        r = run_nsdash("shell", name, "/bin/sh", "-c",
                       f"export PYTHONPATH={CHECKOUT}:{SITE}; cd /; {script}", timeout=timeout)
        if r.returncode != 0:
            raise SystemExit(f"in the booted host, {script!r} failed: {r.stderr.strip() or r.stdout.strip()}")
        return r.stdout

    return run


def boot_host(name: str, *binds: str):
    """Boot the Debian demo tree as a systemd host NAME; inside(script) once systemd is up."""
    import sysconfig

    from bench_verbs import ROOT, run_nsdash

    from nsdash.demo import trees
    from nsdash.machines import state as st

    site = sysconfig.get_paths()["purelib"]
    r = run_nsdash("spawn", "--detach", "-M", name, "-xbD", str(trees.ensure("debian")),
                   f"--bind-ro={ROOT}:{CHECKOUT}", f"--bind-ro={site}:{SITE}", *binds)
    if r.returncode != 0:
        raise SystemExit(f"cannot boot the Debian demo tree: {r.stderr.strip()}")
    log = st.machine_dir(name) / st.CONSOLE_LOG
    deadline = time.monotonic() + 90
    while "login:" not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise SystemExit(f"the systemd host {name} showed no login prompt in 90 s")
        time.sleep(0.2)
    run = _inside_host(name)
    run("systemctl is-system-running --wait >/dev/null || true")
    return run


def make_image(run) -> None:
    """IMAGE in the host's /var/lib/machines, and both tools showing it alike: the same image in
    list-images, the same values in image-status's and show-image's fields they both print."""
    tree = f"/var/lib/machines/{IMAGE}"
    run(f"mkdir -p {tree}/etc && echo 'PRETTY_NAME=\"Bench image\"' >{tree}/etc/os-release && "
        f"echo {IMAGE} >{tree}/etc/hostname")
    nsdash = f"python3 -S {CHECKOUT}/bin/nsdash"

    def fields(text: str, sep: str) -> dict[str, str]:
        return {k.strip(): v.strip() for k, _, v in (line.partition(sep) for line in text.splitlines()) if v}

    for verb, sep, keys in (("image-status", ":", ("Path", "Type", "Hostname", "OS", "RO")),
                            ("show-image", "=", ("Name", "Path", "Type", "ReadOnly"))):
        ours, theirs = (fields(run(f"{tool} {verb} {IMAGE}"), sep) for tool in (nsdash, "machinectl"))
        differ = [k for k in keys if ours.get(k) != theirs.get(k)]
        if differ or not ours.get("Path"):
            raise SystemExit(f"{verb} {IMAGE}: nsdash and machinectl differ on {differ}: {ours} / {theirs}")
    for tool in (nsdash, "machinectl"):
        listed = run(f"{tool} list-images --no-legend").split()
        if IMAGE not in listed:
            raise SystemExit(f"{tool} list-images does not show {IMAGE}: {listed}")


def summarise(pair: dict, report) -> None:
    """One pair timed inside the host (a JSON line of inside()): its line and its row."""
    report.pair(pair["what"], pair["peer"], (pair["wall_a"], pair["wall_b"]), (pair["cpu_a"], pair["cpu_b"]),
                load=pair["load"], row_what=f"{pair['what']} (systemd host)")


def main() -> int:
    import argparse
    import compileall
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench_verbs import ROOT, run_nsdash
    from report import Report, need_root, wants_json
    from stopping import shielded

    as_json = wants_json()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15, help="pairs per verb (default 15)")
    ap.add_argument("--before", metavar="DIR", help="also time `status M`, `ps -M M` and the image verbs "
                    "against the checkout in DIR (e.g. a git archive of main), alternated")
    args = ap.parse_args()
    need_root("bench_nested", "it boots a systemd host")
    report = Report("nested", as_json)
    with report.capture():
        compileall.compile_dir(str(ROOT / "nsdash"), quiet=1)
        binds = []
        if args.before:
            compileall.compile_dir(os.path.join(args.before, "nsdash"), quiet=1)
            binds.append(f"--bind-ro={os.path.abspath(args.before)}:{BEFORE_CHECKOUT}")
        name = f"benchnested{os.getpid()}"
        try:
            run = boot_host(name, *binds)
            run(f"python3 -S {CHECKOUT}/bin/nsdash spawn --detach -q -xbD / -M {INNER}")
            run(f"machinectl show -p Leader --value {INNER} >/dev/null")  # machined knows it
            # ... and its systemd is up: both status texts then show a settled machine
            run(f"for i in $(seq 150); do python3 -S {CHECKOUT}/bin/nsdash status -o json {INNER} | "
                "grep -q '\"state\": \"running\"' && break; sleep 0.2; done")
            make_image(run)
            print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs; {args.runs} pairs each, "
                  "timed inside the booted host; medians [min..max]; [spread of the pair ratios]", flush=True)
            out = run(f"python3 -S {CHECKOUT}/bench/bench_nested.py --inside {args.runs} {INNER}"
                      + (" before" if args.before else ""),
                      timeout=60 + args.runs * 20)
            for line in out.splitlines():
                if line.startswith("{"):
                    summarise(json.loads(line), report)
            run(f"rm -rf /var/lib/machines/{IMAGE}; python3 -S {CHECKOUT}/bin/nsdash terminate {INNER}; "
                f"for i in $(seq 100); do [ -e /run/nsdash/machines/{INNER} ] || break; sleep 0.1; done")
        finally:
            with shielded():  # (bench/stopping.py: a second Ctrl-C waits for this)
                if run_nsdash("terminate", name, timeout=60).returncode != 0:
                    print(f"could not terminate {name}: see 'nsdash list'", file=sys.stderr)
    report.done()
    return 0


if __name__ == "__main__":
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--inside":
        inside(int(sys.argv[2]), sys.argv[3], before=sys.argv[4:] == ["before"])
        sys.exit(0)
    sys.exit(main())
