"""What the dashboard's UI thread did while the slowest keys waited (reads bench_flood_keys.py --sample OUT).

    python bench/slow_keys.py OUT [--phase flood] [--over MS] [--top N]

For the keys of PHASE that took more than MS to show, the samples taken
between each key's send and its effect are pooled; printed: the frames most
often on the stack (inclusive, each frame once a sample) and the innermost
frames (self), as shares of those samples.
"""

from __future__ import annotations

import argparse
import bisect
from collections import Counter
from pathlib import Path


def load(out: Path) -> tuple[list[float], list[tuple[str, ...]], dict[str, list[float]]]:
    stacks: dict[int, tuple[str, ...]] = {}
    times: list[float] = []
    ids: list[tuple[str, ...]] = []
    marks: dict[str, list[float]] = {"in": [], "key": [], "frame": [], "queued": [], "out": [], "gc2": []}
    for line in out.read_text().splitlines():
        head, _, rest = line.partition("\t")
        if head.startswith("!"):
            when, _, value = rest.partition("\t")
            marks[head[1:]].append(float(when))
            if head == "!gc2":
                GC2[float(when)] = int(value) / 1e6
        elif head.startswith("#"):
            stacks[int(head[1:])] = tuple(rest.split(";"))
        elif rest:
            times.append(float(head))
            ids.append(stacks[int(rest)])
    for values in marks.values():
        values.sort()
    return times, ids, marks


GC2: dict[float, float] = {}  # a full collection's end -> its length (s)


def gc2_within(marks: dict[str, list[float]], start: float, end: float) -> float:
    """Seconds of full collections that ran between START and END."""
    return sum(max(0.0, min(end, t) - max(start, t - GC2[t])) for t in marks["gc2"]
               if t - GC2[t] < end and t > start)


def after(values: list[float], t: float) -> float:
    i = bisect.bisect_left(values, t)
    return values[i] if i < len(values) else float("inf")


def before(values: list[float], t: float) -> float:
    i = bisect.bisect_right(values, t)
    return values[i - 1] if i else float("-inf")


def split(marks: dict[str, list[float]], sent: float, took: float) -> tuple[float, float, float, float]:
    """ms from the send to the input thread, on to the app's loop, on to the last frame begun
    before the effect showed, on to the effect."""
    got = after(marks["in"], sent)
    handled = after(marks["key"], got)
    frame = max(handled, before(marks["frame"], sent + took))
    a, b, c, d = (1000 * x for x in (got - sent, handled - got, frame - handled, sent + took - frame))
    return a, b, c, d


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--phase", default="flood")
    ap.add_argument("--over", type=float, default=100.0, help="ms (default 100)")
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    times, stacks, marks = load(args.out)
    parts: list[tuple[float, ...]] = []
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    n = keys = 0
    gc_ms: list[float] = []  # per slow key: ms of full collections while it waited
    for line in Path(f"{args.out}.keys").read_text().splitlines():
        phase, key, sent, took = line.split("\t")
        if phase != args.phase or float(took) * 1000 <= args.over:
            continue
        keys += 1
        parts.append(split(marks, float(sent), float(took)))
        gc_ms.append(1000 * gc2_within(marks, float(sent), float(sent) + float(took)))
        start = bisect.bisect_left(times, float(sent))
        end = bisect.bisect_right(times, float(sent) + float(took))
        for stack in stacks[start:end]:
            n += 1
            inclusive.update({frame.rsplit(':', 1)[0] + ')' for frame in stack})  # functions, not lines
            leaf[stack[-1]] += 1
    print(f"{keys} {args.phase} keys over {args.over:.0f} ms, {n} samples while they waited")
    if parts and marks["in"]:
        print("where their time went (ms; median, max): send->input thread, ->app loop, ->last frame, ->seen")
        for i, what in enumerate(("to the input thread", "to the app's loop", "handled, to the frame", "frame to seen")):
            values = sorted(p[i] for p in parts)
            print(f"  {what:22} {values[len(values) // 2]:7.1f} {values[-1]:7.1f}")
    if marks["gc2"]:
        hit = [g for g in gc_ms if g > 0]
        print(f"full collections: {len(marks['gc2'])} in the run, "
              f"{sum(GC2.values()) / len(GC2) * 1000:.0f} ms each on average; "
              f"{len(hit)} of these keys waited through one ({sum(hit):.0f} ms in all)")
    for title, counts in (("inclusive", inclusive), ("self", leaf)):
        print(f"-- {title}")
        for frame, c in counts.most_common(args.top):
            print(f"{100 * c / max(n, 1):5.1f}%  {frame}")


if __name__ == "__main__":
    main()
