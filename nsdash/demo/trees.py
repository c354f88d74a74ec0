"""Build and cache the OS trees: the demo trees (BusyBox, Debian 12) and the guest matrix.

Each tree is built from a recipe; the cache directory is named after a hash of
the recipe, so changing a recipe rebuilds the tree and an unchanged one is
reused.  A tree is built in a temporary directory beside its final place and
renamed into place only when complete, so an interrupted build never leaves a
half tree that looks finished.  Cached trees are read-only by contract: a
machine boots from a copy or with --ephemeral (the test suite checks it).

The guest matrix is the trees users boot: Debian 11, 12, 13 and unstable
(systemd 247, 252, 257 and the newest), and Debian 12 booted by sysvinit,
OpenRC and runit.  Each is `debootstrap --variant=minbase` from Debian's
archive, finished the way users finish a container tree: a machine ID, a
password-less root, and a getty on /dev/console where the stock configuration
starts gettys only on tty1-6 (a container has no virtual terminals; systemd
adds its console getty by itself).  Trees are built concurrently: a build is
network-bound, and the machine has two cores.

    python -m nsdash.demo.trees              # every tree the tests need
    python -m nsdash.demo.trees trixie sid   # only these
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from nsdash.machines.create import SYSTEMD_BASE, UNSAFE_IO, finish_debian
from nsdash.machines.create import debian_mirror as _debian_mirror

CACHE = Path(os.environ.get("NSDASH_TREE_CACHE", "/var/cache/nsdash/trees"))

BUSYBOX_INITTAB = """\
::sysinit:/etc/init.d/rcS
::respawn:/sbin/getty -L 0 console vt100
::respawn:/usr/local/bin/demo-ticker
::restart:/sbin/init
::shutdown:/bin/echo nsdash-demo: shutting down
"""

BUSYBOX_RCS = """\
#!/bin/sh
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /tmp 2>/dev/null
echo "nsdash-demo: BusyBox init is up on $(hostname)"
"""

# A service that writes a log line every few seconds and burns a little CPU,
# so the dashboard has something to show.
BUSYBOX_TICKER = """\
#!/bin/sh
n=0
while :; do
  n=$((n+1))
  i=0
  while [ $i -lt 3000 ]; do i=$((i+1)); done
  echo "<6>demo-ticker: tick $n" > /dev/kmsg 2>/dev/null || true
  echo "demo-ticker: tick $n" >> /var/log/ticker.log
  sleep 5
