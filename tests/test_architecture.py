"""The package's boundaries are contracts, not comments: import-linter's contracts (pyproject.toml) hold, a
deliberate violation fails them, no module imports itself back through others, and no file is too long."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "hpsearch"


def lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(pythonpath)}
    return subprocess.run([*command, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_contracts_hold() -> None:
    result = lint_imports(REPO, REPO / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("control/coordinator.py", "import keras", "hpsearch.control is not allowed to import keras"),
        ("execution/worker.py", "import hpsearch.strategies.samplers", "hpsearch.execution is not allowed to import"),
        ("store/db.py", "import hpsearch.control.coordinator", "hpsearch.store is not allowed to import"),
        ("control/studies.py", "import hpsearch.api", "hpsearch.control is not allowed to import hpsearch.api"),
    ],
)
def test_a_deliberate_violation_fails(tmp_path: Path, module: str, line: str, broken: str) -> None:
    # A copy of the package with one forbidden import inside a function (lazy imports count too).
    shutil.copytree(PACKAGE, tmp_path / "src" / "hpsearch", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "src" / "hpsearch" / module
    target.write_text(target.read_text() + f"\n\ndef _violation() -> None:\n    {line}  # noqa\n")
    result = lint_imports(tmp_path, tmp_path / "src")
    assert result.returncode == 1, result.stdout
    assert broken in result.stdout


def test_no_import_cycle() -> None:
    graph = grimp.build_graph("hpsearch", cache_dir=None, exclude_type_checking_imports=True)
    modules = sorted(graph.modules)
    cycles = [c for c in _strongly_connected(modules, graph.find_modules_directly_imported_by) if len(c) > 1]
    # A package's __init__ re-exporting its own submodules is not a cycle between concerns.
    cycles = [c for c in cycles if not _only_package_reexports(c)]
    assert cycles == []


def test_no_source_file_over_500_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500
    }
    assert long == {}


def _only_package_reexports(cycle: list[str]) -> bool:
    packages = [m for m in cycle if (PACKAGE.parent / m.replace(".", "/") / "__init__.py").exists()]
    return bool(packages) and all(any(m.startswith(p + ".") or m == p for p in packages) for m in cycle)


def _strongly_connected(nodes: list[str], edges_of: object) -> list[list[str]]:
    """Tarjan's algorithm, iteratively (the import graph is deep enough to hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = []
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work.append((root, sorted(e for e in edges_of(root) if e.startswith("hpsearch"))))  # type: ignore[operator]
        while work:
            node, pending = work[-1]
            if pending:
                child = pending.pop()
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    children = sorted(e for e in edges_of(child) if e.startswith("hpsearch"))  # type: ignore[operator]
                    work.append((child, children))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def test_importing_the_worker_loads_no_algorithm_and_no_framework() -> None:
    code = (
        "import sys, hpsearch.execution.worker, hpsearch.control.coordinator\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'optuna', 'torch')"
        " or m in ('hpsearch.strategies.samplers', 'hpsearch.strategies.schedulers'))\n"
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    # The coordinator imports the strategies (it plans); neither imports keras, tensorflow, optuna or torch
    # until a model-based sampler first plans.
    loaded = set(filter(None, result.stdout.strip().split(",")))
    assert loaded <= {"hpsearch.strategies.samplers", "hpsearch.strategies.schedulers"}
    worker_only = subprocess.run(
        [sys.executable, "-c", code.replace(", hpsearch.control.coordinator", "")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert worker_only.stdout.strip() == ""
