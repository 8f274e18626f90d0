"""``landscape report``: one self-contained page about a sweep: the regime map with its
evidence (loss curves coloured by ELR, effective gradient norm against loss, ESS spread, test
error over the regime bands), double-descent results where the runs have label noise, and a
table of every run with its verdict and evidence. HTML with the figures embedded (no server, no
network) or Markdown with the figures beside it.
"""
from __future__ import annotations

import base64
import html
import os

import numpy as np

from .errors import ArgumentError, LandscapeError
import tempfile

# what each column of the run table means (the page's legend)
COLUMN_MEANINGS = {
    "rate": "the run's effective learning rate (ELR; LR for whole-space runs)",
    "regime": "1 convergence, 2 chaotic equilibrium, 3 divergence, ? undetermined (the reason says why)",
    "final loss": "train loss at the last epoch",
    "p(fall)": "p-value of a falling trend over the run's tail (small: still converging)",
    "ESS spread": "std/mean of the SI groups' effective step sizes over the tail (small: equalised, regime 2)",
    "mean eff. grad norm": "mean effective gradient norm rho |grad L| over the tail (a sharpness proxy)",
    "test accuracy": "test accuracy at the last epoch",
    "reason": "why the label was given or withheld",
    "file": "the trajectory",
}
CAPTIONS = {
    "regimes": "Regime map: the metrics each run was judged on against epochs, coloured by ELR on an ordered "
               "scale, with the regime of each run",
    "double_descent": "Epoch-wise double descent of the label-noise runs: test error over epochs, the peak "
                      "window and its rise and fall",
}
SHARED_SKIP = ("elr", "lr", "device", "init", "init_source")

COLUMNS = (("rate", "rate", "{:.3g}"), ("name", "regime", "{}"), ("final_train_loss", "final loss", "{:.4g}"),
           ("trend_p_falling", "p(fall)", "{:.2g}"), ("ess_spread", "ESS spread", "{:.3g}"),
           ("mean_effective_grad_norm", "mean eff. grad norm", "{:.4g}"),
           ("test_accuracy", "test accuracy", "{:.4f}"), ("reason", "reason", "{}"), ("path", "file", "{}"))


def _png(draw) -> bytes:
    """A figure drawn by ``draw(path)`` (the package's plot functions) as PNG bytes."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "figure.png")
        draw(path)
        with open(path, "rb") as f:
            return f.read()


def _cell(row: dict, key: str, fmt: str) -> str:
    v = row.get(key)
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return fmt.format(v)


def build_report(inputs, metrics: str = "auto") -> dict:
    """The report's content: title, the regimes result, figures {name: PNG bytes}, the run table."""
    from .plots.regimes import plot_regimes
    from .regimes import regimes
    result = regimes(inputs, metrics=metrics)
    rows = result["rows"]
    figures = {"regimes": _png(lambda p: plot_regimes(result, p))}
    sections = {}
    noisy = [r["path"] for r in rows if float(r["_trajectory"].config.get("label_noise", 0)) > 0]
    if noisy:
        from .double_descent import double_descent
        from .plots.double_descent import plot_double_descent
        try:
            dd = double_descent(noisy, metrics=metrics, progress=False)
            figures["double_descent"] = _png(lambda p: plot_double_descent(dd, p))
            sections["double_descent"] = dd
        except LandscapeError as e:
            sections["double_descent_error"] = str(e)
    table = [[_cell(r, key, fmt) for key, _, fmt in COLUMNS] for r in rows]
    name = result.get("rate_name", "ELR")
    def rate(value, regime):
        return f"{value:g}" if value is not None else f"none (no run in regime {regime})"
    summary = (f"{len(rows)} runs, judged on {result.get('metrics', metrics)} metrics; largest regime-1 {name} "
               f"{rate(result['largest_regime1_rate'], 1)}, smallest regime-3 {name} "
               f"{rate(result['smallest_regime3_rate'], 3)}; labels "
               f"{'in order' if result['ordered'] else 'NOT in order'} of {name}")
    return {"title": f"Sweep report: {', '.join(map(str, inputs))}", "summary": summary, "result": result,
            "figures": figures, "header": [h for _, h, _ in COLUMNS], "table": table, "sections": sections,
            "settings": shared_settings(rows), "analyses": stored_analyses(rows)}


def shared_settings(rows) -> dict:
    """The settings every run shares (the swept rate, device and fine-tuning source aside)."""
    configs = [r["_trajectory"].config for r in rows]
    if not configs:
        return {}
    return {k: v for k, v in sorted(configs[0].items())
            if k not in SHARED_SKIP and v is not None and all(c.get(k) == v for c in configs[1:])}


def stored_analyses(rows) -> list[tuple[str, str, str]]:
    """[(run file, analysis name, its stored numbers in short)] of every analysis the runs hold
    (sharpness, interpolation, surface, ...)."""
    from .trajectory import read_analysis
    out = []
    for r in rows:
        t = r["_trajectory"]
        for name in t.analyses:
            try:
                arrays, _ = read_analysis(t.path, name)
            except LandscapeError as e:
                out.append((os.path.basename(t.path), name, f"unreadable: {e}"))
                continue
            parts = []
            for key, value in arrays.items():
                value = np.asarray(value)
                if value.dtype.kind in "fiu" and value.size and key not in ("x", "y", "alpha", "path_x", "path_y"):
                    last = value.reshape(-1)[-1]
                    parts.append(f"{key} {float(last):.4g}" + (f" (last of {value.size})" if value.size > 1 else ""))
            out.append((os.path.basename(t.path), name, "; ".join(parts[:6]) or "stored"))
    return out


