"""machinectl's image verbs: image-status, show-image, clone, rename, remove,
read-only, export-tar, import-tar.

The dispatcher passes the verb as argv[0].  The work is nsdash.machines.images,
imported by the verbs that change images: image-status and show-image read them
through nsdash.machines.imagescan alone, as lean as `nsdash list` (issue 16).
This module parses, prints (every guest-written value escaped) and shows
progress on stderr.
"""

from __future__ import annotations

import sys
import time

from nsdash.cli.machinectl import _dump, _parse, _parser
from nsdash.errors import NsdashError, UsageError
from nsdash.machines import imagescan
from nsdash.system.text import escape
from nsdash.system.utctime import utc

TYPE_CHECKING = False  # mypy reads this as True
if TYPE_CHECKING:
    from typing import Any

VERBS = ("image-status", "show-image", "clone", "rename", "remove", "read-only", "export-tar", "import-tar")


# ---------------------------------------------------------------- pure formatting


def _when(ts: float | None) -> str:
    return utc(ts, "%a %Y-%m-%d %H:%M:%S UTC")


def image_json(image: imagescan.Image, users: list[str]) -> dict[str, Any]:
    return {"name": image.name, "path": image.where, "type": image.type, "ro": image.read_only,
            "crtime": int(image.crtime) if image.crtime else None, "mtime": int(image.mtime),
            "hostname": image.hostname, "os": image.os_release.get("PRETTY_NAME"), "usage": None,
            "used_by": users}


def format_status(image: imagescan.Image, users: list[str]) -> str:
    """machinectl image-status: the name, then right-aligned labels."""
    rows = [("Path", image.where), ("Type", image.type)]
    if image.hostname:
        rows.append(("Hostname", image.hostname))
    pretty = image.os_release.get("PRETTY_NAME") or image.os_release.get("NAME")
    if pretty:
        rows.append(("OS", pretty))
    rows += [("RO", "read-only" if image.read_only else "writable"),
             ("Created", _when(image.crtime)), ("Modified", _when(image.mtime))]
    if users:
        rows.append(("In use by", ", ".join(users)))
    return escape(image.name) + "\n" + "".join(f"{label:>15}: {escape(value)}\n" for label, value in rows)


def show_properties(image: imagescan.Image) -> list[tuple[str, str]]:
    """machinectl show-image's properties (org.freedesktop.machine1.Image's names)."""
    def usec(ts: float | None) -> str:
        return _when(ts) if ts else ""

    return [("Name", image.name), ("Path", image.where), ("Type", image.type),
            ("ReadOnly", "yes" if image.read_only else "no"),
            ("CreationTimestamp", usec(image.crtime)), ("ModificationTimestamp", usec(image.mtime)),
            ("Usage", "[not set]"), ("Limit", "[not set]"), ("UsageExclusive", "[not set]"),
            ("LimitExclusive", "[not set]")]


def parse_bool(text: str) -> bool:
    t = text.lower()
    if t in ("1", "yes", "y", "true", "t", "on"):
        return True
    if t in ("0", "no", "n", "false", "f", "off"):
        return False
    raise UsageError(f"invalid boolean '{escape(text)}'", "use yes or no")


