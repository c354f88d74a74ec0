"""The Images panel and the spawn form over remote hosts (`nsdash -H A -H B`, then `I` or `s`).

Each host is asked `list-images -o json` (the same verb the command line
runs there), all hosts at once, so a slow host holds up only its own rows,
over one ssh session per host that the panel keeps while it is open
(FarImages; a session that failed is opened again at the next refresh), as
the machine view keeps its RemoteMachine's.  An image's row key is HOST/NAME, as a machine's is,
with its host in ImageRow.host; a host that does not answer is named in the
panel's status line (PartialImages), its last rows kept, the others' shown.

Everything in the answer is the far host's text: names and paths are kept
only when they are plain (an image name has no "/", a path is absolute) and
shown through the table's escaping; the size and the machines on an image
are not in list-images' answer and show as unknown.
"""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path
from typing import Any

from nsdash.errors import NsdashError
from nsdash.remote.client import last_words
from nsdash.remote.target import Target
from nsdash.tui.messages import ImageRow, PartialImages
from nsdash.tui.remote_views import FarSession

TIMEOUT = 20.0  # seconds a host has to list its images
TYPES = frozenset({"directory", "subvolume", "raw"})
PATH_MAX = 4096


def key_of(host: str, image: str) -> str:
    return f"{host}/{image}"


def image_row(host: str, entry: Any) -> ImageRow | None:
    """One entry of a far `list-images -o json` as a row; None if it is not a usable image."""
    if not isinstance(entry, dict):
        return None
    name, path, mtime = entry.get("name"), entry.get("path"), entry.get("mtime")
    if not isinstance(name, str) or not name or "/" in name or len(name) > 255:
        return None
    if not isinstance(path, str) or not path.startswith("/") or len(path) > PATH_MAX:
        return None
    kind = entry.get("type")
    return ImageRow(name=key_of(host, name), host=host, type=kind if kind in TYPES else "?",
                    read_only=entry.get("ro") is True, size=None,
                    mtime=float(mtime) if isinstance(mtime, int | float) and not isinstance(mtime, bool) else 0.0,
                    path=path)


def parse(host: str, stdout: bytes) -> list[ImageRow]:
    """A far host's answer as rows; NsdashError if it is not list-images' JSON."""
    try:
        entries = json.loads(stdout)
    except (ValueError, RecursionError):  # (a document nested past the parser's depth)
        entries = None
    if not isinstance(entries, list):
        raise NsdashError(f"{host} answered 'list-images -o json' with something else",
                          "is the same nsdash installed there?")
    return [row for row in (image_row(host, e) for e in entries) if row is not None]


def list_images(session: FarSession) -> list[ImageRow]:
    """The images of SESSION's host, asked over it."""
    target = session.target
    result = session.run(["list-images", "-o", "json"])
    if result.code != 0:
        raise NsdashError(f"{target}: {last_words(result.stderr, f'list-images exited {result.code}')}")
    return parse(str(target), result.stdout)


class FarImages:
    """The Images panel's reader over -H (nsdash.tui.actions.ImageReader): every host's images,
    over a session kept per host (FarSession) until close()."""

    def __init__(self, targets: dict[str, Target], last: dict[str, list[ImageRow]] | None = None,
                 timeout: float = TIMEOUT) -> None:
        """LAST: each host's last answer (host -> rows), kept there across readers: see rows()."""
        self.sessions = {host: FarSession(target, timeout) for host, target in targets.items()}
        self.last = {} if last is None else last

    def rows(self) -> tuple[ImageRow, ...]:
        """Every host's images, asked at once; PartialImages when any host did not answer, with
        the others' rows and its rows of last time, as the machine list keeps a dropped host's
        machines: its rows do not blink away and back."""
        rows: list[ImageRow] = []
        failed: list[str] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(16, len(self.sessions)))) as pool:
            futures = {host: pool.submit(list_images, session) for host, session in self.sessions.items()}
            for host, future in futures.items():
                try:
                    self.last[host] = future.result()
                except (NsdashError, OSError) as e:
                    failed.append(e.oneline() if isinstance(e, NsdashError) else f"{host}: {e}")
                rows += self.last.get(host, [])
        if failed:
            raise PartialImages(tuple(rows), "; ".join(failed))
        return tuple(rows)

    def close(self) -> None:
        """End every host's session, a listing in flight too (the panel closed)."""
        for session in self.sessions.values():
            session.close()


def images_of(target: Target) -> dict[str, Path]:
    """TARGET's images for the spawn form (name -> its path there), over a session of their own."""
    session = FarSession(target, TIMEOUT)
    try:
        return {row.name.partition("/")[2]: Path(row.path) for row in list_images(session)}
    finally:
        session.close()