def to_html(report: dict) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in report["header"])
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in report["table"])
    figs = "".join(
        f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{esc(CAPTIONS.get(name, name.replace('_', ' ')))}</figcaption></figure>"
        for name, png in report["figures"].items())
    settings = "".join(f"<tr><td>{esc(k)}</td><td>{esc(str(v))}</td></tr>" for k, v in report.get("settings", {}).items())
    legend = "".join(f"<dt>{esc(h)}</dt><dd>{esc(COLUMN_MEANINGS.get(h, ''))}</dd>" for h in report["header"])
    stored = "".join(f"<tr><td>{esc(f)}</td><td>{esc(n)}</td><td>{esc(v)}</td></tr>"
                     for f, n, v in report.get("analyses", []))
    extra = (f"<h2>Settings shared by the runs</h2><table>{settings}</table>" if settings else "")
    legend_html = f"<h3>What the columns mean</h3><dl>{legend}</dl>"
    stored_html = (f"<h2>Stored analyses of these runs</h2><table><tr><th>run</th><th>analysis</th><th>last values"
                   f"</th></tr>{stored}</table>" if stored else "<h2>Stored analyses of these runs</h2><p>none yet "
                   "(landscape sharpness / interpolate / surface store theirs in the run)</p>")
    dd = report["sections"].get("double_descent")
    dd_html = ""
    if dd:
        verdict = {True: "yes", False: "no", None: "?"}

        def p_value(r):
            return "–" if r["p_value"] is None else f"{r['p_value']:.3g}"
        dd_rows = "".join(
            f"<tr><td>{r['rate']:.3g}</td><td>{esc(str(r['label_noise']))}</td><td>{esc(r['regime_name'])}</td>"
            f"<td>{verdict[r['double_descent']]}</td><td>{p_value(r)}</td>"
            f"<td>{esc(r.get('reason') or '')}</td></tr>" for r in dd["rows"])
        dd_html = ("<h2>Epoch-wise double descent</h2><table><tr><th>rate</th><th>label noise</th><th>regime</th>"
                   f"<th>double descent</th><th>p</th><th>reason</th></tr>{dd_rows}</table>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;}table{border-collapse:collapse;"
             "font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}"
             "img{max-width:100%}figure{margin:1em 0}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(report['title'])}</title>"
            f"<style>{style}</style></head><body><h1>{esc(report['title'])}</h1><p>{esc(report['summary'])}</p>"
            f"{extra}{figs}<h2>Runs</h2><table><tr>{head}</tr>{body}</table>{legend_html}{dd_html}"
            f"{stored_html}</body></html>")


def to_markdown(report: dict, image_prefix: str) -> tuple[str, dict]:
    """Markdown and the images {file name: PNG bytes} it links, named from ``image_prefix``."""
    images = {f"{image_prefix}-{name}.png": png for name, png in report["figures"].items()}
    lines = [f"# {report['title']}", "", report["summary"], ""]
    if report.get("settings"):
        lines += ["## Settings shared by the runs", ""] + [f"- {k}: {v}" for k, v in report["settings"].items()] + [""]
    lines += [f"![{CAPTIONS.get(name, name)}]({os.path.basename(path)})" for name, path in zip(report["figures"], images)]
    lines += ["", "| " + " | ".join(report["header"]) + " |", "|" + " --- |" * len(report["header"])]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in report["table"]]
    lines += ["", "What the columns mean:", ""] + [f"- **{h}**: {COLUMN_MEANINGS.get(h, '')}" for h in report["header"]]
    if report.get("analyses"):
        lines += ["", "## Stored analyses of these runs", ""] + [f"- {f}: {n}: {v}" for f, n, v in report["analyses"]]
    return "\n".join(lines) + "\n", images


def write_report(inputs, out: str, fmt: str = "html", metrics: str = "auto") -> list[str]:
    from .files import atomic_write
    if fmt not in ("html", "md"):
        raise ArgumentError(f"format must be html or md, got {fmt!r}", "format")
    extension = os.path.splitext(out)[1].lower()
    expected = {"html": (".html", ".htm"), "md": (".md", ".markdown")}[fmt]
    if extension not in expected:
        raise ArgumentError(f"out {out}: the report is {fmt.upper()}, but the name says "
                            f"{extension or 'no format'}; name it {os.path.splitext(out)[0]}{expected[0]}", "out")
    report = build_report(inputs, metrics)
    written = []
    if fmt == "html":
        text = to_html(report)
    else:
        text, images = to_markdown(report, os.path.splitext(out)[0])
        for path, png in images.items():
            atomic_write(path, lambda tmp, png=png: open(tmp, "wb").write(png), suffix=".png")
            written.append(path)
    atomic_write(out, lambda tmp: open(tmp, "w", encoding="utf-8").write(text), suffix=os.path.splitext(out)[1])
    return [out] + written
