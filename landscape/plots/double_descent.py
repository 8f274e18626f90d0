"""Figures of ``landscape double-descent``."""
from __future__ import annotations



def plot_double_descent(result: dict, path: str) -> None:
    """One panel per run: test error, its smoothed curve, the detected peak window (shaded) with
    the lowest windows before and after it that its rise and fall are measured from, the train error on the noisy and on the clean examples apart when measured
    (Appendix G: the peak comes as the noisy labels are memorised), and the effective gradient
    norm (sharpness proxy) on a log axis."""
    from . import new_figure, save_figure
    rows = result["rows"]
    fig, axes = new_figure(len(rows), 4.5, 3.6, max_cols=3)
    twins = []
    for ax, r in zip(axes, rows):
        ax.plot(r["test_error_epochs"], r["test_error"], color="tab:blue", lw=0.6, alpha=0.6, label="test error")
        if r.get("_smoothed") is not None:
            ax.plot(r["test_error_epochs"], r["_smoothed"], color="tab:blue", lw=1.4, label="smoothed")
        if r["double_descent"]:
            ax.axvspan(r["bump_centre_epoch"] - r["peak_width"] / 2, r["bump_centre_epoch"] + r["peak_width"] / 2,
                       color="tab:blue", alpha=0.12, label="peak window")
            ax.plot([r["preceding_min_epoch"], r["bump_centre_epoch"], r["following_min_epoch"]],
                    [r["preceding_min"], r["peak_test_error"], r["following_min"]], "o--", color="0.35",
                    ms=3, lw=0.8, label="rise and fall (trimmed window means)")
        for subset, style in (("noisy", ":"), ("clean", "-.")):
            if r.get(f"train_error_{subset}") is not None:
                ax.plot(r["epochs"], r[f"train_error_{subset}"], color="0.3", ls=style, lw=0.9,
                        label=f"train error, {subset} examples")
        ax.set_xlabel("epoch")
        ax.set_ylabel("error" if r.get("train_error_noisy") is not None else "test error", color="tab:blue")
        tw = ax.twinx()
        twins.append(tw)
        tw.plot(r["epochs"], r["effective_grad_norm"], color="tab:red", lw=0.8, label="effective grad norm")
        if r.get("egn_peak_epoch") is not None:
            tw.axvline(r["egn_peak_epoch"], color="tab:red", ls=":", lw=0.8, label="its peak")
        tw.set_ylabel("mean stochastic effective grad norm", color="tab:red")
        tw.set_yscale("log")
        verdict = {True: "double descent", False: "no double descent", None: "undetermined"}[r["double_descent"]]
        p = "" if r["p_value"] is None else f", p = {r['p_value']:.3g}"
        ax.set_title(f"{r['rate_name']} {r['rate']:.3g}, noise {r['label_noise']:.0%}, {r['regime_name']}\n{verdict}{p}",
                     fontsize=8)
    handles = [h for a in (axes[0], twins[0]) for h in a.get_legend_handles_labels()[0]] if twins else []
    axes[0].legend(handles=handles, fontsize=6, loc="upper right")
    save_figure(fig, path)
