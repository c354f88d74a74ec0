"""Run a Python module with its main thread's stack sampled into a file (a poor man's py-spy).

    python bench/stack_sampler.py OUT HZ -m nsdash [ARGS...]

A thread takes the main thread's stack HZ times a second and appends one line
per sample to OUT: `time<TAB>stack id`, with each new stack written once before
its first use as `#id<TAB>frame;frame;...` (outermost first).  Times are
time.monotonic(), the clock other processes on the host read too, so a bench
can look up what the UI thread did between a key sent and its effect seen
(bench_flood_keys.py --sample).  The sampler takes the GIL like any thread:
it sees the main thread where it stops holding it (every switch interval).

For a Textual app it also marks, as `!what<TAB>time` lines, when a key left
the driver's input thread (`!in`), when the app's loop took it (`!key`), and
when the app began to write a frame (`!frame`) and when the writer thread
took a frame (`!queued`, with its length) and flushed frames to the terminal (`!out`): so a key's time splits into reaching
the app, waiting in its queue, being handled and painted, and reaching the
screen (the writer thread, tmux).  Full cyclic collections are marked too (`!gc2`).
"""

from __future__ import annotations

import argparse
import runpy
import sys
import threading
import time

_NAMED = frozenset({"render_lines", "_refresh_layout", "_write_slices", "_tick"})
_marks: list[str] = []  # appended from any thread (atomic under the GIL), written by the sampler


def _mark(what: str, value: int = 0) -> None:
    _marks.append(f"!{what}\t{time.monotonic():.6f}\t{value}\n")


def _hook_textual() -> None:
    from textual import events
    from textual.app import App
    from textual.driver import Driver
    from textual.drivers._writer_thread import WriterThread

    process, on_event, display, writer_init, queue = (Driver.process_message, App.on_event, App._display,
                                                       WriterThread.__init__, WriterThread.write)

    class MarkedFile:
        """The terminal, as the writer thread writes to it: marks when each flush is done."""

        def __init__(self, file):
            self._file = file

        def __getattr__(self, name):
            return getattr(self._file, name)

        def flush(self):
            self._file.flush()
            _mark("out")

    def writer_thread_write(self, text):
        _mark("queued", len(text))
        return queue(self, text)

    def writer_thread_init(self, file):
        writer_init(self, MarkedFile(file))

    def process_message(self, message):
        if isinstance(message, events.Key):
            _mark("in")
        return process(self, message)

    async def app_on_event(self, event):
        if isinstance(event, events.Key):
            _mark("key")
        return await on_event(self, event)

    def app_display(self, screen, renderable):
        _mark("frame")
        return display(self, screen, renderable)

    Driver.process_message = process_message
    App.on_event = app_on_event
    try:  # nsdash's app takes a key's binding where it arrives (keyfirst.at_once): App.on_event never sees it
        from nsdash.tui.keyfirst import KeyFirst
    except ImportError:
        pass
    else:
        arrived = KeyFirst.arrived

        def key_arrived(self):
            _mark("key")
            return arrived(self)

        KeyFirst.arrived = key_arrived
    App._display = app_display
    WriterThread.__init__ = writer_thread_init
    WriterThread.write = writer_thread_write


def _hook_gc() -> None:
    """Mark each cyclic collection of the oldest generation (`!gc2`, at its end, with its
    length in microseconds): a full collection walks every object the app keeps."""
    import gc

    started = [0.0]

    def collected(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.monotonic()
        elif info.get("generation") == 2:
            now = time.monotonic()
            _marks.append(f"!gc2\t{now:.6f}\t{int(1e6 * (now - started[0]))}\n")

    gc.callbacks.append(collected)


def _sampler(out: str, hz: float, main_id: int) -> None:
    ids: dict[tuple[str, ...], int] = {}
    period = 1 / hz
    with open(out, "w", buffering=1 << 16) as f:
        flushed = time.monotonic()
        while True:
            time.sleep(period)
            frame = sys._current_frames().get(main_id)
            if frame is None:
                return
            stack = []
            while frame is not None:
                code = frame.f_code
                where = f"{code.co_name} ({code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno})"
                if code.co_name in _NAMED:  # which widget paints: its class
                    where += f" [{type(frame.f_locals.get('self')).__name__}]"
                stack.append(where)
                frame = frame.f_back
            key = tuple(reversed(stack))
            sid = ids.get(key)
            if sid is None:
                sid = ids[key] = len(ids)
                f.write(f"#{sid}\t{';'.join(key)}\n")
            now = time.monotonic()
            f.write(f"{now:.6f}\t{sid}\n")
            while _marks:
                f.write(_marks.pop(0))
            if now - flushed > 0.5:
                f.flush()
                flushed = now


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 usage="%(prog)s [-h] OUT HZ -m MODULE [ARGS...]")
    ap.add_argument("out", metavar="OUT", help="the file the samples are appended to")
    ap.add_argument("hz", metavar="HZ", type=float, help="samples a second")
    ap.add_argument("-m", dest="module", metavar="MODULE", required=True,
                    help="the module to run, as python -m does; the ARGS after it are its own")
    # What follows the module is the module's (its own --help included): argparse sees none of it.
    cut = argv.index("-m") + 2 if "-m" in argv else len(argv)
    args = ap.parse_args(argv[:cut])
    out, hz, module, rest = args.out, args.hz, args.module, argv[cut:]
    _hook_textual()
    _hook_gc()
    threading.Thread(target=_sampler, args=(out, hz, threading.get_ident()), daemon=True).start()
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
