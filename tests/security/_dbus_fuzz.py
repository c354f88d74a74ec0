"""A fuzzer for nsdash.system.dbuscheck against dbus-fast's compiled unmarshaller (issue 15).

dbuscheck stands in front of dbus-fast's reader for every message a guest's
bus sends: whatever it accepts, dbus-fast must read without crashing (a
SIGSEGV killed the supervisor once), hanging or blowing up its memory.  This
module makes messages (sound ones of random types, then mutated: lengths,
signatures, padding, header fields, variants, nesting, endianness, version,
body length against signature), keeps those dbuscheck accepts, and has
dbus-fast read each one in a child process: a child killed by a signal, one
that takes over TIMEOUT for a message, or one whose memory grows by more than
MEMORY is a hole.  So is an exception other than dbus-fast's own refusals of
what it read (REFUSALS): an IndexError, KeyError, TypeError or OverflowError
came only from reading elsewhere than dbuscheck checked (the reader past the
message's end, a length taken from a string's text), the way the SIGSEGVs
came.  Refusals are counted (nsdash.system.dbuswire reports them as a reset).

Deterministic: one seed, one count.  `python -m tests.security._dbus_fuzz
[COUNT] [SEED]` runs it by hand with a larger count.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO

TIMEOUT = 1.0  # seconds dbus-fast may take for one message
MEMORY = 64 << 20  # what dbus-fast may grow by for one message
# After each message the reader finds more bytes (as from a socket that held several):
# lengths of 0xFFFFFFFF, so a read past the message's end shows.
TAIL = b"\xff" * 64
# dbus-fast's refusals of a message it read where dbuscheck did: a string that is not UTF-8, a
# signature its parser refuses, an unknown message type, nesting past its limit
REFUSALS = frozenset({"UnicodeDecodeError", "InvalidSignatureError", "InvalidMessageError"})

_BASIC = "ybnqiuxtdsogh"
_FIXED = {"y": 1, "b": 4, "n": 2, "q": 2, "i": 4, "u": 4, "h": 4, "x": 8, "t": 8, "d": 8}
_INTERESTING_U32 = (0, 1, 2, 3, 4, 7, 8, 0x7F, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
                    0xFFFFFFF0, 0xFFFFFFF8, 0xFFFFFFFC, 0xFFFFFFFE, 0xFFFFFFFF, 128 << 20, (128 << 20) + 1)
_INTERESTING_BYTES = b"\x00\x01\x02\x07\x08\x09\x0a\x7f\x80\xfe\xffaysogv(){}ihtdxbnqu"


def random_type(rng: random.Random, depth: int = 0) -> str:
    """One complete type, nested at most a few levels."""
    roll = rng.random()
    if depth >= 4 or roll < 0.5:
        return rng.choice(_BASIC)
    if roll < 0.65:
        return "a" + random_type(rng, depth + 1)
    if roll < 0.75:
        return "a{" + rng.choice(_BASIC) + random_type(rng, depth + 1) + "}"
    if roll < 0.9:
        return "(" + "".join(random_type(rng, depth + 1) for _ in range(rng.randint(1, 3))) + ")"
    return "v"


class _Writer:
    """Sound D-Bus encoding of random values, in either byte order (positions are the message's)."""

    def __init__(self, rng: random.Random, order: str, buf: bytearray) -> None:
        self.rng, self.order, self.buf = rng, order, buf
        self.chain = 0  # variants still to nest in the next variant written (dbus-fast stops at 64)

    def pad(self, n: int) -> None:
        self.buf += bytes(-len(self.buf) % n)

    def u32(self, v: int) -> None:
        self.pad(4)
        self.buf += struct.pack(self.order + "I", v)

    def text(self, s: bytes) -> None:
        self.u32(len(s))
        self.buf += s + b"\0"

    def signature(self, s: str) -> None:
        self.buf += bytes([len(s)]) + s.encode() + b"\0"

    def value(self, sig: str, i: int, depth: int = 0) -> int:
        """Write a random value of the complete type at SIG[I]; the index after that type."""
        code, rng = sig[i], self.rng
        if code in _FIXED:
            self.pad(_FIXED[code])
            fmt = {"y": "B", "b": "I", "n": "h", "q": "H", "i": "i", "u": "I", "h": "I",
                   "x": "q", "t": "Q", "d": "d"}[code]
            if code == "d":
                v: float | int = rng.random() * 1e6
            elif code == "b":
                v = rng.randint(0, 1)
            elif code == "h":
                v = rng.randint(0, 3)
            else:
                v = rng.randint(0, 100)
            self.buf += struct.pack(self.order + fmt, v)
            return i + 1
        if code == "s":
            self.text(rng.choice([b"", b"x", b"ssh.service", "h\u00e9".encode(), b"a" * rng.randint(0, 40)]))
            return i + 1
        if code == "o":
            self.text(rng.choice([b"/", b"/org/freedesktop/systemd1", b"/org/freedesktop/systemd1/unit/x_2eservice"]))
            return i + 1
        if code == "g":
            self.signature(random_type(rng, 2) if rng.random() < 0.8 else "")
            return i + 1
        if code == "v":
            inner = "v" if self.chain > 0 else random_type(rng, depth + 2)
            self.chain -= 1
            self.signature(inner)
            self.value(inner, 0, depth + 1)
            return i + 1
        if code == "a":
            self.u32(0)
            at = len(self.buf) - 4
            elem = sig[i + 1]
            self.pad(8 if elem in "xtd({" else _FIXED.get(elem, 4) if elem in _FIXED else 1 if elem in "gv" else 4)
            start = len(self.buf)
            after = _skip(sig, i + 1)
            for _ in range(rng.choice([0, 1, 1, 2, 3] if depth < 4 else [0, 1])):
                self.value(sig, i + 1, depth + 1)
            struct.pack_into(self.order + "I", self.buf, at, len(self.buf) - start)
            return after
        close = ")" if code == "(" else "}"
        self.pad(8)
        i += 1
        while sig[i] != close:
            i = self.value(sig, i, depth + 1)
        return i + 1


def _complete(sig: str) -> bool:
    """Whether SIG is whole complete types (a signature cut at 255 may end inside a container)."""
    try:
        i = 0
        while i < len(sig):
            i = _skip(sig, i)
        return True
    except IndexError:
        return False


def _skip(sig: str, i: int) -> int:
    if sig[i] == "a":
        return _skip(sig, i + 1)
    if sig[i] in "({":
        close = ")" if sig[i] == "(" else "}"
        i += 1
        while sig[i] != close:
            i = _skip(sig, i)
    return i + 1


# (code, type) of the header fields a bus sends (D-Bus specification, "Header Fields")
_FIELDS = {1: "o", 2: "s", 3: "s", 4: "s", 5: "u", 6: "s", 7: "s", 8: "g", 9: "u"}
_NEEDS = {1: (1, 3), 2: (5,), 3: (4, 5), 4: (1, 2, 3)}


def deep_type(rng: random.Random) -> str:
    """A type nested about as deep as dbus-fast allows (64 containers; 32 arrays, 32 structs)."""
    n = rng.randint(28, 70)
    kind = rng.random()
    if kind < 0.4:
        return "a" * min(n, 40) + rng.choice("yvs")
    if kind < 0.8:
        return "(" * min(n, 40) + rng.choice("yvs") + ")" * min(n, 40)
    return "(a" * (n // 2) + "y" + ")" * (n // 2)


def sound_message(rng: random.Random, odd_field: bool = False, deep: bool = True) -> bytes:
    """A message as a bus could send it: a type, its fields, a body of random types.  ODD_FIELD:
    one more header field of a random code (0-12) and type, as no bus sends one.  DEEP: now and
    then a type or a chain of variants nested up to and past the limits."""
    order = rng.choice("<<<>")
    mtype = rng.randint(1, 4)
    types = [deep_type(rng) if deep and rng.random() < 0.05 else random_type(rng) for _ in range(rng.choice([0, 1, 1, 2, 3]))]
    body_sig = "".join(types)[:255]
    while body_sig and _complete(body_sig) is False:
        body_sig = body_sig[:-1]
    codes: set[int] = set(_NEEDS[mtype]) | {c for c in _FIELDS if rng.random() < 0.3}
    if body_sig:
        codes.add(8)
    else:
        codes.discard(8)
    buf = bytearray((b"l" if order == "<" else b"B") + bytes([mtype, rng.choice([0, 1, 2]), 1]) + bytes(12))
    w = _Writer(rng, order, buf)
    start = len(buf)
    if deep and rng.random() < 0.03:
        w.chain = rng.randint(56, 70)
    fields_ = [(code, _FIELDS[code]) for code in codes]
    if odd_field:
        fields_.append((rng.randint(0, 12), random_type(rng, 2)))
    for code, kind in sorted(fields_, key=lambda _: rng.random()):
        w.pad(8)
        buf.append(code)
        w.signature(kind)
        if code == 8 and kind == "g":
            w.signature(body_sig)
        else:
            w.value(kind, 0)
    fields = len(buf) - start
    w.pad(8)
    body = len(buf)
    i = 0
    while i < len(body_sig):
        i = w.value(body_sig, i)
    struct.pack_into(order + "III", buf, 4, len(buf) - body, rng.randint(1, 1000), fields)
    return bytes(buf)


def _fix_lengths(data: bytearray) -> None:
    """Make the fixed header's body length agree with the message's bytes (past dbuscheck's first test)."""
    order = "<" if data[:1] == b"l" else ">"
    fields = struct.unpack_from(order + "I", data, 12)[0]
    body = len(data) - ((16 + fields + 7) & ~7)
    if body >= 0:
        struct.pack_into(order + "I", data, 4, body)


def mutate(rng: random.Random, message: bytes) -> bytes:
    """MESSAGE with one to four changes; most keep the header's lengths consistent."""
    data = bytearray(message)
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        n = len(data)
        if roll < 0.35 and n >= 20:  # a length: an aligned u32 made interesting
            at = rng.randrange(12, n - 3) & ~3
            v = rng.choice(_INTERESTING_U32) if rng.random() < 0.7 else struct.unpack_from("<I", data, at)[0] + rng.randint(-9, 9)
            struct.pack_into(rng.choice("<>") + "I", data, at, v & 0xFFFFFFFF)
        elif roll < 0.6:  # a byte: a signature's letter, a length byte, padding
            data[rng.randrange(n)] = rng.choice(_INTERESTING_BYTES)
        elif roll < 0.7:
            data[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif roll < 0.8:  # bytes in or out: padding and alignment move
            at = rng.randrange(16, n + 1) if n > 16 else n
            if rng.random() < 0.5:
                data[at:at] = bytes(rng.choice(_INTERESTING_BYTES) for _ in range(rng.randint(1, 8)))
            else:
                del data[at:at + rng.randint(1, 8)]
        elif roll < 0.85:  # the fixed header: endianness, type, flags, version
            data[rng.randrange(4)] = rng.choice(b"lB\x00\x01\x02\x03\x04\x05\xff")
        elif roll < 0.95 and n > 24:  # a signature swapped for another of the same length
            for at in range(16, n - 2):
                if data[at] and data[at] < 16 and at + data[at] + 1 < n and data[at + data[at] + 1] == 0 \
                        and all(chr(c) in "ybnqiuxtdsoghav(){}" for c in data[at + 1:at + 1 + data[at]]) and rng.random() < 0.3:
                    new = random_type(rng)[:data[at]].ljust(data[at], rng.choice("yuas"))
                    data[at + 1:at + 1 + data[at]] = new.encode()
                    break
        else:
            data += bytes(rng.randint(1, 16))
    if len(data) >= 16 and rng.random() < 0.9:
        _fix_lengths(data)
    return bytes(data)


def messages(seed: int, count: int) -> list[bytes]:
    """COUNT messages from SEED: a fifth as made (some with an odd header field), the rest mutated."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        message = sound_message(rng, odd_field=rng.random() < 0.15)
        out.append(message if rng.random() < 0.2 else mutate(rng, message))
    return out


# The child: reads length-prefixed messages on stdin, answers a line per message on stdout.
_CHILD = r"""
import io, os, resource, struct, sys
sys.path.insert(0, sys.argv[1])
from nsdash.system import dbuswire  # dbus-fast's message modules, as nsdash loads them
from dbus_fast._private.unmarshaller import Unmarshaller
tail, limit = bytes.fromhex(sys.argv[2]), int(sys.argv[3])
inp, out = sys.stdin.buffer, sys.stdout
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
soft = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE") + 4 * limit
resource.setrlimit(resource.RLIMIT_AS, (soft, soft))
while head := inp.read(4):
    msg = inp.read(struct.unpack("<I", head)[0])
    out.write("B\n"); out.flush()
    try:
        Unmarshaller(io.BytesIO(msg + tail), None, False).unmarshall()
        verdict = "ok"
    except MemoryError:
        verdict = "memory"
    except Exception as e:
        verdict = "exc " + type(e).__name__
    if resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base > limit:
        verdict = "memory"
    out.write(verdict + "\n"); out.flush()
"""


@dataclass
class Report:
    accepted: int = 0
    refused: int = 0
    exceptions: dict[str, int] = field(default_factory=dict)
    holes: list[tuple[str, bytes]] = field(default_factory=list)  # (what happened, the message)


def read_all(found: list[bytes], root: str, python: str = sys.executable) -> Report:
    """Have dbus-fast read each message in FOUND in a child (restarted after each hole)."""
    report = Report(accepted=len(found))
    i = 0
    while i < len(found):
        i = _one_child(found, i, report, root, python)
    return report


def _one_child(found: list[bytes], i: int, report: Report, root: str, python: str) -> int:
    """Messages from FOUND[I] on, in one child, until the end or a hole; the index to go on from.
    A thread writes them all ahead (the child's answers are read as they come)."""
    child = subprocess.Popen([python, "-c", _CHILD, root, TAIL.hex(), str(MEMORY)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    assert child.stdin is not None and child.stdout is not None
    writer = threading.Thread(target=_write_all, args=(child.stdin, found[i:]), daemon=True)
    writer.start()
    lines = _Lines(child.stdout.fileno())
    try:
        while i < len(found):
            msg = found[i]
            verdict = lines.next(TIMEOUT) if lines.next(5.0) == "B" else None
            if verdict is None:
                report.holes.append((_fate(child), msg))
                return i + 1
            if verdict == "memory":
                report.holes.append(("memory", msg))
                return i + 1
            if verdict.startswith("exc "):
                report.exceptions[verdict[4:]] = report.exceptions.get(verdict[4:], 0) + 1
                if verdict[4:] not in REFUSALS:
                    report.holes.append((f"read elsewhere than checked ({verdict[4:]})", msg))
            i += 1
        return i
    finally:
        child.kill()
        child.wait()
        writer.join()
        child.stdin.close()
        child.stdout.close()


def _write_all(pipe: IO[bytes], found: list[bytes]) -> None:
    with contextlib.suppress(OSError):  # the child was killed: a hole, the rest for the next one
        for msg in found:
            pipe.write(struct.pack("<I", len(msg)) + msg)


def _fate(child: subprocess.Popen[bytes]) -> str:
    try:
        code = child.wait(0.2)
    except subprocess.TimeoutExpired:
        return f"hang (over {TIMEOUT:g} s)"
    return f"killed by signal {-code}" if code < 0 else f"exited {code}"


class _Lines:
    """Lines from a pipe, each waited for at most a given time (None when it did not come)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buf = fd, b""

    def next(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            data = os.read(self.fd, 4096)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


def fuzz(seed: int, count: int, root: str) -> Report:
    """COUNT messages from SEED through dbuscheck; those it accepts read by dbus-fast."""
    from nsdash.system import dbuscheck

    found = []
    refused = 0
    for message in messages(seed, count):
        try:
            dbuscheck.check(message)
        except dbuscheck.Malformed:
            refused += 1
            continue
        found.append(message)
    report = read_all(found, root)
    report.refused = refused
    return report


if __name__ == "__main__":
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = fuzz(int(sys.argv[2]) if len(sys.argv) > 2 else 20, int(sys.argv[1]) if len(sys.argv) > 1 else 5000, here)
    print(f"accepted {result.accepted}, refused {result.refused}, exceptions {result.exceptions}")
    for what, msg in result.holes:
        print(what, msg.hex())
