"""Shared helpers of the analysis scripts: where runs and outputs live, matched-loss reading."""
import os

import numpy as np
from scipy.stats import spearmanr

OUT = os.environ.get("ANALYSES_OUT", os.path.join(os.path.dirname(__file__), "out"))
SWEEP = os.environ.get("SWEEP", "runs/mnist1d-k16")


def out_path(name: str) -> str:
    os.makedirs(OUT, exist_ok=True)
    return os.path.join(OUT, name)


def save(name: str, payload: dict, fig=None) -> None:
    """Write OUT/name.json (and OUT/name.png) and print the claims' verdicts."""
    from landscape.cli import write_json
    from landscape.plots import save_figure
    write_json(out_path(name + ".json"), payload)
    if fig is not None:
        save_figure(fig, out_path(name + ".png"))
    for claim in payload.get("claims", []):
        print(f"[{'confirmed' if claim['confirmed'] else 'NOT confirmed'}] {claim['claim']}: {claim['evidence']}")
    print(f"wrote {out_path(name + '.json')}")


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
