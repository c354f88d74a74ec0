"""nsdash.tui.nodeclasses: every DOMNode class made with its per-base bookkeeping gets the very
attributes Textual's own DOMNode.__init_subclass__ gives it (issue 16: 9 ms of the dashboard's
start).  Each of Textual's widget classes and nsdash's is made again both ways and compared; a
Textual whose method is another keeps its own."""

from __future__ import annotations

import textual.widgets
from textual.dom import DOMNode
from textual.reactive import reactive
from textual.widget import Widget

import nsdash.tui.app  # noqa: F401 - nsdash's widget classes, loaded
from nsdash.tui import nodeclasses
from nsdash.tui.nodeclasses import _init_subclass, _original

KEPT = ("_reactives", "_computes", "_css_type_name", "_css_type_names", "_merged_bindings", "_inherit_css",
        "_inherit_bindings", "_inherit_component_classes")


def _every_node_class() -> list[type]:
    for name in textual.widgets.__all__:  # Textual's widgets load lazily
        getattr(textual.widgets, name)
    found, todo = [], [DOMNode]
    while todo:
        klass = todo.pop()
        for sub in klass.__subclasses__():
            found.append(sub)
            todo.append(sub)
    return found


def _bookkeeping(klass: type) -> dict[str, object]:
    out = {}
    for name in KEPT:
        value = klass.__dict__[name]
        if name == "_reactives":
            value = list(value.items())  # (order and identity)
        elif name == "_merged_bindings":
            value = dict(value.key_to_bindings)  # (a BindingsMap has no __eq__)
        out[name] = value
    return out


def _made_with(init, klass: type) -> dict[str, object]:
    """KLASS's own attributes recomputed by INIT on it (as when it was made)."""
    saved = {name: klass.__dict__[name] for name in KEPT}
    try:
        init(klass)
        if klass.__dict__.get("_css_type_name") is None:
            raise AssertionError(klass)
        return _bookkeeping(klass)
    finally:
        for name, value in saved.items():
            setattr(klass, name, value)


def test_every_node_class_gets_what_textual_gives_it():
    classes = _every_node_class()
    assert len(classes) > 100 and any(k.__module__.startswith("nsdash.") for k in classes)
    for klass in classes:
        if "__init_subclass__" in klass.__dict__:
            continue  # (its own hook runs with its own arguments: DOMNode's is what is compared)
        theirs = _made_with(_original.__func__, klass)
        ours = _made_with(_init_subclass, klass)
        assert ours == theirs, klass


def test_classes_made_after_install_have_their_reactives_and_computes():
    assert nodeclasses.install()
    try:
        class Base(Widget):
            a = reactive(1)

            def compute_b(self) -> int:
                return 2

        class Sub(Base, can_focus=True):
            c = reactive(3)
            a = reactive(4)  # an override keeps its place and takes the new value

            def _compute_d(self) -> int:
                return 5
    finally:
        nodeclasses.uninstall()
    assert list(Sub._reactives) == [*Widget._reactives, "a", "c"]
    assert Sub._reactives["a"] is Sub.__dict__["a"]
    assert Sub._computes == frozenset({"b", "d"}) | Widget._computes
    assert Sub.can_focus is True  # Widget's own hook ran around it
    theirs = _made_with(_original.__func__, Sub)
    assert _bookkeeping(Sub) == theirs


def test_another_textual_keeps_its_own(monkeypatch):
    monkeypatch.setattr(nodeclasses, "PINNED", "0.0.1")
    assert not nodeclasses.install()
    assert DOMNode.__dict__["__init_subclass__"] is _original
