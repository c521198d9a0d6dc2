"""The package's imports run one way: no module of pipelines/ imports, at top level or inside a function, a module
that imports it back (directly or through others). `lint-imports` (pyproject.toml) checks the layers as well."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def import_graph() -> dict[str, set[str]]:
    """pipelines module -> the pipelines modules it imports anywhere in its file (ast, nothing imported)."""
    files = {}
    for path in (REPO / "pipelines").rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                imported.update([base, *(f"{base}.{alias.name}" for alias in node.names)])
        graph[module] = {name for name in imported if name in files and name != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done, path = set(), []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return None
        path.append(module)
        for imported in sorted(graph[module]):
            cycle = visit(imported)
            if cycle:
                return cycle
        path.pop()
        done.add(module)
        return None

    return next((cycle for module in sorted(graph) if (cycle := visit(module))), None)


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_in_pipelines():
    graph = import_graph()
    assert "pipelines.study_spec" in graph["pipelines.study_jobs"]  # the graph sees the imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_reading_a_runs_task_imports_no_training_code():
    """The model card, predict.py and the reports ask a run's task; that must not import the run sequence."""
    code = (
        "import sys; from pipelines import model_card; "
        "from pipelines.task_definitions.base import find_task, task_of_run; "
        "find_task('mnli'), find_task('sst2'), task_of_run({'task': 'qa'}); "
        "print(sorted(m for m in ('pipelines.run', 'pipelines.training', 'pipelines.tasks.mnli') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
