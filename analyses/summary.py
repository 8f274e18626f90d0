"""The whole reproduction at a glance: analyses/out/summary.png -- every figure of the scripts
and every claim's verdict (yes / no / undetermined) read from their JSON files, in three columns:
from the checkpoint metrics (the paper's protocol, the headline), from training's epoch means
(analyses/out/epoch-means/), and the diagnoses where they were run (analyses/diagnose.sh: the
same claims on the 400-epoch runs, analyses/out/horizon/, and on the runs of each further
diagnosis, analyses/out/diagnosis/*/; one mark per diagnosis that judged the claim).

    python analyses/summary.py     (after the figure scripts; analyses/run_all.sh runs it last)
"""
import json
import os
import textwrap

import matplotlib
matplotlib.use("Agg")
import matplotlib.image as mpimg
import matplotlib.pyplot as plt

from common import OUT, out_path

# (figure file, its title, the JSON whose claims it carries)
FIGURES = (("fig1_seeds.png", "Fig. 1: the three regimes over seeds", "fig1_regimes"),
           ("fig1_regimes.png", "Fig. 1: regime evidence (first seed)", None),
           ("fig2_toy.png", "Fig. 2: the toy model", None),
           ("fig3_sharpness.png", "Fig. 3 left: regime 1, sharpness and generalisation", "fig3_sharpness"),
           ("fig4_equal_ess.png", "Fig. 4: equal effective step sizes in regime 2", "fig4_equal_ess"),
           ("fig5_finetune.png", "Figs. 3 right, 5: fine-tuning", "fig5_finetune"),
           ("fig6_transitions.png", "Fig. 6: transitions", "fig6_transitions"),
           ("appendix_g_double_descent.png", "Appendix G: double descent under label noise",
            "appendix_g_double_descent"),
           ("appendix_m_random_walk.png", "Appendix M: regime 3 against a random walk",
            "appendix_m_random_walk"),
           ("fig7_standard.png", "Fig. 7: standard training (Section 6)", "fig7_standard"))
EPOCH_MEANS = os.path.join(OUT, "epoch-means")
HORIZON = os.path.join(OUT, "horizon")
DIAGNOSES = (HORIZON, *(os.path.join(OUT, "diagnosis", name) for name in ("finetune-long", "noise-long", "more-data")))
MARK = {True: "YES", False: "NO ", None: " ? "}


def claims_of(name, folder=OUT):
    path = os.path.join(folder, name + ".json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f).get("claims", [])


def main():
    present = [f for f in FIGURES if os.path.exists(os.path.join(OUT, f[0]))]
    if not present:
        raise SystemExit(f"no figures in {OUT}: run analyses/run_all.sh first")
    cols = 2
    rows = -(-len(present) // cols)
    fig = plt.figure(figsize=(7 * cols, 4.6 * rows + 7), layout="constrained")
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[4.6] * rows + [7])
    for i, (name, title, _) in enumerate(present):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        ax.imshow(mpimg.imread(os.path.join(OUT, name)))
        ax.set_title(title, fontsize=13)
        ax.axis("off")
    lines = []
    for _, _, source in FIGURES:
        epoch = {c["claim"]: c["confirmed"] for c in claims_of(source, EPOCH_MEANS)} if source else {}
        diagnoses = [{c["claim"]: c["confirmed"] for c in claims_of(source, d)} if source else {} for d in DIAGNOSES]
        for c in claims_of(source) if source else []:
            other = MARK[epoch[c["claim"]]] if c["claim"] in epoch else " - "
            longer = "/".join(MARK[d[c["claim"]]].strip() for d in diagnoses if c["claim"] in d) or " - "
            lines.append(f"[{MARK[c['confirmed']]}|{other}|{longer}] " + textwrap.shorten(c["claim"], 80))
    text = fig.add_subplot(grid[rows, :])
    text.axis("off")
    half = -(-len(lines) // 2)
    for k, chunk in enumerate((lines[:half], lines[half:])):
        text.text(0.01 + 0.5 * k, 0.98, "\n".join(chunk), va="top", family="monospace", fontsize=9.5,
                  transform=text.transAxes)
    yes = sum(line.startswith("[YES") for line in lines)
    fig.suptitle(f"Reproduction at CPU scale: {yes} of {len(lines)} claims confirmed on checkpoint metrics\n"
                 f"[checkpoint metrics | epoch means | diagnoses, one seed each]: YES / NO / ? undetermined / - not judged\n"
                 f"the evidence: analyses/REPRODUCTION.md, out/*.json",
                 fontsize=16)
    fig.savefig(out_path("summary.png"), dpi=70)
    print(f"wrote {out_path('summary.png')}")


if __name__ == "__main__":
    main()
