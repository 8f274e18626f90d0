"""The package's layers point one way: the analyses never import the trainer, nothing below the
command line parses flags, the modules import each other without a cycle, and the epoch loop is
written once."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "landscape"
TRAINER = {"run", "steppers", "sweep", "executors"}
ANALYSES = {"analysis", "evaluation", "hessian", "sharpness", "interpolation", "surface", "regimes", "random_walk", "curves",
            "double_descent", "toy", "report", "trackers"}


def imports_of(path: Path) -> set[str]:
    """The package modules a module imports (anywhere in it, function-local imports included)."""
    tree = ast.parse(path.read_text())
    here = path.relative_to(PACKAGE).with_suffix("").parts
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(here[:len(here) - node.level])
            target = base + (node.module.split(".") if node.module else [])
            if node.module is None:
                out.update(".".join(base + [a.name]) for a in node.names)
            else:
                out.add(".".join(target))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("landscape."):
            out.add(node.module[len("landscape."):])
    return out


def modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE).with_suffix("").parts): p for p in PACKAGE.rglob("*.py")
            if p.name != "__init__.py" or p.parent != PACKAGE}


def test_the_analyses_never_import_the_trainer():
    for name in ANALYSES | {f"plots.{n}" for n in ANALYSES}:
        path = modules().get(name)
        if path is not None:
            assert not imports_of(path) & TRAINER, (name, imports_of(path) & TRAINER)


def test_no_argparse_below_the_command_line():
    for name, path in modules().items():
        if not name.startswith("cli"):
            assert "argparse" not in path.read_text(), name


def test_no_import_cycle_between_modules():
    graph = {name: {m for m in imports_of(path) if m in modules()} for name, path in modules().items()}
    state = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", " -> ".join(trail + [node])
        state[node] = "open"
        for nxt in graph[node]:
            visit(nxt, trail + [node])
        state[node] = "done"
    for node in graph:
        visit(node, [])


def test_the_epoch_loop_is_written_once():
    """Only run.train_runs iterates over epochs; the steppers iterate over one epoch's batches."""
    loops = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.For) and "epoch" in ast.unparse(node.target).split(",")[0] and \
                    "range(" in ast.unparse(node.iter) and "epochs" in ast.unparse(node.iter):
                loops.append(name)
    assert loops == ["run"], loops
