"""Timing helpers of the benchmarks: medians of repeated calls, and contenders run in turn
(interleaved) so that machine noise hits all of them alike; ratios are what counts."""
import statistics
import time


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median_seconds(fn, repeats: int = 3) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after one discarded warm-up call."""
    fn()
    return statistics.median(seconds(fn) for _ in range(repeats))


def interleaved(contenders: dict, rounds: int) -> dict:
    """{name: median seconds of one call}: one discarded warm-up call each, then ``rounds``
    rounds calling every contender once, in turn."""
    for fn in contenders.values():
        fn()
    times = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            times[name].append(seconds(fn))
    return {name: statistics.median(t) for name, t in times.items()}
