"""The supervisor's control protocol, shared by the supervisor and its clients.

Two phases on one AF_UNIX SOCK_STREAM connection (see PROTOCOL.md):

1. Requests: one JSON object per line, each answered by one JSON line.
   The first request must be `hello` with the client's protocol version.
2. After a successful `attach`, the connection carries console frames:
   a 1-byte type, a 4-byte big-endian length, then the payload.

Everything here is pure: encoders, decoders and validators.  Sockets live in
the supervisor and the client.
"""

from __future__ import annotations

from nsdash.machines.busguard import BUS_REPLY_MAX  # a bus-call's reply line at most
from nsdash.system.frozen import Frozen

TYPE_CHECKING = False  # typing costs 2 ms to import on the spawn path; annotations are strings
if TYPE_CHECKING:
    from typing import Any

VERSION = 1
MAX_LINE = 64 * 1024  # a request or response line, newline included
MAX_FRAME = 64 * 1024  # a console frame's payload

OPS = ("hello", "status", "attach", "poweroff", "reboot", "terminate", "kill", "bus-call")
BUS_TIMEOUT_MAX = 120.0  # seconds a bus-call may ask for
_BUS_NAMES = ("destination", "path", "interface", "member")

# Console frame types.
FRAME_OUTPUT = b"O"  # supervisor -> client: console bytes
FRAME_INPUT = b"I"  # client -> supervisor: keyboard bytes
FRAME_WINSIZE = b"W"  # client -> supervisor: rows, cols as two big-endian u16
FRAME_EVENT = b"E"  # supervisor -> client: a JSON object, e.g. {"event": "reboot"}
FRAME_TYPES = (FRAME_OUTPUT, FRAME_INPUT, FRAME_WINSIZE, FRAME_EVENT)
_HEADER_SIZE = 5  # the type byte, then the payload's length as a big-endian u32 (int.to_bytes:
# no struct module for bus-call's clients, which import this module for its constants)


