"""No cyclic garbage collection while the dashboard starts; the start-up heap frozen after;
full collections only when tended, never in the middle of a key.

Importing Textual and composing the first screen make a few hundred thousand
objects, and Python's collector walked them again and again on the way: about
a fifth of the CPU before the first full frame (issue 16).  Nothing made then
is garbage worth chasing, so `nsdash` holds collection off from before the
imports (hold) until the first full frame is on screen (release).  Release
collects once, then freezes what survived (gc.freeze): the app's long-lived
objects stay out of every later collection, which also makes them cheaper
while the dashboard runs.

While a machine floods, the journal pane's lines are written again and again:
each line a Strip with seven caches of its own, 100,000+ objects that live a
second or two.  Python ran a full collection over them every few seconds, 40-90
ms with the UI thread stopped (issue 15: a quarter of the keys slower than 100 ms
waited through one).  So after release Python runs no full collection by itself
(its third threshold out of reach): the app calls `tend` every TEND_EVERY
seconds, which runs one when Python would have (FULL_AFTER collections of the
middle generation since the last) but at most every FULL_EVERY seconds, and
never while a key waits for its frame.  Young collections go on as before.
"""

from __future__ import annotations

import gc
import time

FULL_AFTER = 10  # middle-generation collections since the last full one: CPython's own threshold
FULL_EVERY = 10.0  # s: the least time between two full collections
TEND_EVERY = 2.0  # s: how often the app asks
_OUT_OF_REACH = 1 << 30  # a third threshold never reached
_clock = time.monotonic  # (a test sets its own)

_held = False
_tended = False
_last_full = float("-inf")
_python_full = FULL_AFTER  # Python's third threshold, as it was before release()


def hold() -> None:
    """Stop cyclic collection until release(), unless something else turned it off already."""
    global _held
    if gc.isenabled():
        gc.disable()
        _held = True


def held() -> bool:
    return _held


def release() -> None:
    """Collect once, freeze the survivors, collect as usual again, full collections left to
    tend(); a no-op unless hold() held it."""
    global _held, _tended, _last_full, _python_full
    if not _held:
        return
    _held = False
    gc.collect()
    gc.freeze()
    young, middle, full = gc.get_threshold()
    if not _tended:
        _python_full = full
    gc.set_threshold(young, middle, _OUT_OF_REACH)
    _tended, _last_full = True, _clock()
    gc.enable()


def tend(busy: bool) -> bool:
    """Run a full collection if one is due and not BUSY (a key waits for its frame); True if it ran."""
    global _last_full
    if not _tended or busy or gc.get_count()[2] < FULL_AFTER or _clock() - _last_full < FULL_EVERY:
        return False
    gc.collect()
    _last_full = _clock()
    return True


def untended() -> None:
    """Python's own full collections again (tests; a dashboard that ends)."""
    global _tended
    if _tended:
        _tended = False
        young, middle, _full = gc.get_threshold()
        gc.set_threshold(young, middle, _python_full)
