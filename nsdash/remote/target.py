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

from nsdash.errors import UsageError

TYPE_CHECKING = False  # mypy takes this as true; every -H command runs without typing's import
if TYPE_CHECKING:
    from collections.abc import Mapping

# A host name, an IPv4 address or a bracketed IPv6 one; users as ssh takes them.  Checked by
# hand, not by a regular expression: `re` (its import and a compile) was a tenth of the local
# side of `nsdash -H HOST list` over a kept ssh connection.
_HOST_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_IPV6_CHARS = frozenset("0123456789ABCDEFabcdef:.")


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


def _split(text: str) -> tuple[str | None, str, str | None] | None:
    """(user, host, port digits) of [USER@]HOST[:PORT]; None if TEXT is not of that form."""
    user: str | None = None
    rest = text
    if "@" in text:
        user, rest = text.split("@", 1)
        if not user or any(c in "@:/" or c.isspace() for c in user):
            return None
    if rest.startswith("["):
        end = rest.find("]")
        host, tail = rest[:end + 1], rest[end + 1:]
        if end < 2 or not _IPV6_CHARS.issuperset(host[1:-1]):
            return None
    else:
        host, colon, port = rest.partition(":")
        tail = colon + port
        if not host or not _HOST_CHARS.issuperset(host):
            return None
    if not tail:
        return user, host, None
    if tail[0] != ":" or not tail[1:].isdecimal():
        return None
    return user, host, tail[1:]


def parse_target(text: str) -> Target:
    parts = _split(text)
    if parts is None or parts[1].startswith("-"):
        raise UsageError(f"'{text}' is not a host", "give -H [USER@]HOST[:PORT], e.g. -H root@build1:2222")
    user, host, digits = parts
    port = int(digits) if digits else None
    if port is not None and not 0 < port < 65536:
        raise UsageError(f"port {port} of '{text}' is out of range", "give a port from 1 to 65535")
    return Target(host, user, port)


def ssh_argv(target: Target, env: Mapping[str, str] | None = None) -> list[str]:
    """The ssh command line that runs nsdash's protocol end on TARGET."""
    env = os.environ if env is None else env
    command = env.get("NSDASH_SSH_COMMAND")
    if command:
        import shlex  # (only then: shlex imports re)

        try:
            ssh = shlex.split(command)
        except ValueError as e:  # "No closing quotation": a traceback before
            raise UsageError(f"invalid $NSDASH_SSH_COMMAND {command!r}: {e}",
                             "fix its quoting (it is split into words as a shell would)") from None
    else:
        ssh = ["ssh"]
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
