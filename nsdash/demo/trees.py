"""Build and cache the demo OS trees: a BusyBox tree and a Debian tree.

Each tree is built from a recipe; the cache directory is named after a hash of
the recipe, so changing a recipe rebuilds the tree and an unchanged one is
reused.  A tree is built in a temporary directory beside its final place and
renamed into place only when complete, so an interrupted build never leaves a
half tree that looks finished.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def recipe_hash(name: str) -> str:
    """The cache key of a tree: a hash over everything that shapes it."""
    h = hashlib.sha256(name.encode())
    if name == "busybox":
        for part in (BUSYBOX_INITTAB, BUSYBOX_RCS, BUSYBOX_TICKER, OS_RELEASE_BUSYBOX):
            h.update(part.encode())
        h.update(_busybox_binary().read_bytes()[:4096])
    else:
        h.update((DEBIAN_PACKAGES + DEBIAN_SUITE).encode())
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


def build_busybox(dest: Path) -> None:
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


def _debian_mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    return "http://deb.debian.org/debian"


def build_debian(dest: Path) -> None:
    subprocess.run(["debootstrap", "--variant=minbase", f"--include={DEBIAN_PACKAGES}",
                    DEBIAN_SUITE, str(dest), _debian_mirror()], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["chroot", str(dest), "passwd", "-d", "root"], check=True,
                   stdout=subprocess.DEVNULL)
    (dest / "etc/machine-id").unlink(missing_ok=True)
    subprocess.run(["systemd-machine-id-setup", f"--root={dest}"], check=True,
                   stdout=subprocess.DEVNULL)
    (dest / "var/log/journal").mkdir(parents=True, exist_ok=True)
    _write(dest / "etc/hostname", "debian\n")
    shutil.rmtree(dest / "var/cache/apt/archives", ignore_errors=True)
    (dest / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


BUILDERS = {"busybox": build_busybox, "debian": build_debian}


def ensure(name: str) -> Path:
    """Return the cached tree for NAME, building it first if it is missing."""
    final = tree_path(name)
    if final.is_dir():
        return final
    CACHE.mkdir(parents=True, exist_ok=True)
    work = CACHE / f".{final.name}.building-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        BUILDERS[name](work)
        work.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # Drop older builds of the same tree.
    for old in CACHE.glob(f"{name}-*"):
        if old != final and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nsdash.demo.trees")
    parser.add_argument("names", nargs="*", metavar="NAME", help="busybox, debian (default: both)")
    parser.add_argument("--print", action="store_true", help="print the tree paths")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BUILDERS]
    if unknown:
        parser.error(f"unknown tree {unknown[0]!r}; choose from {', '.join(BUILDERS)}")
    for name in args.names or list(BUILDERS):
        path = ensure(name)
        if args.print:
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
