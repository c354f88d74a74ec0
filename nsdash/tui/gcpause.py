"""No cyclic garbage collection while the dashboard starts; the start-up heap frozen after.

Importing Textual and composing the first screen make a few hundred thousand
objects, and Python's collector walked them again and again on the way: about
a fifth of the CPU before the first full frame (issue 16).  Nothing made then
is garbage worth chasing, so `nsdash` holds collection off from before the
imports (hold) until the first full frame is on screen (release).  Release
collects once, then freezes what survived (gc.freeze): the app's long-lived
objects stay out of every later collection, which also makes them cheaper
while the dashboard runs.
"""

from __future__ import annotations

import gc

_held = False


def hold() -> None:
    """Stop cyclic collection until release(), unless something else turned it off already."""
    global _held
    if gc.isenabled():
        gc.disable()
        _held = True


def held() -> bool:
    return _held


def release() -> None:
    """Collect once, freeze the survivors, collect as usual again; a no-op unless hold() held it."""
    global _held
    if not _held:
        return
    _held = False
    gc.collect()
    gc.freeze()
    gc.enable()
