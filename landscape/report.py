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
    summary = (f"{len(rows)} runs; largest regime-1 {name} {result['largest_regime1_rate']}, smallest "
               f"regime-3 {name} {result['smallest_regime3_rate']}; labels "
               f"{'in order' if result['ordered'] else 'NOT in order'} of {name}")
    return {"title": f"Sweep report: {', '.join(map(str, inputs))}", "summary": summary, "result": result,
            "figures": figures, "header": [h for _, h, _ in COLUMNS], "table": table, "sections": sections}


def to_html(report: dict) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in report["header"])
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in report["table"])
    figs = "".join(
        f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{esc(name.replace('_', ' '))}</figcaption></figure>" for name, png in report["figures"].items())
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
            f"{figs}<h2>Runs</h2><table><tr>{head}</tr>{body}</table>{dd_html}</body></html>")


def to_markdown(report: dict, image_prefix: str) -> tuple[str, dict]:
    """Markdown and the images {file name: PNG bytes} it links, named from ``image_prefix``."""
    images = {f"{image_prefix}-{name}.png": png for name, png in report["figures"].items()}
    lines = [f"# {report['title']}", "", report["summary"], ""]
    lines += [f"![{name}]({os.path.basename(path)})" for name, path in zip(report["figures"], images)]
    lines += ["", "| " + " | ".join(report["header"]) + " |", "|" + " --- |" * len(report["header"])]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in report["table"]]
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
