"""The one-page sweep report: one row per run, valid embedded images, Markdown too."""
import pytest
import base64
import io
from html.parser import HTMLParser

import matplotlib.image as mpimg

from landscape import Trajectory, train


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.rows, self.in_table = [], 0, 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "tr":
            self.rows += 1


@pytest.mark.slow
def test_report_of_a_tiny_sweep(tmp_path, tiny, cli):
    for elr in (1e-3, 1e-2, 0.3):
        train(out=str(tmp_path / "sw" / f"elr{elr:g}.h5"), progress=False, **dict(tiny, elr=elr, label_noise=0.1))
    run = str(tmp_path / "sw" / "elr0.001.h5")
    assert cli(["interpolate", f"{run}@0", f"{run}@3", "--points", "3", "-q"])[0] == 0
    code, out, err = cli(["report", str(tmp_path / "sw"), "-o", str(tmp_path / "r.html")])
    assert code == 0, err
    text = (tmp_path / "r.html").read_text()
    page = Page()
    page.feed(text)
    # the header and one row per run, the shared settings, the stored analyses (a header and one)
    settings = len(Trajectory(run).config)
    assert page.rows > 1 + 3 + 2
    assert "Settings shared by the runs" in text and "label_noise" in text and "batch_size" in text
    assert "What the columns mean" in text and "ESS spread" in text and "equalised" in text
    assert "Stored analyses of these runs" in text and "interpolation/" in text
    assert "None" not in text.replace("none", "") and settings > 5
    assert "Regime map:" in text
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    for src in page.images:  # every image decodes as a PNG
        png = base64.b64decode(src.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and mpimg.imread(io.BytesIO(png), format="png").shape[0] > 100
    code, out, err = cli(["report", str(tmp_path / "sw"), "-o", str(tmp_path / "r.md")])
    assert code == 0, err
    text = (tmp_path / "r.md").read_text()
    assert text.count("| ") >= 5 and (tmp_path / "r-regimes.png").exists()
    assert sum(line.startswith("| 0.") for line in text.splitlines()) == 3
