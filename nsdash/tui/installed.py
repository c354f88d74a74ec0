"""The installed Textual's version, as pip recorded it beside the package.

textual.__version__ asks importlib.metadata, whose import (email, zipfile, csv,
...) was 4% of the instructions to the dashboard's first frame (issue 16); the
dist-info directory's name says the same for one directory listing.
"""

from __future__ import annotations

import functools
import os


@functools.cache
def textual_version() -> str | None:
    """The version of the Textual that `import textual` loads; None if pip's record is not there
    (another kind of install) or not the only one."""
    import textual

    site = os.path.dirname(os.path.dirname(textual.__file__))
    try:
        names = os.listdir(site)
    except OSError:
        return None
    found = [n[len("textual-"):-len(".dist-info")] for n in names
             if n.startswith("textual-") and n.endswith(".dist-info")]
    return found[0] if len(found) == 1 else None
