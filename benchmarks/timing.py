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


def training_args(description: str | None = None, device: bool = True, extra=None):
    """The options every training benchmark takes: --epochs, --rounds, --model, --width,
    --device (unless ``device`` is False: CPU only), --data-root."""
    import argparse
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--model", default="convnet")
    p.add_argument("--width", type=int, default=32)
    if device:
        p.add_argument("--device", default="cpu")
    p.add_argument("--data-root", default="data")
    if extra is not None:  # a benchmark's own options
        extra(p)
    return p.parse_args()
