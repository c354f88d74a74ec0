"""The dashboard's style files (styles/*.tcss): where they are, and a screen's own added when it opens.

styles/nsdash.tcss is the app's CSS_PATH: the dashboard and what every screen
shares.  The machine view's rules (machine.tcss) and the forms' and the Images
panel's (forms.tcss) are added to the app's stylesheet by the first such screen
made (use), so the first frame does not parse them (issue 16: about half of the
CSS parsed before it was for screens not shown).

Not through Textual's Screen.CSS_PATH: on a screen's first push Textual re-parses
every source of the stylesheet from scratch (Stylesheet.reparse makes a new
stylesheet, its parse cache empty) and restyles every node of every screen, tens
of milliseconds on the key that opens it.  add_source leaves the parsed sources
in the cache: the next styling parses only the new file.  The new rules name
only the widgets of their own screens, so the nodes already styled need nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textual.dom import DOMNode

REPO_STYLES = Path(__file__).resolve().parents[2] / "styles"


def path(name: str = "nsdash") -> Path:
    """styles/NAME.tcss from the installed package (nsdash/styles), else from the repository."""
    # Beside the package's modules, as importlib.resources would find it (not imported: 10 ms at start).
    installed = Path(__file__).resolve().parents[1] / "styles" / f"{name}.tcss"
    return installed if installed.is_file() else REPO_STYLES / f"{name}.tcss"


def use(node: DOMNode, name: str) -> None:
    """styles/NAME.tcss in the running app's stylesheet from now on (once): called by a screen's
    __init__, before Textual styles the screen and its widgets.  Nothing without a running app
    (a screen made outside one is styled by whoever runs it)."""
    from textual.types import NoActiveAppError

    try:
        stylesheet = node.app.stylesheet
    except NoActiveAppError:
        return
    where = str(path(name))
    if not stylesheet.has_source(where):
        # read_from as Stylesheet.read names a file: Textual's own re-parse (a theme change) keeps it.
        stylesheet.add_source(Path(where).read_text(encoding="utf-8"), read_from=(where, ""))
