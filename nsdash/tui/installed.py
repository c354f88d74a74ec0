"""The installed Textual's version, as pip recorded it beside the package.

textual.__version__ asks importlib.metadata, whose import (email, zipfile, csv,
...) was 4% of the instructions to the dashboard's first frame (issue 16); the
dist-info directory's name says the same for one directory listing.  The one
place that asks (nsdash.tui.rows, nodeclasses and rulecache check their pins with it).
"""

from __future__ import annotations

import functools
import os


@functools.cache
def textual_version() -> str:
    """The version of the Textual that `import textual` loads: pip's record beside it, or, with
    no such record or more than one (another kind of install), what textual.__version__ says."""
    import textual

    site = os.path.dirname(os.path.dirname(textual.__file__))
    try:
        names = os.listdir(site)
    except OSError:
        names = []
    found = [n[len("textual-"):-len(".dist-info")] for n in names
             if n.startswith("textual-") and n.endswith(".dist-info")]
    return found[0] if len(found) == 1 else textual.__version__