class BadMessage(ValueError):
    """A message that breaks the protocol; the reply names the problem."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Request(Frozen):
    op: str
    id: Any = None
    args: dict[str, Any] | None = None

    def arg(self, key: str, default: Any = None) -> Any:
        return (self.args or {}).get(key, default)


# ---------------------------------------------------------------- requests


def encode_request(op: str, rid: Any = None, **args: Any) -> bytes:
    body: dict[str, Any] = {"op": op, **args}
    if rid is not None:
        body["id"] = rid
    return _line(body)


def decode_request(line: bytes) -> Request:
    """Parse and validate one request line (without its newline)."""
    import json  # not at the top: bus-call clients (machines/buscall.py) read no json

    try:
        body = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadMessage("malformed", f"not a JSON object: {e}") from None
    except (ValueError, RecursionError):
        # ValueError: an integer over Python's 4300-digit limit; RecursionError: [[[[...]]]] nesting.
        raise BadMessage("malformed", "not a JSON object: too deep or too large a number") from None
    if not isinstance(body, dict):
        raise BadMessage("malformed", "a request must be a JSON object")
    op = body.pop("op", None)
    rid = body.pop("id", None)
    if not isinstance(op, str):
        raise BadMessage("malformed", "a request needs an 'op' string")
    if op not in OPS:
        raise BadMessage("unknown-op", f"unknown op '{op}'")
    _check_args(op, body)
    return Request(op, rid, body)


def _check_args(op: str, args: dict[str, Any]) -> None:
    if op == "hello" and not isinstance(args.get("version"), int):
        raise BadMessage("malformed", "hello needs an integer 'version'")
    if op == "kill":
        sig = args.get("signal")
        if not isinstance(sig, int) or not 0 < sig < 65:
            raise BadMessage("malformed", "kill needs a 'signal' number between 1 and 64")
        if args.get("whom", "leader") not in ("leader", "all"):
            raise BadMessage("malformed", "kill's 'whom' is 'leader' or 'all'")
    if op == "attach":
        for key in ("rows", "cols"):
            if key in args and not (isinstance(args[key], int) and 0 < args[key] < 65536):
                raise BadMessage("malformed", f"attach's '{key}' must be 1..65535")
        if "replay" in args and not (isinstance(args["replay"], int) and args["replay"] >= 0):
            raise BadMessage("malformed", "attach's 'replay' is a byte count >= 0")
    if op in ("poweroff", "reboot", "terminate") and not isinstance(args.get("wait", False), bool):
        raise BadMessage("malformed", f"{op}'s 'wait' is true or false")
    if op == "bus-call":
        _check_bus_call(args)
    if op in ("poweroff", "reboot") and "timeout" in args:
        t = args["timeout"]
        if not isinstance(t, int | float) or isinstance(t, bool) or not 0 < t <= 3600:
            raise BadMessage("malformed", f"{op}'s 'timeout' is seconds, 0 < t <= 3600")


def _check_bus_call(args: dict[str, Any]) -> None:
    for key in _BUS_NAMES:
        value = args.get(key)
        if not isinstance(value, str) or not 0 < len(value) <= 255:
            raise BadMessage("malformed", f"bus-call needs a '{key}' string of 1..255 characters")
    signature = args.get("signature", "")
    if not isinstance(signature, str) or len(signature) > 255:
        raise BadMessage("malformed", "bus-call's 'signature' is a D-Bus signature string")
    if not isinstance(args.get("body", []), list):
        raise BadMessage("malformed", "bus-call's 'body' is a list of arguments")
    t = args.get("timeout", 10.0)
    if not isinstance(t, int | float) or isinstance(t, bool) or not 0 < t <= BUS_TIMEOUT_MAX:
        raise BadMessage("malformed", f"bus-call's 'timeout' is seconds, 0 < t <= {BUS_TIMEOUT_MAX:g}")


# ---------------------------------------------------------------- responses


def ok(rid: Any = None, **fields: Any) -> bytes:
    body: dict[str, Any] = {"ok": True, **fields}
    if rid is not None:
        body["id"] = rid
    return _line(body)


def error(code: str, message: str, rid: Any = None) -> bytes:
    body: dict[str, Any] = {"ok": False, "error": code, "message": message}
    if rid is not None:
        body["id"] = rid
    return _line(body)


def bus_reply(rid: Any, body: list[Any]) -> bytes:
    """A bus-call's answer: BODY (already dbusjson-encoded) in one line of at most BUS_REPLY_MAX,
    else the error `oversized`."""
    import json  # not at the top: bus-call clients (machines/buscall.py) read no json

    data = json.dumps({"ok": True, "id": rid, "body": body}, separators=(",", ":")).encode() + b"\n"
    if len(data) > BUS_REPLY_MAX:
        return error("oversized", f"the machine's answer is longer than {BUS_REPLY_MAX} bytes", rid)
    return data


def bus_error(rid: Any, name: str, text: str) -> bytes:
    """A bus-call answered by a D-Bus error reply: its NAME and TEXT (the guest's, shortened)."""
    body = {"ok": False, "error": "bus-error", "message": text[:4096], "name": name[:255]}
    if rid is not None:
        body["id"] = rid
    return _line(body)


def decode_response(line: bytes) -> dict[str, Any]:
    import json  # not at the top: bus-call clients (machines/buscall.py) read no json

    try:
        body = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise BadMessage("malformed", f"bad response: {str(e)[:200]}") from None
    if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
        raise BadMessage("malformed", "a response is an object with a boolean 'ok'")
    return body


def _line(body: dict[str, Any]) -> bytes:
    import json  # not at the top: bus-call clients (machines/buscall.py) read no json

    data = json.dumps(body, separators=(",", ":")).encode() + b"\n"
    if len(data) > MAX_LINE:
        if "ok" not in body:
            raise BadMessage("oversized", "message longer than the protocol allows")
        # A reply too long to send, most likely an id too big to echo: a short error instead.
        return _line({"ok": False, "error": "oversized",
                      "message": "the reply would be longer than the protocol allows (is the id too long?)"})
    return data


class LineReader:
    """Splits a byte stream into lines no longer than MAX_LINE.

    An overlong line is reported once and skipped up to its newline, so one
    bad message never desynchronises the rest of the connection.
    """

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.discarding = False

    def feed(self, data: bytes) -> list[bytes | BadMessage]:
        """Add DATA and take every complete line."""
        self.push(data)
        out: list[bytes | BadMessage] = []
        while (item := self.pop()) is not None:
            out.append(item)
        return out

    def push(self, data: bytes) -> None:
        self.buf += data

    def pop(self) -> bytes | BadMessage | None:
        """The next complete line (or an oversize report), None if there is none yet.

        One at a time, so a caller can stop after `attach` and take the raw rest
        with pending(): what follows is console frames, not lines.
        """
        while True:
            nl = self.buf.find(b"\n")
            if nl < 0:
                if len(self.buf) >= self.limit:
                    self.buf.clear()
                    if not self.discarding:
                        self.discarding = True
                        return BadMessage("oversized", f"line longer than {self.limit} bytes")
                return None
            line = bytes(self.buf[:nl])
            del self.buf[: nl + 1]
            if self.discarding:
                self.discarding = False
                continue
            if len(line) + 1 > self.limit:
                return BadMessage("oversized", f"line longer than {self.limit} bytes")
            return line

    def pending(self) -> bytes:
        """Bytes received after the last complete line (e.g. after `attach`)."""
        rest = bytes(self.buf)
        self.buf.clear()
        return rest


# ---------------------------------------------------------------- console frames


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    if kind not in FRAME_TYPES:
        raise BadMessage("bad-frame", f"unknown frame type {kind!r}")
    if len(payload) > MAX_FRAME:
        raise BadMessage("oversized", "frame payload too long")
    return kind + len(payload).to_bytes(4, "big") + payload


def output_frames(data: bytes) -> bytes:
    """Console output split into frames no longer than MAX_FRAME."""
    return b"".join(frame(FRAME_OUTPUT, data[i:i + MAX_FRAME]) for i in range(0, len(data), MAX_FRAME))


def winsize_frame(rows: int, cols: int) -> bytes:
    return frame(FRAME_WINSIZE, rows.to_bytes(2, "big") + cols.to_bytes(2, "big"))


def event_frame(event: str, **fields: Any) -> bytes:
    import json  # not at the top: bus-call clients (machines/buscall.py) read no json

    return frame(FRAME_EVENT, json.dumps({"event": event, **fields}).encode())


def parse_winsize(payload: bytes) -> tuple[int, int]:
    if len(payload) != 4:
        raise BadMessage("bad-frame", "a window-size frame carries exactly 4 bytes")
    rows, cols = int.from_bytes(payload[:2], "big"), int.from_bytes(payload[2:], "big")
    return rows, cols


class FrameReader:
    """Splits a byte stream into (type, payload) console frames."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.buf += data
        out: list[tuple[bytes, bytes]] = []
        while len(self.buf) >= _HEADER_SIZE:
            kind, length = bytes(self.buf[:1]), int.from_bytes(self.buf[1:_HEADER_SIZE], "big")
            if kind not in FRAME_TYPES:
                raise BadMessage("bad-frame", f"unknown frame type {kind!r}")
            if length > MAX_FRAME:
                raise BadMessage("oversized", "frame payload too long")
            end = _HEADER_SIZE + length
            if len(self.buf) < end:
                break
            out.append((kind, bytes(self.buf[_HEADER_SIZE:end])))
            del self.buf[:end]
        return out