done
"""

OS_RELEASE_BUSYBOX = """\
NAME="BusyBox"
ID=busybox
PRETTY_NAME="nsdash BusyBox demo"
VERSION_ID=1
"""

DEBIAN_PACKAGES = "systemd,systemd-sysv,dbus,procps,iproute2,systemd-container,python3,util-linux"
DEBIAN_SUITE = "bookworm"


@dataclasses.dataclass(frozen=True)
class Debian:
    """A Debian guest: debootstrap SUITE with INCLUDE, then INSTALL through apt in a
    chroot, then COMMANDS in the chroot.  Everything here is data, so its repr is
    the recipe that the cache key hashes."""

    suite: str
    init: str
    include: tuple[str, ...]
    install: tuple[str, ...] = ()
    commands: tuple[tuple[str, ...], ...] = ()


OTHER_BASE = ("procps", "iproute2")

# sysvinit's inittab starts gettys on tty1-6 only; a container has a console and
# no virtual terminals, so the gettys on ttys would respawn and fail forever.  As
# LXC's Debian template does: drop them, and add one on /dev/console.
INITTAB_CONSOLE_GETTY: tuple[tuple[str, ...], ...] = (
    ("sed", "-i", "-e", r"s/^\([1-6]:\)/#\1/", "/etc/inittab"),
    ("sh", "-c", "echo 'co:2345:respawn:/sbin/getty --noclear 38400 console' >> /etc/inittab"),
)

# runit's Debian services have gettys for tty1-6 and serial ports only, each
# disabling itself when its device is missing; add one on the console.
RUNIT_CONSOLE_GETTY: tuple[tuple[str, ...], ...] = (
    ("mkdir", "-p", "/etc/sv/getty-console"),
    ("sh", "-c", "printf '#!/bin/sh\\nexec /sbin/getty --noclear 38400 console\\n'"
                 " > /etc/sv/getty-console/run && chmod 755 /etc/sv/getty-console/run"),
    ("ln", "-s", "/etc/sv/getty-console", "/etc/runit/runsvdir/default/getty-console"),
)

GUESTS: dict[str, Debian] = {
    "bullseye": Debian("bullseye", "systemd", SYSTEMD_BASE),
    "trixie": Debian("trixie", "systemd", SYSTEMD_BASE),
    "sid": Debian("sid", "systemd", SYSTEMD_BASE),
    "sysvinit": Debian("bookworm", "sysvinit", ("sysvinit-core", *OTHER_BASE),
                       commands=INITTAB_CONSOLE_GETTY),
    # openrc conflicts with sysv-rc, which sysvinit-core pulls in: debootstrap
    # cannot resolve that in one step, so apt swaps them in the chroot.
    "openrc": Debian("bookworm", "openrc", ("sysvinit-core", *OTHER_BASE), install=("openrc",),
                     commands=INITTAB_CONSOLE_GETTY),
    "runit": Debian("bookworm", "runit", ("runit-init", *OTHER_BASE), commands=RUNIT_CONSOLE_GETTY),
}

# Trees the tests boot as hosts, not as guests of the matrix.  "sshd": a far host for
# `nsdash -H` (tests/integration/test_remote.py), the demo's Debian with OpenSSH's server;
# the test gives it a host key and an authorized key of its own when it boots it.
TEST_HOSTS: dict[str, Debian] = {
    "sshd": Debian("bookworm", "systemd", (*SYSTEMD_BASE, "systemd-container", "python3",
                                          "util-linux", "openssh-server")),
}


def recipe(name: str) -> Debian:
    """The Debian recipe of NAME, a guest of the matrix or a test host."""
    return GUESTS[name] if name in GUESTS else TEST_HOSTS[name]

# The guest matrix: tree name -> the init that boots it.  Debian 12 with systemd
# is the demo's own Debian tree.
MATRIX: dict[str, str] = {"bullseye": "systemd", "debian": "systemd", "trixie": "systemd",
                          "sid": "systemd", "sysvinit": "sysvinit", "openrc": "openrc",
                          "runit": "runit", "busybox": "busybox"}


def recipe_hash(name: str) -> str:
    """The cache key of a tree: a hash over everything that shapes it."""
    h = hashlib.sha256(name.encode())
    if name == "busybox":
        for part in (BUSYBOX_INITTAB, BUSYBOX_RCS, BUSYBOX_TICKER, OS_RELEASE_BUSYBOX):
            h.update(part.encode())
        h.update(_busybox_binary().read_bytes()[:4096])
    elif name == "debian":
        h.update((DEBIAN_PACKAGES + DEBIAN_SUITE).encode())
    else:
        h.update(repr(recipe(name)).encode())
    return h.hexdigest()[:12]


def tree_path(name: str) -> Path:
    return CACHE / f"{name}-{recipe_hash(name)}"


def _busybox_binary() -> Path:
    for cand in ("/bin/busybox", "/usr/bin/busybox"):
        if Path(cand).is_file():
            return Path(cand)
    raise SystemExit("nsdash: busybox-static is not installed; run 'apt-get install busybox-static'")


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def build_busybox(dest: Path, log: Path) -> None:
    for d in ("bin", "sbin", "etc/init.d", "proc", "sys", "dev", "run", "tmp",
              "var/log", "root", "usr/bin", "usr/sbin", "usr/lib", "usr/local/bin"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    shutil.copy2(_busybox_binary(), dest / "bin/busybox")
    applets = subprocess.run([str(dest / "bin/busybox"), "--list-full"],
                             check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        link = dest / applet
        if not link.exists() and not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/bin/busybox")
    _write(dest / "etc/inittab", BUSYBOX_INITTAB)
    _write(dest / "etc/init.d/rcS", BUSYBOX_RCS, 0o755)
    _write(dest / "usr/local/bin/demo-ticker", BUSYBOX_TICKER, 0o755)
    _write(dest / "usr/lib/os-release", OS_RELEASE_BUSYBOX)
    (dest / "etc/os-release").symlink_to("../usr/lib/os-release")
    _write(dest / "etc/passwd", "root::0:0:root:/root:/bin/sh\n")
    _write(dest / "etc/group", "root:x:0:\n")
    _write(dest / "etc/shadow", "root::19000:0:99999:7:::\n", 0o600)
    _write(dest / "etc/hostname", "busybox\n")
    _write(dest / "etc/profile", "export PS1='\\h:\\w\\$ '\n")


def _run(argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    """Run ARGV with its output appended to LOG (read when a build fails)."""
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=out,
                       stderr=subprocess.STDOUT, env=env)


def _debootstrap(dest: Path, suite: str, include: tuple[str, ...], log: Path) -> None:
    # dpkg syncs every file it unpacks; a tree that is thrown away if the build
    # fails needs none of that (mmdebstrap does the same), and it halves the time.
    _write(dest / UNSAFE_IO, "force-unsafe-io\n")
    _run(["debootstrap", "--variant=minbase", f"--include={','.join(include)}",
          suite, str(dest), _debian_mirror()], log)


def _finish_debian(dest: Path, hostname: str, log: Path) -> None:
    """The finishing steps every Debian tree gets (nsdash.machines.create's, as `nsdash create`'s)."""
    finish_debian(dest, hostname, lambda argv: _run(argv, log))


def build_debian(dest: Path, log: Path) -> None:
    _debootstrap(dest, DEBIAN_SUITE, tuple(DEBIAN_PACKAGES.split(",")), log)
    _finish_debian(dest, "debian", log)


def _build_guest(name: str, dest: Path, log: Path) -> None:
    r = recipe(name)
    _debootstrap(dest, r.suite, r.include, log)
    if r.install:
        # No service may start inside the chroot while apt installs (policy-rc.d).
        policy = dest / "usr/sbin/policy-rc.d"
        _write(policy, "#!/bin/sh\nexit 101\n", 0o755)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            _run(["chroot", str(dest), "apt-get", "install", "-y", "-q", "--no-install-recommends",
                  *r.install], log, env)
        finally:
            policy.unlink(missing_ok=True)
    for command in r.commands:
        _run(["chroot", str(dest), *command], log)
    _finish_debian(dest, name, log)


def _builder(name: str):
    if name == "busybox":
        return build_busybox
    if name == "debian":
        return build_debian
    return lambda dest, log: _build_guest(name, dest, log)


NAMES = ("busybox", "debian", *GUESTS, *TEST_HOSTS)


def ensure(name: str) -> Path:
    """Return the cached tree for NAME, building it first if it is missing."""
    final = tree_path(name)
    if final.is_dir():
        return final
    CACHE.mkdir(parents=True, exist_ok=True)
    work = CACHE / f".{final.name}.building-{os.getpid()}-{threading.get_ident():x}"
    log = work.with_name(work.name + ".log")  # beside the work, not in it: kept if the build fails
    shutil.rmtree(work, ignore_errors=True)
    log.unlink(missing_ok=True)
    work.mkdir()
    try:
        _builder(name)(work, log)
        # The top directory's mtime marks the build's end: anything whose status changed after it
        # was changed by a run, not by the build (`find TREE -cnewer TREE` lists exactly those).
        os.utime(work)
        try:
            work.rename(final)
        except OSError:
            # Another process finished the same tree first: theirs is as good.
            if not final.is_dir():
                raise
    except subprocess.CalledProcessError as e:
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        raise SystemExit(f"nsdash: building the {name} tree failed ({' '.join(map(str, e.cmd[:3]))}"
                         f" exited {e.returncode}); the log is {log}:\n  " + "\n  ".join(tail)) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.unlink(missing_ok=True)
    # Drop older builds of the same tree (a tree's name, a dash, a 12-digit key).
    for old in CACHE.glob(f"{name}-*"):
        if old != final and old.is_dir() and re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{12}}", old.name):
            shutil.rmtree(old, ignore_errors=True)
    return final


# ---------------------------------------------------------------- disk images
#
# --image tests boot the Debian tree as a disk image, made with Debian's own tools
# (never nsdash's GPT reader, which is what they test): sfdisk writes a GPT whose
# partitions follow the Discoverable Partitions Specification, and `mkfs.ext4 -d
# TREE -E offset=N` fills each partition's file system from a directory without
# mounting anything.  "debian-gpt": the root partition (x86-64 root type), a /srv
# partition marked read-only (GPT attribute bit 60) and a /home partition marked
# no-auto (bit 63), each holding a marker file; "debian-fs": the tree as one bare
# ext4 file system.  Cached beside the trees, keyed by the tree's recipe and this one.

IMAGES = ("debian-gpt", "debian-fs")
IMAGE_TYPES = {"root": "4f68bce3-e8cd-4db1-96e7-fbcaf984b709", "srv": "3b8f8425-20e0-4f3b-907f-1a25a76f98e8",
               "home": "933ac7e1-2eb4-4f13-b844-0e14e2aef915"}
SMALL_PARTITION_MIB = 16
IMAGE_MARKER = "nsdash-image-marker"  # a file at the top of the /srv and /home partitions


def image_path(name: str) -> Path:
    key = hashlib.sha256(f"{name}:{recipe_hash('debian')}:{IMAGE_TYPES}:{SMALL_PARTITION_MIB}:1".encode())
    return CACHE / "images" / f"{name}-{key.hexdigest()[:12]}.raw"


def _mkfs(image: Path, offset: int, size: int, source: Path, label: str, log: Path) -> None:
    _run(["mkfs.ext4", "-q", "-F", "-L", label, "-E", f"offset={offset}", "-d", str(source), str(image),
          f"{size // 1024}k"], log)


def _build_image(name: str, dest: Path, log: Path) -> None:
    tree = ensure("debian")
    used = int(subprocess.run(["du", "-sb", str(tree)], check=True, capture_output=True,
                              text=True).stdout.split()[0])
    root_mib = used * 3 // 2 // (1 << 20) + 128  # room for the journal and what a boot writes
    if name == "debian-fs":
        _run(["truncate", "-s", f"{root_mib}M", str(dest)], log)
        _mkfs(dest, 0, root_mib << 20, tree, "root", log)
        return
    small = SMALL_PARTITION_MIB
    _run(["truncate", "-s", f"{1 + root_mib + 2 * small + 1}M", str(dest)], log)
    script = (f"label: gpt\n"
              f"start=1MiB, size={root_mib}MiB, type={IMAGE_TYPES['root']}, name=\"debian-root\"\n"
              f"size={small}MiB, type={IMAGE_TYPES['srv']}, name=\"srv\", attrs=\"GUID:60\"\n"
              f"size={small}MiB, type={IMAGE_TYPES['home']}, name=\"home\", attrs=\"GUID:63\"\n")
    with log.open("a") as out:
        subprocess.run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(dest)], input=script.encode(),
                       check=True, stdout=out, stderr=subprocess.STDOUT)
    import json

    table = json.loads(subprocess.run(["sfdisk", "--json", str(dest)], check=True, capture_output=True,
                                      text=True).stdout)["partitiontable"]
    sector = table.get("sectorsize", 512)
    parts = table["partitions"]
    _mkfs(dest, parts[0]["start"] * sector, parts[0]["size"] * sector, tree, "root", log)
    for part, label in ((parts[1], "srv"), (parts[2], "home")):
        content = dest.with_name(dest.name + f".{label}")
        content.mkdir()
        try:
            _write(content / IMAGE_MARKER, f"{label}\n")
            _mkfs(dest, part["start"] * sector, part["size"] * sector, content, label, log)
        finally:
            shutil.rmtree(content, ignore_errors=True)


def ensure_image(name: str) -> Path:
    """The cached disk image NAME (one of IMAGES), built first if it is missing; use it
    read-only (boot a copy, or with --read-only)."""
    final = image_path(name)
    if final.is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = final.with_name(f".{final.name}.building-{os.getpid()}-{threading.get_ident():x}")
    log = work.with_name(work.name + ".log")
    work.unlink(missing_ok=True)
    log.unlink(missing_ok=True)
    try:
        _build_image(name, work, log)
        work.rename(final)
    except subprocess.CalledProcessError as e:
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        raise SystemExit(f"nsdash: building the {name} image failed ({' '.join(map(str, e.cmd[:3]))} "
                         f"exited {e.returncode}); the log is {log}:\n  " + "\n  ".join(tail)) from None
    finally:
        work.unlink(missing_ok=True)
    log.unlink(missing_ok=True)
    for old in final.parent.glob(f"{name}-*.raw"):
        if old != final:
            old.unlink(missing_ok=True)
    return final


def ensure_all(names: list[str], jobs: int = 4, report=None) -> dict[str, Path]:
    """Build NAMES concurrently (at most JOBS debootstraps at once); return name -> path.

    REPORT, if given, is called with a line as each tree is ready."""
    paths: dict[str, Path] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        started = time.monotonic()
        cached = {n for n in names if tree_path(n).is_dir()}
        futures = {pool.submit(ensure, n): n for n in names}
        for future in concurrent.futures.as_completed(futures):
            name = futures[future]
            paths[name] = future.result()
            if report:
                how = "cached" if name in cached else f"built in {time.monotonic() - started:.0f} s"
                report(f"{name}: {paths[name]} ({how})")
    return {n: paths[n] for n in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nsdash.demo.trees",
                                     description=f"Build the cached OS trees in {CACHE} "
                                                 "(NSDASH_TREE_CACHE chooses another directory).")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"{', '.join(NAMES)} (default: all)")
    parser.add_argument("--print", action="store_true", help="print the tree paths")
    parser.add_argument("-j", "--jobs", type=int, default=4, help="trees built at once (default 4)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in NAMES]
    if unknown:
        parser.error(f"unknown tree {unknown[0]!r}; choose from {', '.join(NAMES)}")
    paths = ensure_all(args.names or list(NAMES), max(1, args.jobs),
                       lambda line: print(f"nsdash: tree {line}", file=sys.stderr))
    if args.print:
        for path in paths.values():
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
