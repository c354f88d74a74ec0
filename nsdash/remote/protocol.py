"""The -H wire protocol: JSON lines over the stdio of `ssh HOST nsdash _remote`.

One message per line, a JSON object whose "t" names its kind.  The far side
speaks first, with its version; the client refuses another major version
(a minor version adds message kinds or fields that an older peer ignores).

    far -> client   hello  {"v": [MAJOR, MINOR], "nsdash": "0.1"}
    client -> far   run    {"ch": N, "argv": [VERB, ...], "tty": {"rows", "cols", "term"} | null,
                            "stdin": bool, "last": bool, "v": [MAJOR, MINOR]}
    client -> far   in     {"ch": N, "d": BASE64}            bytes for the verb's stdin (or PTY)
    client -> far   eof    {"ch": N}                          the verb's stdin ends
    client -> far   winch  {"ch": N, "rows": R, "cols": C}    the terminal's new size
    far -> client   out    {"ch": N, "fd": 1|2, "d": BASE64}  what the verb wrote
    far -> client   exit   {"ch": N, "code": INT}             the verb ended (128+SIG when killed)

The client may send its first run before the hello has come (the command line
does: it saves a round trip); it still reads the hello first and refuses a far
side of another major version.  Such a run carries the client's version ("v",
1.1): a far side runs no request of another major version than its own (it
answers it with exit status 2 and a line saying so), since the client would
refuse it only after it had run.  A run with "last" (1.1) is the session's last:
once its exit is sent, the far side hangs up what else runs and ends, without
waiting for the client to close (the command line's one verb; a far side of
1.0 ignores it and ends when the client closes).

Every verb runs on a channel (ch) so one connection can carry several at once
(the dashboard's poller over one ssh session); the command line opens one
channel per connection.  Bytes travel as base64: a verb's output is not
always UTF-8, and the far side's bytes are not trusted by the client either
(it escapes them again; see nsdash.remote.client).

Lines are bounded (MAX_LINE): a peer that sends a longer one is broken or
hostile, and the decoder says so instead of buffering without end.
"""

from __future__ import annotations

import binascii

from nsdash.errors import NsdashError

TYPE_CHECKING = False  # mypy takes this as true: typing is not imported by every -H command
if TYPE_CHECKING:
    from typing import Any

MAJOR, MINOR = 1, 1
MAX_LINE = 1 << 20  # longest line accepted: base64 of a CHUNK with room to spare
CHUNK = 32 * 1024  # bytes of output per "out" message

VERSION_SHOWN = 40  # characters of the far side's nsdash version quoted in an error

KINDS = frozenset({"hello", "run", "in", "eof", "winch", "out", "exit"})


class RemoteError(NsdashError):
    """A remote host that cannot be reached, refuses us, or does not speak our protocol."""


def encode(kind: str, **fields: Any) -> bytes:
    """One message as its line on the wire."""
    assert kind in KINDS, kind
    import json  # (here: the command line starts ssh first, then loads json while the far side starts)

    return json.dumps({"t": kind, **fields}, separators=(",", ":")).encode() + b"\n"


def data_field(data: bytes) -> str:
    # binascii rather than base64: the same encoding, without base64's module (and struct's)
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def data_of(message: dict[str, Any]) -> bytes:
    """The bytes a message carries ("d"); a malformed field is the peer's error."""
    data = message.get("d", "")
    try:
        if isinstance(data, str):
            data = data.encode("ascii")
        return binascii.a2b_base64(data, strict_mode=True)
    except (ValueError, TypeError) as e:
        raise RemoteError(f"the remote side sent malformed data ({e})") from None


def hello(version: str) -> bytes:
    return encode("hello", v=[MAJOR, MINOR], nsdash=version)


def check_hello(message: dict[str, Any], host: str) -> tuple[int, int]:
    """The peer's (major, minor) if we can talk to it; otherwise a RemoteError naming both versions."""
    v = message.get("v")
    if message.get("t") != "hello" or not (isinstance(v, list) and len(v) == 2
                                           and all(isinstance(x, int) for x in v)):
        raise RemoteError(f"{host} did not greet as nsdash does", "is nsdash on the far side the same program?")
    if v[0] != MAJOR:
        # The far side's word for its version, shown in an error (escaped where it is shown):
        # a version is short, what a hostile far side sends need not be (a line holds 1 MiB).
        theirs = message.get("nsdash")
        theirs = theirs[:VERSION_SHOWN] + ("…" if len(theirs) > VERSION_SHOWN else "") if isinstance(theirs, str) \
            else "?"
        raise RemoteError(f"{host} speaks nsdash protocol {v[0]}.{v[1]} (nsdash {theirs}), this nsdash speaks "
                          f"{MAJOR}.{MINOR}", "install the same nsdash version on both hosts")
    return v[0], v[1]


class Decoder:
    """Bytes in, messages out: splits lines, parses JSON, keeps a partial line for the next feed.

    STRICT: a line that is not a message is an error (after the hello); before
    it the client feeds with strict=False, so a greeting from the far user's
    shell start-up files is skipped rather than fatal (still bounded)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes, strict: bool = True) -> list[dict[str, Any]]:
        self.buffer += data
        messages: list[dict[str, Any]] = []
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(self.buffer[:end])
            del self.buffer[:end + 1]
            message = parse(line, strict)
            if message is not None:
                messages.append(message)
        if len(self.buffer) > MAX_LINE:
            raise RemoteError(f"the remote side sent a line longer than {MAX_LINE} bytes")
        return messages


def parse(line: bytes, strict: bool = True) -> dict[str, Any] | None:
    """LINE as a message; None for an empty line or (not STRICT) for one that is no message."""
    if not line.strip():
        return None
    import json

    try:
        message = json.loads(line)
    except (ValueError, RecursionError):  # (nested deeper than the parser's recursion: still no message)
        message = None
    if isinstance(message, dict) and message.get("t") in KINDS:
        return message
    if not strict:
        return None
    raise RemoteError("the remote side sent a line that is not an nsdash message")