class ProgressLine:
    """Progress on stderr: one line rewritten in a terminal, a line per 10% otherwise."""

    def __init__(self, verb: str, quiet: bool = False) -> None:
        self.verb, self.quiet = verb, quiet
        self.tty = sys.stderr.isatty()
        self.last_step, self.last_time = -1, 0.0
        self.shown = False  # (in a terminal: a line an error must first clear)

    def __call__(self, done: int, total: int | None) -> None:
        if self.quiet:
            return
        mib = done / (1 << 20)
        if total:
            pct = min(100, done * 100 // total)
            text, step = f"{self.verb} {pct}% ({mib:.1f} MiB)", pct // 10
        else:
            text, step = f"{self.verb} {mib:.1f} MiB", int(mib) // 64
        now = time.monotonic()
        if self.tty:
            if now - self.last_time >= 0.1:
                sys.stderr.write(f"\r{text}\x1b[K")
                self.last_time, self.shown = now, True
        elif step != self.last_step:
            sys.stderr.write(text + "\n")
        self.last_step = step

    def finish(self, text: str) -> None:
        if not self.quiet:
            sys.stderr.write(("\r\x1b[K" if self.tty else "") + text + "\n")

    def clear(self) -> None:
        """Before an error: the terminal's progress line goes, so the error starts a line."""
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            self.shown = False


# ---------------------------------------------------------------- verbs


def cmd_image_status(argv: list[str]) -> int:
    p = _parser("image-status", "+")
    p.add_argument("-o", "--output", choices=["short", "json", "json-pretty"], default="short")
    ns = _parse(p, argv)
    found = [imagescan.find(n) for n in ns.names]
    if ns.output.startswith("json"):
        _dump([image_json(i, imagescan.users(i)) for i in found], ns.output)
        return 0
    sys.stdout.write("\n".join(format_status(i, imagescan.users(i)) for i in found))
    return 0


def cmd_show_image(argv: list[str]) -> int:
    p = _parser("show-image", "+")
    p.add_argument("-p", "--property", action="append", default=[])
    p.add_argument("--value", action="store_true")
    p.add_argument("-a", "--all", action="store_true")
    ns = _parse(p, argv)
    blocks = []
    for name in ns.names:
        props = show_properties(imagescan.find(name, facts=False))  # shows no os-release, no hostname
        if ns.property:
            wanted = {w for x in ns.property for w in x.split(",")}
            props = [(k, v) for k, v in props if k in wanted]
        elif not ns.all:
            props = [(k, v) for k, v in props if v and v != "[not set]"]
        blocks.append("".join((escape(v) if ns.value else f"{k}={escape(v)}") + "\n" for k, v in props))
    sys.stdout.write("\n".join(blocks))
    return 0


def cmd_clone(argv: list[str]) -> int:
    from nsdash.machines import images

    p = _parser("clone", None)
    p.add_argument("name", metavar="NAME")
    p.add_argument("new", metavar="NEW")
    p.add_argument("--read-only", action="store_true")
    ns = _parse(p, argv)
    images.clone(ns.name, ns.new, ns.read_only)
    return 0


def cmd_rename(argv: list[str]) -> int:
    from nsdash.machines import images

    p = _parser("rename", None)
    p.add_argument("name", metavar="NAME")
    p.add_argument("new", metavar="NEW")
    ns = _parse(p, argv)
    images.rename(ns.name, ns.new)
    return 0


def cmd_remove(argv: list[str]) -> int:
    from nsdash.machines import images

    p = _parser("remove", "+")
    ns = _parse(p, argv)
    for name in ns.names:
        images.find(name)  # every name checked before anything is removed
    for name in ns.names:
        images.remove(name)
    return 0


def cmd_read_only(argv: list[str]) -> int:
    from nsdash.machines import images

    p = _parser("read-only", None)
    p.add_argument("name", metavar="NAME")
    p.add_argument("value", metavar="BOOL", nargs="?", default="yes")
    ns = _parse(p, argv)
    images.set_read_only(ns.name, parse_bool(ns.value))
    return 0


def cmd_export_tar(argv: list[str]) -> int:
    from nsdash.machines import images

    p = _parser("export-tar", None)
    p.add_argument("name", metavar="NAME")
    p.add_argument("file", metavar="FILE", nargs="?", default="-", help="- or none: standard output")
    p.add_argument("--format", dest="fmt")
    p.add_argument("-q", "--quiet", action="store_true")
    ns = _parse(p, argv)
    progress = ProgressLine("Exported", ns.quiet)
    try:
        size = images.export_tar(ns.name, ns.file, ns.fmt, progress)
    except BaseException:
        progress.clear()
        raise
    progress.finish(f"Exported image '{ns.name}' to {_file_or_stdio(ns.file, 'output')} "
                    f"({size / (1 << 20):.1f} MiB of tar).")
    return 0


def cmd_import_tar(argv: list[str]) -> int:
    from nsdash.machines import images

    p = _parser("import-tar", None)
    p.add_argument("file", metavar="FILE", help="-: standard input (then NAME is needed)")
    p.add_argument("name", metavar="NAME", nargs="?")
    p.add_argument("--read-only", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    ns = _parse(p, argv)
    progress = ProgressLine("Imported", ns.quiet)
    try:
        image = images.import_tar(ns.file, ns.name, ns.read_only, progress)
    except BaseException:
        progress.clear()
        raise
    progress.finish(f"Imported {_file_or_stdio(ns.file, 'input')} as image '{image.name}' ({image.path}).")
    return 0


def _file_or_stdio(file: str, which: str) -> str:
    from nsdash.machines import images

    return f"standard {which}" if file in images.STDIO else escape(file)


def main(argv: list[str]) -> int:
    verb, rest = argv[0], argv[1:]
    handler = {"image-status": cmd_image_status, "show-image": cmd_show_image, "clone": cmd_clone,
               "rename": cmd_rename, "remove": cmd_remove, "read-only": cmd_read_only,
               "export-tar": cmd_export_tar, "import-tar": cmd_import_tar}.get(verb)
    if handler is None:
        raise UsageError(f"unknown image verb '{verb}'")
    try:
        return handler(rest)
    except OSError as e:  # a file system's refusal (no space, no permission) is one line too
        where = f" ({e.filename})" if e.filename else ""
        raise NsdashError(f"{verb} failed: {e.strerror or e}{where}",
                          "check the path, the free space and the permissions") from None
