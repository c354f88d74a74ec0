"""A far host for `nsdash -H`, made of an nsdash machine: the "sshd" tree booted with -n.

Shared by tests/integration/test_remote.py and bench/bench_remote.py.  Every
key is made here, in a directory of the caller's: sshd's host key and the
authorized key reach the machine through read-only binds and an
sshd_config drop-in naming them (the cached tree stays untouched), and the
client side gets an ssh_config file with its own known_hosts, so nothing of
root's ~/.ssh is read or written.  nsdash reaches the far side as
/usr/local/bin/nsdash, a wrapper over this checkout and the venv's packages
bound in read-only (as test_systemd_host does).

    files = prepare(tmp)                       # keys, drop-in, wrapper, known_hosts
    nsdash spawn --detach -M NAME -n -xbD TREE *spawn_options(files, repo, site)
    ssh_config(files, ADDRESS)                 # then: ssh -F files.config far ...
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

FAR_DIR = "/opt/remote-test"  # where the far host sees FarFiles.far
ALIAS = "far"  # the host's name in the ssh_config (and in known_hosts, via HostKeyAlias)
FAR_COMMAND = "/opt/nsdash/bin/nsdash"  # the checkout's launcher, as the far host runs it
SESSION_PATTERN = f"^python3 -S {FAR_COMMAND} _remote$"  # `pgrep -f` for the far side's sessions


@dataclass(frozen=True)
class FarFiles:
    """The parts made in the caller's directory ROOT."""

    root: Path

    @property
    def far(self) -> Path:
        """Bound read-only into the far host at FAR_DIR."""
        return self.root / "far"

    @property
    def client_key(self) -> Path:
        return self.root / "client_key"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def config(self) -> Path:
        return self.root / "ssh_config"

    @property
    def home(self) -> Path:
        return self.root / "home"


def keygen(path: Path) -> str:
    """A new ed25519 key pair at PATH (no passphrase); the public key's line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nsdash-test", "-f", str(path)],
                   check=True)
    return path.with_suffix(".pub").read_text().strip()


def prepare(root: Path) -> FarFiles:
    files = FarFiles(root)
    files.far.mkdir(mode=0o755)
    host_pub = keygen(files.far / "host_key")
    (files.far / "authorized_keys").write_text(keygen(files.client_key) + "\n")
    (files.far / "sshd.conf").write_text(f"HostKey {FAR_DIR}/host_key\nAuthorizedKeysFile {FAR_DIR}/authorized_keys\n"
                                         "PermitRootLogin prohibit-password\nUseDNS no\nPrintMotd no\n")
    # Started as `make venv` installs nsdash (bin/nsdash): without site (-S), no runpy (-m),
    # the collector off while it imports.  The far host's python3, this checkout's code.
    (files.far / "nsdash").write_text("#!/bin/sh\nexport PYTHONPATH=/opt/nsdash:/opt/site\n"
                                      f'exec python3 -S {FAR_COMMAND} "$@"\n')
    (files.far / "nsdash").chmod(0o755)
    files.known_hosts.write_text(f"{ALIAS} {host_pub.rsplit(' ', 1)[0]}\n")
    files.home.mkdir(exist_ok=True)
    return files


def spawn_options(files: FarFiles, repo: Path, site: str) -> list[str]:
    """The binds that make the booted tree a far host: the checkout, the packages, sshd's parts."""
    return [f"--bind-ro={repo}:/opt/nsdash", f"--bind-ro={site}:/opt/site", f"--bind-ro={files.far}:{FAR_DIR}",
            f"--bind-ro={files.far / 'nsdash'}:/usr/local/bin/nsdash",
            f"--bind-ro={files.far / 'sshd.conf'}:/etc/ssh/sshd_config.d/nsdash-test.conf"]


def ssh_config(files: FarFiles, address: str, *, name: str = "ssh_config", key: Path | None = None,
               known_hosts: Path | None = None, port: int = 22, extra: str = "", alias: str = ALIAS) -> Path:
    """An ssh_config in ROOT/NAME where host ALIAS is the far host at ADDRESS (KEY, KNOWN_HOSTS:
    other ones than prepare's, for the tests of what goes wrong; another ALIAS: a second name
    for the same host, its key still known as ALIAS's)."""
    path = files.root / name
    path.write_text(f"""Host {alias}
  HostName {address}
  Port {port}
  HostKeyAlias {ALIAS}
  User root
  IdentityFile {key or files.client_key}
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile {known_hosts or files.known_hosts}
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 10
  LogLevel ERROR
{extra}""")
    return path
