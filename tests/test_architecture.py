"""The package's folders are its architecture: no import circle; each folder imports what its rule allows.

Imports are read from the source, function-level ones included (a lazy import counts like any other);
imports under ``if TYPE_CHECKING:`` count too, since a type is a dependency.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "gliclass_pipelines"
NAME = PACKAGE.name

BASE = {"_common", "errors"}
ALLOWED = {  # folder -> the package folders (and top-level modules) it may import besides itself
    "_common": {"errors"},  # the base layer: the standard library only
    "errors": set(),
    "taxonomy": BASE,
    "model": BASE | {"taxonomy"},
    "core": BASE | {"taxonomy", "model"},
    "io": BASE | {"taxonomy", "model", "core"},
    "testing": BASE | {"taxonomy", "model", "core"},
    "quality": BASE | {"taxonomy", "model", "core", "io"},
    "spark": BASE | {"taxonomy", "model", "core", "io", "quality"},
    "beam": BASE | {"taxonomy", "model", "core", "io", "quality"},
    "ray_data": BASE | {"taxonomy", "model", "core", "io"},
    "mlflow_flavor": BASE | {"taxonomy", "model", "core", "io"},
    "spark_ml": {"spark"},  # where saved PipelineModels find the stage
    "cli": BASE | {"taxonomy", "model", "core", "io", "quality", "spark", "beam", "testing"},
    "__init__": BASE | {"taxonomy", "core"},
}
# Known debt, listed so that nothing new joins it (issue 21): the CLI's Spark and Beam runners still build
# their engine jobs themselves, and the MLflow flavor's Spark helper parses JSON columns with pyspark.
SDK_DEBT = {
    "gliclass_pipelines.cli.run_spark",
    "gliclass_pipelines.cli.run_beam",
    "gliclass_pipelines.mlflow_flavor",
}
LENGTH_DEBT: set[str] = set()  # functions allowed over the length limit: none left
ENGINE_SDKS = {"pyspark": "spark", "apache_beam": "beam", "ray": "ray_data", "mlflow": "mlflow_flavor"}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: pathlib.Path) -> set[str]:
    """Each absolute module name ``path`` imports; ``from pkg import name`` also counts ``pkg.name``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def package_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()
    }


def folder(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def parent_packages(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_no_import_circle():
    graph = package_graph()
    # a package's __init__ that re-exports its own modules is not a circle with them
    trimmed = {m: {d for d in deps if m not in parent_packages(d)} for m, deps in graph.items()}
    assert circles(trimmed) == []


def test_each_folder_imports_only_what_its_rule_allows():
    broken = [
        f"{module} imports {dep}"
        for module, deps in package_graph().items()
        for dep in deps
        if folder(dep) != folder(module) and folder(dep) not in ALLOWED[folder(module)] and dep != NAME
    ]
    assert broken == []


@pytest.mark.parametrize("sdk", sorted(ENGINE_SDKS))
def test_an_engine_sdk_is_imported_only_by_its_adapter(sdk):
    importers = sorted(
        module_name(p)
        for p in PACKAGE.rglob("*.py")
        if any(m == sdk or m.startswith(sdk + ".") for m in imports_of(p))
        and folder(module_name(p)) != ENGINE_SDKS[sdk]
        and module_name(p) not in SDK_DEBT
    )
    assert importers == []


def test_the_checker_sees_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def test_no_module_over_400_lines():
    long = {
        module_name(p): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's lines, its docstring not counted."""
    first = node.body[0]
    skip = first.end_lineno - first.lineno + 1 if isinstance(first, ast.Expr) and isinstance(
        first.value, ast.Constant) and isinstance(first.value.value, str) else 0  # fmt: skip
    return node.end_lineno - node.lineno + 1 - skip


def test_no_function_over_60_lines():
    long = {
        f"{module_name(p)}.{node.name}": body_lines(node)
        for p in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and body_lines(node) > MAX_FUNCTION_LINES
    }
    long = {name: n for name, n in long.items() if name not in LENGTH_DEBT}
    assert long == {}
