"""Shared helpers of the analysis scripts: where runs and outputs live, matched-loss reading."""
import os

import numpy as np
from scipy.stats import spearmanr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.environ.get("ANALYSES_OUT", os.path.join(ROOT, "analyses", "out"))
RUNS = os.environ.get("RUNS", os.path.join(ROOT, "runs"))
# the main sweep and its finer grid near the regime boundaries (train/sweep_mnist1d.sh)
SWEEP = [os.path.join(RUNS, "mnist1d-k16"), os.path.join(RUNS, "mnist1d-k16-fine")]


def out_path(name: str) -> str:
    os.makedirs(OUT, exist_ok=True)
    return os.path.join(OUT, name)


def save(name: str, payload: dict, fig=None) -> None:
    """Write OUT/name.json (and OUT/name.png) and print the claims' verdicts."""
    from landscape.files import write_json
    from landscape.plots import save_figure
    write_json(out_path(name + ".json"), payload)
    if fig is not None:
        save_figure(fig, out_path(name + ".png"))
    if payload.get("metrics"):
        print(f"metrics: {payload['metrics']}")
    for s in payload.get("skipped", []):  # runs a folder held that the figure could not use
        print(f"skipped {s['path']}: {s['reason']}")
    for claim in payload.get("claims", []):
        print(f"[{'confirmed' if claim['confirmed'] else 'NOT confirmed'}] {claim['claim']}: {claim['evidence']}")
    print(f"wrote {out_path(name + '.json')}")


def script_args(argv) -> tuple[list, str]:
    """The positional arguments and ``--metrics epoch|checkpoint|auto`` (default auto: the
    checkpoint metrics, the paper's protocol, where every run has them; else epoch means)."""
    argv, metrics = list(argv), "auto"
    if "--metrics" in argv:
        i = argv.index("--metrics")
        if i + 1 >= len(argv):
            raise SystemExit("--metrics needs a value: epoch, checkpoint or auto")
        metrics = argv[i + 1]
        del argv[i:i + 2]
    return argv, metrics


def sweep_inputs(args) -> list:
    """Sweep folders from the command line, else the default ones that exist."""
    folders = list(args) or [f for f in SWEEP if os.path.isdir(f)]
    if not folders:
        raise SystemExit(f"no sweep found: run train/sweep_mnist1d.sh first (looked in {SWEEP})")
    return folders


def claim(text: str, confirmed, evidence: str) -> dict:
    return {"claim": text, "confirmed": bool(confirmed), "evidence": evidence}


def at_loss(train_loss, values, level):
    """The value at the first epoch whose train loss is <= level (None if never reached)."""
    hit = np.flatnonzero(np.asarray(train_loss) <= level)
    return None if len(hit) == 0 else float(np.asarray(values)[hit[0]])


def rank_correlation(x, y) -> float:
    if len(x) < 3:
        return float("nan")
    return float(spearmanr(x, y).statistic)
