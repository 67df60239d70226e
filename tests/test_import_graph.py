"""The import graph, lazy imports included: no module imports itself back through others, and
the lowest modules (config, registry, artifacts and what they stand on) import no capability.
A circle means two modules are one module in two files; an upward arrow means the core can't
be used, tested or read without the capability it names."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Where each installed package lives in the repository (see pyproject's package-dir).
PACKAGES = {
    "lmfast": REPO / "lmfast",
    "lmfast.agents": REPO / "agents",
    "lmfast.guardrails": REPO / "guardrails",
    "lmfast.mcp_server": REPO / "mcp_server",
}
CAPABILITIES = tuple(
    f"lmfast.{p}."
    for p in (
        "agents", "alignment", "cli", "data", "distillation", "evaluation", "export",
        "guardrails", "inference", "jobs", "mcp_server", "observability", "serving", "training",
    )
)  # fmt: skip
CORE = ("lmfast.config", "lmfast.registry", "lmfast.artifacts")


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for file in folder.rglob("*.py"):
            parts = list(file.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = file
    return found


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of imports under `if TYPE_CHECKING:` (never run)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            lines |= {n.lineno for n in ast.walk(node) if hasattr(n, "lineno")}
    return lines


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, file in modules.items():
        tree = ast.parse(file.read_text(encoding="utf-8"))
        skip = _type_checking_only(tree)
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    graph[name].add(target if target in modules else node.module)
            elif isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names}
        graph[name] = {t for t in graph[name] if t in modules and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_circles_are_found() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back() -> None:
    graph = import_graph()
    assert len(graph) > 100
    assert circles(graph) == []


def test_no_sub_package_imports_itself_back() -> None:
    """Package level: e.g. evaluation used training's tracking while training uses
    evaluation; tracking now lives in observability."""
    packages: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        packages.setdefault(_package(module), set()).update(
            _package(t) for t in targets if _package(t) != _package(module)
        )
    assert circles(packages) == []


def _package(module: str) -> str:
    """lmfast.training.finetune -> lmfast.training; core modules stand for themselves."""
    return ".".join(module.split(".")[:2])


def test_the_core_imports_no_capability() -> None:
    graph = import_graph()
    reach: set[str] = set()
    todo = list(CORE)
    while todo:  # everything the core stands on, transitively
        module = todo.pop()
        if module not in reach:
            reach.add(module)
            todo.extend(graph[module])
    assert sorted(m for m in reach if m.startswith(CAPABILITIES)) == []


def test_the_rust_core_has_no_circles() -> None:
    import re

    src = REPO / "native" / "src"
    modules = {f.stem for f in src.glob("*.rs")}
    graph = {
        f.stem: {
            m
            for m in re.findall(r"crate::(\w+)", f.read_text(encoding="utf-8"))
            if m in modules and m != f.stem
        }
        for f in src.glob("*.rs")
    }
    graph.pop("lib", None)  # the crate root declares every module
    graph = {m: deps - {"lib"} for m, deps in graph.items()}
    assert len(graph) > 5
    assert circles(graph) == []
