"""The documentation site builds without a warning (a broken link, a renamed function in an API
page or a bad docstring fails here), and its examples are the product's."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_docs_build_strictly(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site" / "api" / "index.html").read_text().count("train_runs") > 0


def test_every_doc_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert pages and all(p in nav for p in pages), sorted(p for p in pages if p not in nav)


def test_the_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    for link in re.findall(r"\]\((docs/[^)#]+)", text):  # every link into the docs resolves
        assert (ROOT / link).exists(), link


def test_the_command_lines_in_the_docs_parse():
    """Every `landscape COMMAND ...` line of the README and the docs parses with the real parser
    (a renamed flag fails here)."""
    from landscape.cli import _attach_negative_values, build_parser
    parser = build_parser()
    texts = [(ROOT / "README.md").read_text()] + [p.read_text() for p in (ROOT / "docs").rglob("*.md")]
    commands = [c.strip() for t in texts for block in re.findall(r"```bash\n(.*?)```", t, re.S)
                for line in block.replace("\\\n", " ").splitlines()
                for c in re.split(r"&&|;|\||>", line.split(" #")[0])]
    lines = [c[len("landscape "):] for c in commands if c.startswith("landscape ")]
    assert len(lines) > 20
    for line in lines:
        argv = [a.strip("'\"") for a in line.replace("\\", "").split()]
        if "..." in argv or any(a.startswith("$") or "*" in a for a in argv):
            argv = [a for a in argv if a != "..." and not a.startswith("$")]
            argv = [a.replace("*", "x") for a in argv]
        try:
            parser.parse_args(_attach_negative_values(argv))
        except SystemExit as e:
            pytest.fail(f"landscape {line}: does not parse (exit {e.code})")


@pytest.mark.parametrize("module", ["landscape.config", "landscape.sweep", "landscape.points", "landscape.errors",
                                    "landscape.data", "landscape.interpolation", "landscape.models"])
def test_the_docstring_examples_run(module):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result


def test_every_python_name_the_docs_use_exists():
    """`landscape.module.name` in the README and the docs names a real function or class."""
    import importlib
    texts = [(ROOT / "README.md").read_text()] + [p.read_text() for p in (ROOT / "docs").rglob("*.md")]
    names = {m for t in texts for m in re.findall(r"\blandscape\.([a-z_]+\.[A-Za-z_]\w*)", t)}
    assert len(names) > 10
    for name in sorted(names):
        module, attr = name.split(".")
        try:
            target = importlib.import_module(f"landscape.{module}")
        except ModuleNotFoundError:  # landscape.<function> of the package front
            target = getattr(importlib.import_module("landscape"), module)
        assert hasattr(target, attr), f"landscape.{name}"
