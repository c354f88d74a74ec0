"""Where -H points: [USER@]HOST[:PORT], and the ssh command line that reaches it.

The transport is the user's own OpenSSH client, so ~/.ssh/config, agents,
ProxyJump, ControlMaster and known_hosts all apply as they do for `ssh HOST`:
nsdash adds only -T (no PTY on the far side: the channel carries our
protocol, not a terminal) and -p when the target names a port, never an
option that would override the user's configuration.

Two environment variables, as git's GIT_SSH_COMMAND and rsync's
--rsync-path do:
- NSDASH_SSH_COMMAND: the ssh command (default `ssh`), e.g.
  `ssh -F ~/work/ssh_config -o BatchMode=yes`;
- NSDASH_REMOTE_COMMAND: how the far side starts nsdash (default `nsdash`),
  e.g. `~/venv/bin/nsdash`; the far user's shell runs it.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping

from nsdash.errors import UsageError

# A host name, an IPv4 address or a bracketed IPv6 one; users as ssh takes them.
_TARGET = re.compile(r"(?:(?P<user>[^@\s:/]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(?P<port>\d+))?")


class Target:
    """A remote host as the user named it.  (A plain class: `nsdash -H` starts a process per
    command, and dataclasses would import inspect for it.)"""

    __slots__ = ("host", "user", "port")

    def __init__(self, host: str, user: str | None = None, port: int | None = None) -> None:
        self.host, self.user, self.port = host, user, port

    def _key(self) -> tuple[str, str | None, int | None]:
        return self.host, self.user, self.port

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Target({self.host!r}, {self.user!r}, {self.port!r})"

    def __str__(self) -> str:
        who = f"{self.user}@" if self.user else ""
        return f"{who}{self.host}" + (f":{self.port}" if self.port else "")

    @property
    def destination(self) -> str:
        """What ssh takes as its destination (brackets of an IPv6 address dropped)."""
        who = f"{self.user}@" if self.user else ""
        return who + self.host.strip("[]")


def parse_target(text: str) -> Target:
    m = _TARGET.fullmatch(text)
    if not m or m["host"].startswith("-"):
        raise UsageError(f"'{text}' is not a host", "give -H [USER@]HOST[:PORT], e.g. -H root@build1:2222")
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 0 < port < 65536:
        raise UsageError(f"port {port} of '{text}' is out of range", "give a port from 1 to 65535")
    return Target(m["host"], m["user"], port)


def ssh_argv(target: Target, env: Mapping[str, str] | None = None) -> list[str]:
    """The ssh command line that runs nsdash's protocol end on TARGET."""
    env = os.environ if env is None else env
    ssh = shlex.split(env.get("NSDASH_SSH_COMMAND") or "ssh")
    far = env.get("NSDASH_REMOTE_COMMAND") or "nsdash"
    port = ["-p", str(target.port)] if target.port else []
    # ssh joins the command's words with spaces for the far user's shell: FAR is a shell word
    # list by design (a path with options), the verb name is fixed.
    return [*ssh, "-T", *port, "--", target.destination, f"{far} _remote"]


def split_host_option(args: list[str], env: Mapping[str, str] | None = None) -> tuple[list[Target], list[str]]:
    """Take every -H/--host off the front of nsdash's arguments (else $NSDASH_HOST, whose
    hosts are separated by spaces or commas); the targets, and the rest (the verb's).

    Only before the verb: after it, -H could be one of the verb's own options."""
    env = os.environ if env is None else env
    rest = list(args)
    texts: list[str] = []
    while rest and rest[0].startswith(("-H", "--host")):
        option = rest.pop(0)
        if option in ("-H", "--host"):
            if not rest:
                raise UsageError(f"{option} needs a host", "give -H [USER@]HOST[:PORT]")
            texts.append(rest.pop(0))
        elif option.startswith("--host="):
            texts.append(option.split("=", 1)[1])
        elif option.startswith("-H"):
            texts.append(option[2:])
        else:
            rest.insert(0, option)  # e.g. --hosts: not ours
            break
    if not texts:
        texts = (env.get("NSDASH_HOST") or "").replace(",", " ").split()
    targets: list[Target] = []
    for text in texts:
        target = parse_target(text)
        if target not in targets:
            targets.append(target)
    return targets, rest
