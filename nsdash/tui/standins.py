"""Stand-ins for modules Textual's app module imports but the dashboard's first frame never uses.

textual.app (Textual 8.2.8, nsdash.tui.rows.PINNED) imports at its top: uuid (for
a file delivery's key; uuid imports platform, which compiles nine regular
expressions), mimetypes and platformdirs (a file delivery's type and folder), and
through textual.command textual.types, which imports the Select, DirectoryTree and
Placeholder widgets for type names.  Together about 4% of the instructions to the
dashboard's first frame (issue 16, callgrind), all for things a user may never do.
RichLog's module imports rich.pretty (about 1.4 ms: dataclasses made, attrs looked
for) for an object written that is not text; the journal pane writes only text.

`deferred()` puts a stand-in for each in sys.modules while the block imports
Textual, and takes them out after it.  A stand-in holds what Textual takes from it
by name while it loads (a function that loads the real module when first called;
for textual.types the very object Textual's own textual._types holds; a Textual
without that private name gets the real textual.types) and loads the
real module on any other attribute: a module that keeps a stand-in (textual.app's
`uuid`, say) gets the real one's attributes on first use.  Any other import of these
names after the block gets the real module.  Nothing is stood in for a module that
was already loaded.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any


class StandIn(ModuleType):
    """Module NAME until something asks it for more than it holds; then the real one."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):  # the import system asks for __path__ and the like: not there
            raise AttributeError(attr)
        return getattr(real(self.__name__), attr)


def real(name: str) -> ModuleType:
    """The real module NAME, loaded now if only its stand-in was."""
    if isinstance(sys.modules.get(name), StandIn):
        sys.modules.pop(name, None)  # (another thread may have taken it out first)
    return importlib.import_module(name)


def later(module: str, name: str) -> Callable[..., Any]:
    """A function that calls MODULE.NAME, MODULE loaded on the first call."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(real(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


def _stand_ins() -> dict[str, dict[str, Any]]:
    """Each module stood in for, and what Textual takes from it by name while it loads."""
    stand_ins: dict[str, dict[str, Any]] = {
        "uuid": {"uuid4": later("uuid", "uuid4")},  # textual.notifications
        "mimetypes": {},
        "platformdirs": {"user_downloads_path": later("platformdirs", "user_downloads_path")},  # textual.app
        # RichLog's renderable for an object that is not text (the journal pane writes only text)
        "rich.pretty": {"Pretty": later("rich.pretty", "Pretty")},
    }
    # textual.command takes this one name; textual.types takes it from textual._types, a private
    # module: a Textual without it there gets no stand-in (the real textual.types, a little slower)
    held = _private_name("textual._types", "IgnoreReturnCallbackType")
    if held is not None:
        stand_ins["textual.types"] = {"IgnoreReturnCallbackType": held}
    return stand_ins


def _private_name(module: str, name: str) -> Any:
    """MODULE.NAME, or None where this Textual has no such module or name."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


@contextlib.contextmanager
def deferred() -> Iterator[list[str]]:
    """Import Textual's app module inside the block with the stand-ins; yields their names."""
    placed = []
    for name, held in _stand_ins().items():
        if name not in sys.modules:
            module = StandIn(name)
            module.__dict__.update(held)
            sys.modules[name] = module
            placed.append(name)
    try:
        yield placed
    finally:
        for name in placed:
            if isinstance(sys.modules.get(name), StandIn):
                del sys.modules[name]
