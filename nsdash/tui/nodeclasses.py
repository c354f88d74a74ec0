"""Textual's bookkeeping for each widget class, done from each base's own attributes once.

When a class of Textual's DOMNode (a widget, a screen, the app) is made,
DOMNode.__init_subclass__ (Textual 8.2.8) gathers its reactives by testing
every attribute of every class in its MRO (Widget alone has some 400), and its
compute methods from dir(cls), which lists them all again: about 170 us a
class, 9 ms for the 55 classes made before the dashboard's first frame (issue
16), the same answers each time for the same bases.  `install()` replaces it
with one that gives every class the very same attributes (_reactives, in the
same order, and _computes; the rest as Textual does it), from each class's own
reactives and compute names, found once per class.

Leans on Textual's internals: only on the Textual it was written for (PINNED, and
the names its method uses as they were read), else Textual's own is left in
place; tests/tui/test_node_classes.py makes every widget class Textual has both
ways and compares.
"""

from __future__ import annotations

from typing import Any

from textual.dom import DOMNode
from textual.reactive import Reactive

PINNED = "8.2.8"  # the Textual whose DOMNode.__init_subclass__ this stands for (read it again on an upgrade)
# The names the DOMNode.__init_subclass__ this stands for uses (Textual 8.2.8): one that sets
# or reads anything else is not this one, and keeps its place.
NAMES = ("super", "__init_subclass__", "_reactives", "reversed", "__mro__", "update", "__dict__", "items",
         "_inherit_css", "_inherit_bindings", "_inherit_component_classes", "set", "_css_bases", "__name__",
         "_css_type_name", "add", "_merge_bindings", "_merged_bindings", "frozenset", "_css_type_names", "dir",
         "_computes")

_original = DOMNode.__dict__["__init_subclass__"]
_own_reactives: dict[type, dict[str, Reactive]] = {}
_own_computes: dict[type, tuple[str, ...]] = {}


def _reactives_of(klass: type) -> dict[str, Reactive]:
    """KLASS's own reactives, in the order of its namespace (its __dict__'s)."""
    found = _own_reactives.get(klass)
    if found is None:
        found = _own_reactives[klass] = {name: value for name, value in klass.__dict__.items()
                                         if isinstance(value, Reactive)}
    return found


def _computes_of(klass: type) -> tuple[str, ...]:
    """The names of KLASS's own compute methods, as DOMNode keeps them (no compute_ prefix)."""
    found = _own_computes.get(klass)
    if found is None:
        found = _own_computes[klass] = tuple(name.lstrip("_")[8:] for name in klass.__dict__
                                             if name.startswith(("_compute_", "compute_")))
    return found


def _init_subclass(cls: Any, inherit_css: bool = True, inherit_bindings: bool = True,
                   inherit_component_classes: bool = True) -> None:
    """DOMNode.__init_subclass__ with the reactives and computes gathered per base class."""
    super(DOMNode, cls).__init_subclass__()
    reactives: dict[str, Reactive] = {}
    for base in reversed(cls.__mro__):
        reactives.update(_reactives_of(base))
    cls._reactives = reactives
    cls._inherit_css = inherit_css
    cls._inherit_bindings = inherit_bindings
    cls._inherit_component_classes = inherit_component_classes
    bases = cls._css_bases(cls)
    cls._css_type_name = bases[0].__name__
    cls._merged_bindings = cls._merge_bindings()
    cls._css_type_names = frozenset(base.__name__ for base in bases)
    # dir(cls) lists the names of every class in the MRO: the same names, from each once
    cls._computes = frozenset(name for base in cls.__mro__ for name in _computes_of(base))


def usable() -> bool:
    """Textual's DOMNode.__init_subclass__ is the one this was written for."""
    from nsdash.tui.installed import textual_version

    return textual_version() == PINNED and _original.__func__.__code__.co_names == NAMES


def install() -> bool:
    """Make DOMNode classes from here on with _init_subclass; False (Textual's own kept) on
    another Textual."""
    if DOMNode.__dict__["__init_subclass__"] is not _original:
        return True  # already
    if not usable():
        return False
    DOMNode.__init_subclass__ = classmethod(_init_subclass)  # type: ignore[assignment,method-assign]
    return True


def uninstall() -> None:
    """Textual's own again (tests)."""
    DOMNode.__init_subclass__ = _original  # type: ignore[method-assign]
