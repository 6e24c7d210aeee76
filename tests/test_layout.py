"""The tree is the architecture: one direction of flow, no import circles, a study layer that
reads files without torch, and only the composition root reading the config."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT

PACKAGE = ROOT / "gradexp"
# The Hydra-facing modules: the composition root, the CLI and the Hydra callbacks.
READS_CONFIG = {"gradexp.run", "gradexp.api", "gradexp.api_jobs", "gradexp.presets",
                "gradexp.presets.common", "gradexp.build", "gradexp.parts", "gradexp.knobs",
                "gradexp.__main__", "gradexp.hydra_errors", "gradexp.vector.jobs",
                "gradexp.vector.members", "gradexp.vector.groups", "gradexp.vector.run",
                "gradexp.study.table", "gradexp.durable.outdir"}  # fmt: skip


def modules() -> dict[str, ast.Module]:
    found = {}
    for file in PACKAGE.rglob("*.py"):
        parts = file.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(file.read_text())
    return found


def imports(tree: ast.Module, known: set[str]) -> set[str]:
    """gradexp modules this one imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        out |= {n for n in names if n in known}
    return out


def test_no_import_circles():
    mods = modules()
    graph = {m: imports(t, set(mods)) - {m} for m, t in mods.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if n.startswith(m + ".") or m.startswith(n + "."):  # a package and its own modules
                continue
            assert state.get(n) != 1, f"import circle: {' → '.join([*path, m, n])}"
            if n not in state:
                visit(n, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_the_study_layer_starts_without_torch_or_the_training_side():
    code = (
        "import sys, gradexp.study.report, gradexp.study.board, gradexp.study.table, "
        "gradexp.study.figures, gradexp.report, gradexp.board\n"
        "bad = [m for m in sys.modules if m == 'torch' or m in "
        "('gradexp.run', 'gradexp.train', 'gradexp.build', 'gradexp.record.history')]\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_only_the_composition_root_reads_the_config():
    readers = {m for m, t in modules().items() if "omegaconf" in imports_any(t)}
    assert readers <= READS_CONFIG, readers - READS_CONFIG


def imports_any(tree: ast.Module) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_files_and_functions_stay_short():
    """design.md §3: files of about 150 lines (split past 250), functions of about 40."""
    long = []
    for file in [*PACKAGE.rglob("*.py"), *(ROOT / "hydra_plugins").rglob("*.py")]:
        text = file.read_text()
        if len(text.splitlines()) > 250:
            long.append(f"{file.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = node.end_lineno - node.lineno + 1
                if size > 70:
                    long.append(f"{file.name}:{node.lineno} {node.name}() {size} lines")
    assert not long, long
