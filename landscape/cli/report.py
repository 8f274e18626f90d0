"""``landscape report``."""
from __future__ import annotations
import os


def add_parser(sub):
    from .. import report as module
    p = sub.add_parser("report", help="one self-contained page about a sweep: regimes, evidence, every run",
                       description=module.__doc__.replace("``", ""))
    p.add_argument("inputs", nargs="+", help="a sweep folder and/or trajectory files")
    p.add_argument("-o", "--out", required=True, help="the page to write (report.html or report.md)")
    p.add_argument("--format", choices=("html", "md"), default=None,
                   help="html (figures embedded) or md (figures beside it) (default: from --out's extension)")
    p.add_argument("--metrics", choices=("auto", "epoch", "checkpoint"), default="auto",
                   help="curves judged, as in regimes")
    p.set_defaults(run=run)


def run(args):
    from ..report import write_report
    fmt = args.format or ("md" if os.path.splitext(args.out)[1].lower() in (".md", ".markdown") else "html")
    for path in write_report(args.inputs, args.out, fmt, args.metrics):
        print(f"wrote {path}")
