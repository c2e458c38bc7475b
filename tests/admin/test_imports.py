"""The package's import structure: no cycles, and cheap modules stay cheap.

The graph is read from the source (``ast``), counting every import a module makes —
at the top, inside functions and under ``TYPE_CHECKING`` alike: a lazy or type-only
import that closes a cycle is still two modules that cannot be understood apart.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import hokusai

SRC = Path(hokusai.__file__).parent
PACKAGE = "hokusai"

# The application layer and the modules made for it: none may sit on a cycle.
LAYER = {
    "hokusai.errors",
    "hokusai.durations",
    "hokusai.audit_store",
    "hokusai.audit_records",
    "hokusai.timestamps",
    "hokusai.keys.records",
    "hokusai.cli.errors",
    "hokusai.webhooks.records",
    "hokusai.admin",
    "hokusai.admin.actor",
    "hokusai.authorization",
    "hokusai.admin.transaction",
    "hokusai.admin.keys",
    "hokusai.admin.webhooks",
    "hokusai.admin.audit",
    "hokusai.admin.services",
}

# The command that runs the gateway itself (`hokusai serve`) and the entry point that
# registers it. Every other CLI module (keys, webhooks, audit, gc, worker, ...) calls the
# services or a remote gateway, never the gateway.
CLI_REACHING_GATEWAY = {"hokusai.cli.main", "hokusai.cli.serve"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in SRC.rglob("*.py")}


@cache
def graph() -> dict[str, frozenset[str]]:
    """Each module of the package → the package's modules it imports."""
    known = modules()
    edges: dict[str, frozenset[str]] = {}
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")
                    anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                    base = ".".join([*anchor, base] if base else anchor)
                # ``from pkg import sub`` imports the submodule when there is one.
                subs = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known}
                found.update(subs or {base})
        edges[name] = frozenset(m for m in found if m in known and m != name)
    return edges


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph()[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def cycles(edges: Mapping[str, frozenset[str]] | None = None) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan): the modules that
    import each other, directly or through one another, each group sorted."""
    edges = graph() if edges is None else edges
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(sorted(group) for group in groups)


def describe(groups: list[list[str]]) -> str:
    """Each group's members and one concrete cycle through it, a line each."""
    return "\n".join(
        f"{' ↔ '.join(group)}   e.g. {' → '.join(one_cycle(set(group)))}" for group in groups
    )


def one_cycle(group: set[str]) -> list[str]:
    start = min(group)
    paths = {start: [start]}
    todo = [start]
    while todo:
        node = todo.pop(0)
        for target in sorted(graph()[node] & group):
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                todo.append(target)
    raise AssertionError(f"{sorted(group)} is not strongly connected")


def test_the_graph_sees_the_package() -> None:
    edges = graph()
    assert "hokusai.admin.keys" in edges and "hokusai" in edges
    # ``from hokusai.keys import store`` is an import of the submodule.
    assert "hokusai.keys.store" in edges["hokusai.admin.keys"]
    assert "hokusai.audit_store" in edges["hokusai.admin.transaction"]


def test_the_cycle_finder_finds_every_cycle() -> None:
    edges = {
        "a": frozenset({"b"}),
        "b": frozenset({"c"}),
        "c": frozenset({"a", "d"}),
        "d": frozenset(),
        "e": frozenset({"f", "a"}),
        "f": frozenset({"e"}),
    }
    assert cycles(edges) == [["a", "b", "c"], ["e", "f"]]
    assert cycles({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_the_package_has_no_import_cycles() -> None:
    assert cycles() == [], "import cycles:\n" + describe(cycles())


def test_no_cycle_passes_through_the_application_layer() -> None:
    assert set(modules()) >= LAYER, sorted(LAYER - set(modules()))
    touching = [c for c in cycles() if LAYER & set(c)]
    assert touching == [], describe(touching)


def test_the_application_layer_never_imports_a_front_end() -> None:
    for name in LAYER - {"hokusai.cli.errors"}:
        front = {m for m in reachable(name) if m.startswith(("hokusai.gateway", "hokusai.cli"))}
        assert front == set(), f"{name} reaches {sorted(front)}"


def test_no_cli_module_reaches_the_gateway() -> None:
    cli = [m for m in modules() if m.startswith("hokusai.cli.")]
    offenders = {m for m in cli if any(r.startswith("hokusai.gateway") for r in reachable(m))}
    assert "hokusai.cli.errors" not in offenders
    assert offenders <= CLI_REACHING_GATEWAY, sorted(offenders - CLI_REACHING_GATEWAY)


def loaded_by(*names: str) -> list[str]:
    """Every module that importing ``names`` in a fresh interpreter loads."""
    code = f"import json, sys\nimport {', '.join(names)}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(json.loads(done.stdout))


def test_errors_and_durations_load_no_framework_or_driver() -> None:
    """Imported for real in a fresh interpreter: what the SDK and CLI pay for them."""
    heavy = [
        m
        for m in loaded_by("hokusai.errors", "hokusai.durations", "hokusai.cli.errors")
        if m.split(".")[0] in {"sqlalchemy", "fastapi", "starlette", "mlflow", "alembic"}
        or m.startswith(("hokusai.gateway", "hokusai.db", "hokusai.keys", "hokusai.admin"))
    ]
    assert heavy == []


def test_the_records_load_no_framework_or_driver() -> None:
    """What the CLI's remote services return, on the base install: the records (and the
    actor they are called with) import no server package and no store."""
    records = ("hokusai.keys.records", "hokusai.audit_records", "hokusai.webhooks.records")
    light = ("hokusai.timestamps", "hokusai.admin.actor", "hokusai.cli.console")
    heavy = [
        m
        for m in loaded_by(*records, *light)
        if m.split(".")[0] in {"sqlalchemy", "fastapi", "starlette", "mlflow", "pydantic"}
        or m.startswith(("hokusai.gateway", "hokusai.db", "hokusai.settings"))
        or m in {"hokusai.keys.store", "hokusai.keys.service", "hokusai.audit_store"}
    ]
    assert heavy == []
