"""The figure scripts of analyses/ read the metrics the regimes were judged on: the checkpoint
metrics (the paper's protocol) when every run has them."""
import sys
from pathlib import Path

import numpy as np

from landscape import train
from landscape.evaluation import stored_checkpoint_metrics
from landscape.regimes import regimes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analyses"))


def test_fig4_reads_the_checkpoint_filter_rows(tmp_path, tiny):
    import fig4_equal_ess as fig4
    for elr in (1e-3, 1e-2):
        train(out=str(tmp_path / "sw" / f"elr{elr:g}.h5"), progress=False, **dict(tiny, epochs=10, elr=elr, checkpoint_metrics=True))
    res = regimes(str(tmp_path / "sw"))
    assert res["metrics"] == "checkpoint"
    table = fig4.spreads(res["rows"], 0.2)
    for row, entry in zip(res["rows"], table):
        t = row["_trajectory"]
        curves = stored_checkpoint_metrics(t)
        k = max(1, int(round(0.2 * len(curves["epoch"]))))
        want = curves["filters/effective_step_size"][-k:].mean(0)
        np.testing.assert_allclose(entry["groups"]["ess_i"], want, rtol=1e-12)
        # the epoch means are another quantity: the figure did not draw them
        k_epoch = max(1, int(round(0.2 * t.epochs_complete)))
        assert not np.allclose(entry["groups"]["ess_i"], t.filter_metrics["effective_step_size"][-k_epoch:].mean(0))
        assert entry["metrics"] == "checkpoint"
    epoch = fig4.spreads(regimes(str(tmp_path / "sw"), metrics="epoch")["rows"], 0.2)
    k_epoch = max(1, int(round(0.2 * 10)))
    np.testing.assert_allclose(epoch[0]["groups"]["ess_i"],
                               res["rows"][0]["_trajectory"].filter_metrics["effective_step_size"][-k_epoch:].mean(0))
