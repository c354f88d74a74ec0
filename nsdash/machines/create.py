"""Making a bootable Debian or Ubuntu tree through debootstrap (other distributions
through mkosi, nsdash.machines.mkosi): the one recipe behind
`nsdash create`, the dashboard's create form and the demo trees' finishing steps.

A run is a Plan (where, which distribution and release, which mirror; checked
before anything is written) and then run(): debootstrap into a hidden
temporary directory beside the final place (`.#NAME…`, which list-images
skips), the finishing steps every Debian tree gets (a machine ID, a hostname,
root without a password, a journal directory), and a rename into place only
when complete.  A failure, a Ctrl-C or Job.cancel() removes the temporary
tree, and any mount debootstrap left in it, so nothing half made is ever
under the name.

Progress is debootstrap's own steps (its I:/W:/E: lines), handed to a callback
as they come, with phase_of() placing each in debootstrap's fixed order of
phases for a progress bar.  debootstrap runs in a process group of its own,
so a cancel stops it and every child (wget, dpkg in the chroot) at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nsdash.errors import NsdashError, UsageError
from nsdash.machines import mkosi
from nsdash.system import paths
from nsdash.system.text import escape

DISTRIBUTIONS = {
    # name -> (default release, default mirror, the keyring debootstrap checks signatures with)
    "debian": ("bookworm", None, "/usr/share/keyrings/debian-archive-keyring.gpg"),
    "ubuntu": ("jammy", "http://archive.ubuntu.com/ubuntu", "/usr/share/keyrings/ubuntu-archive-keyring.gpg"),
}
# Where the keyring comes from.  Debian 12's archive has no Ubuntu keyring (debootstrap knows
# Ubuntu's releases but cannot check them there): the line must not send the user to apt.
KEYRING_PACKAGES = {"debian": "Debian's debian-archive-keyring package",
                    "ubuntu": "Ubuntu's ubuntu-keyring package (Debian 12's archive has none; copy "
                              "ubuntu-archive-keyring.gpg from an Ubuntu host)"}
# Every distribution `nsdash create` takes: debootstrap's, then mkosi's.
NAMES = (*DISTRIBUTIONS, *mkosi.DISTRIBUTIONS)
SCRIPTS = Path("/usr/share/debootstrap/scripts")
# What a tree needs to boot with systemd and be reached over D-Bus (and to look around in).
SYSTEMD_BASE = ("systemd", "systemd-sysv", "dbus", "procps", "iproute2")
# dpkg syncs every file it unpacks; a tree thrown away if the build fails needs none of
# that (mmdebstrap does the same), and it halves the time.  Removed when the tree is finished.
UNSAFE_IO = "etc/dpkg/dpkg.cfg.d/nsdash-unsafe-io"

# debootstrap's phases in the order it goes through them, by the start of its I: lines;
# the last is ours.  "Retrieving" packages comes after the index files it also "retrieves".
PHASES = ("Fetching the archive's index", "Resolving dependencies", "Downloading packages",
          "Extracting", "Installing core packages", "Unpacking", "Configuring", "Finishing the tree")
_MARKERS = (("I: Retrieving InRelease", 0), ("I: Retrieving Release", 0), ("I: Retrieving Packages", 0),
            ("I: Validating Packages", 0),
            ("I: Resolving dependencies", 1), ("I: Retrieving ", 2), ("I: Validating ", 2),
            ("I: Extracting ", 3), ("I: Installing core", 4), ("I: Unpacking ", 5), ("I: Configuring ", 6),
            ("I: Base system installed", 6), ("I: Setting up the machine ID", 7))
FINISHING = "I: Setting up the machine ID, the hostname and root's login..."

Step = Callable[[str], None]


def default_release(distribution: str) -> str:
    """The release `nsdash create` makes of DISTRIBUTION (one of NAMES) unless told."""
    if distribution in mkosi.DISTRIBUTIONS:
        return mkosi.DISTRIBUTIONS[distribution].release
    return DISTRIBUTIONS[distribution][0]


def phase_of(line: str) -> int | None:
    """The index in PHASES that debootstrap's LINE belongs to, or None for a line that says nothing
    of where it is (a warning, a key ID)."""
    for marker, phase in _MARKERS:
        if line.startswith(marker):
            return phase
    return None


class Cancelled(NsdashError):
    """The user cancelled the run; the unfinished tree was removed."""


class Job:
    """One run's cancel switch, safe to pull from any thread: cancel() stops debootstrap's
    whole process group, and the run raises Cancelled at its next step."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._group: int | None = None

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        self._event.set()
        with self._lock:
            if self._group is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._group, signal.SIGTERM)

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("creating the tree was cancelled; the unfinished tree was removed")

    def _running(self, group: int | None) -> None:
        with self._lock:
            self._group = group
        if group is not None and self._event.is_set():  # cancelled before debootstrap started
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGTERM)


@dataclass(frozen=True)
class Plan:
    """One create, checked: nothing is written until run()."""

    final: Path
    hostname: str
    distribution: str
    release: str
    mirror: str
    packages: tuple[str, ...] = ()
    root_password: str | None = None


def target_path(target: str) -> tuple[Path, str]:
    """Where the tree goes, and its hostname: NAME in the image home, or DIR as given."""
    from nsdash.launcher import names
    from nsdash.machines import images

    if "/" not in target:
        return images.check_new(target, paths.image_home()), target
    path = Path(target).absolute()
    if os.path.lexists(path):
        raise UsageError(f"{path} exists already", "name a directory that does not exist yet")
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent} is not a directory", "create the parent directory first")
    return path, names.hostname_cleanup(path.name) or "container"


def debian_mirror() -> str:
    """The host's own Debian mirror (from its apt sources), else Debian's."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    return "http://deb.debian.org/debian"


def plan(target: str, distribution: str = "debian", release: str | None = None, mirror: str | None = None,
         packages: str = "", root_password: str | None = None) -> Plan:
    """Check a create before it starts: the name or directory, the release, the mirror and the
    keyring.  Each problem is one line (UsageError or NsdashError)."""
    if distribution not in NAMES:
        raise UsageError(f"unknown distribution '{escape(distribution)}'", "use one of " + ", ".join(NAMES))
    final, hostname = target_path(target)
    if distribution in mkosi.DISTRIBUTIONS:
        d = mkosi.DISTRIBUTIONS[distribution]
        release, mirror = release or d.release, (mirror or d.mirror).rstrip("/")
        lacking = mkosi.missing(distribution, mirror)
        if lacking:  # mkosi makes these; say what it lacks here before anything is written
            raise NsdashError(f"cannot create a tree of {distribution} here (through mkosi): {lacking[0]}",
                              lacking[1])
    else:
        default_release, default_mirror, _ = DISTRIBUTIONS[distribution]
        release = release or default_release
        mirror = (mirror or default_mirror or debian_mirror()).rstrip("/")
        check_reachable(distribution, release, mirror)
    if root_password is not None and ("\n" in root_password or ":" in root_password):
        raise UsageError("the root password may not contain ':' or a newline", "pick another password")
    wanted = tuple(p for p in packages.replace(" ", ",").split(",") if p)
    return Plan(final, hostname, distribution, release, mirror, wanted, root_password)


def check_reachable(distribution: str, release: str, mirror: str) -> None:
    keyring = DISTRIBUTIONS[distribution][2]
    if not release or "/" in release or not (SCRIPTS / release).exists():
        raise UsageError(f"debootstrap does not know the {distribution} release '{escape(release)}'",
                         f"pick one of {SCRIPTS}, or upgrade debootstrap")
    missing, fixes = [], []
    try:
        with urllib.request.urlopen(f"{mirror}/dists/{release}/Release", timeout=15):
            pass
    except (urllib.error.URLError, OSError, ValueError) as e:
        missing.append(f"the archive {escape(mirror)} cannot be reached ({escape(str(getattr(e, 'reason', e)))})")
        fixes.append("pass --mirror=URL of a reachable mirror")
    if not os.path.exists(keyring):
        # never --no-check-gpg: a tree whose packages nobody checked is not worth booting
        missing.append(f"its signing keyring {keyring} is not installed")
        fixes.append(f"install {KEYRING_PACKAGES[distribution]}")
    if missing:
        raise NsdashError(f"cannot create a tree of {distribution} here: {' and '.join(missing)}",
                          " and ".join(fixes))


def run(p: Plan, step: Step, job: Job | None = None) -> Path:
    """Make the tree P describes; STEP gets each progress line (escaped).  Returns its path."""
    from nsdash.machines import images

    job = job or Job()
    p.final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = images.temp_name(p.final.parent, p.final.name)
    temp.mkdir(0o755)
    try:
        build(temp, p, step, job)
        job.check()
        images.publish(temp, p.final)
    except BaseException:
        step("I: Removing the unfinished tree...")
        images.remove_tree(temp)
        raise
    return p.final


def build(dest: Path, p: Plan, step: Step, job: Job) -> None:
    """debootstrap (or mkosi) into DEST (an empty directory), then finish the tree."""
    if p.distribution in mkosi.DISTRIBUTIONS:
        mkosi.build(dest, p.distribution, p.release, p.mirror, p.packages,
                    lambda argv, cwd: run_steps(argv, step, job, "mkosi", cwd))
        job.check()
        step(FINISHING)
        finish_tree(dest, p.hostname, _checked)
    else:
        _build_debian(dest, p, step, job)
    job.check()
    if p.root_password is not None:
        set_root_password(dest, p.root_password)


def _build_debian(dest: Path, p: Plan, step: Step, job: Job) -> None:
    include = list(dict.fromkeys([*SYSTEMD_BASE, *p.packages]))
    (dest / UNSAFE_IO).parent.mkdir(parents=True, exist_ok=True)
    (dest / UNSAFE_IO).write_text("force-unsafe-io\n")
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(include)}"]
    if p.distribution == "ubuntu":
        argv.append("--components=main,universe")
    debootstrap([*argv, p.release, str(dest), p.mirror], step, job)
    job.check()
    step(FINISHING)
    finish_debian(dest, p.hostname, _checked)


def debootstrap(argv: list[str], step: Step, job: Job) -> None:
    """Run debootstrap, its steps (I:/W:/E: lines) handed to STEP as they come."""
    run_steps(argv, step, job, "debootstrap")


def _is_step(tool: str, line: str) -> bool:
    # debootstrap marks its steps I:/W:/E:; mkosi starts each with '‣'
    return line[:2] in ("I:", "W:", "E:") if tool == "debootstrap" else line.lstrip().startswith("‣")


def run_steps(argv: list[str], step: Step, job: Job, tool: str, cwd: str | None = None) -> None:
    """Run TOOL's ARGV in a process group of its own, its steps handed to STEP as they come;
    one line naming its last error if it fails."""
    last: deque[str] = deque(maxlen=5)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", process_group=0, cwd=cwd)
    job._running(proc.pid)  # noqa: SLF001 - the job's own hook
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip()
            last.append(line)
            if _is_step(tool, line):
                step(escape(line))
        rc = proc.wait()
    except BaseException:
        _stop_group(proc)
        raise
    finally:
        job._running(None)  # noqa: SLF001
        proc.stdout.close()
    if job.cancelled:
        _stop_group(proc)
        job.check()
    if rc != 0:
        why = next((x for x in reversed(last) if x.startswith("E:")), last[-1] if last else f"status {rc}")
        raise NsdashError(f"{tool} failed: {escape(why)}", "see the steps above; check the mirror and release")


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM debootstrap's group, then SIGKILL what is left of it, and wait (a bounded time)
    until none of it runs: the tree is removed next, and nothing may still write into it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)


def _checked(argv: list[str]) -> None:
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise NsdashError(f"finishing the tree failed: {' '.join(argv)}: {escape(why)}")


def finish_debian(dest: Path, hostname: str, run_step: Callable[[list[str]], None]) -> None:
    """What every Debian tree gets: a password-less root, a machine ID, a hostname,
    a persistent journal directory, and no downloaded packages.  RUN_STEP runs a command
    (and raises if it fails)."""
    import shutil

    (dest / UNSAFE_IO).unlink()
    finish_tree(dest, hostname, run_step)
    shutil.rmtree(dest / "var/cache/apt/archives", ignore_errors=True)
    (dest / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def finish_tree(dest: Path, hostname: str, run_step: Callable[[list[str]], None]) -> None:
    """What every tree nsdash makes gets: a password-less root, a machine ID, a hostname and
    a persistent journal directory."""
    run_step(["chroot", str(dest), "passwd", "-d", "root"])
    (dest / "etc/machine-id").unlink(missing_ok=True)
    run_step(["systemd-machine-id-setup", f"--root={dest}"])
    (dest / "var/log/journal").mkdir(parents=True, exist_ok=True)
    hostname_file = dest / "etc/hostname"
    hostname_file.write_text(f"{hostname}\n")
    hostname_file.chmod(0o644)


def set_root_password(tree: Path, password: str) -> None:
    """Give root in TREE this password (hashed by the tree's own chpasswd, on its stdin:
    never on a command line, where `ps` would show it)."""
    if "\n" in password or ":" in password:
        raise UsageError("--root-password may not contain ':' or a newline", "pick another password")
    done = subprocess.run(["chroot", str(tree), "chpasswd"], input=f"root:{password}\n", text=True,
                          capture_output=True)
    if done.returncode != 0:
        raise NsdashError(f"setting root's password failed: {escape(done.stderr.strip())}")
