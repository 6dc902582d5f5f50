"""No import cycle inside audit/: the graph of every import (module level and inside functions), read with `ast`.

A function-level import is an edge too: it hides a cycle from the interpreter, not from a reader, and the two
modules still cannot be understood (or split) one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "audit"

def modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _known(name: str, mods: dict[str, Path]) -> str | None:
    """The module of audit/ that importing `name` loads (the longest known prefix), or None (not ours)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _lazy_facade(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """An import inside a package __init__'s module-level `__getattr__` (PEP 562): it runs only when the
    attribute is asked for, after the package has loaded."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            return True
    return False


def _type_checking_only(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return True
    return False


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        out: set[str] = set()
        for node in ast.walk(tree):
            if path.name == "__init__.py" and _lazy_facade(node, parents):
                continue
            if _type_checking_only(node, parents):  # `if TYPE_CHECKING:` imports never run
                continue
            if isinstance(node, ast.Import):
                out.update(m for a in node.names if (m := _known(a.name, mods)))
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # from . import x, from ..render import y
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for a in node.names:  # `from audit import stats` imports the module audit.stats
                    target = f"{source}.{a.name}"
                    m = target if target in mods else _known(source, mods)
                    if m:
                        out.add(m)
        out.discard(name)
        graph[name] = out
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_reads_every_form_of_import():
    g = import_graph()
    assert "audit.checks" in g["audit.policy"]  # inside a function: from audit.checks import all_checks
    assert "audit.stats" in g["audit.checks.performance"]  # from audit import stats (a module)
    assert "audit.checks" in g["audit.checks.performance"]  # from audit.checks import check (a name)
    assert "audit.trainsetup" in g["audit.demo"]  # an import inside a function
    assert "audit.trainsetup" in g["audit.cli"]  # module level


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_package_init_imports_nothing_of_its_own_at_module_level():
    """The façade rule above (lazy __getattr__ imports are left out) holds only while audit/__init__.py imports
    no module of the package when it loads: every module reading audit.__version__ would otherwise cycle."""
    tree = ast.parse((ROOT / "__init__.py").read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert top == []


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_ledger_and_publication_share_files_not_each_other():
    """The cycle that was allowed here (ledger.check_ledger called publish.recover, and publish read and wrote
    the ledger) is gone: the recovery of an interrupted publication is audit.recovery, and the files both read
    are audit.rootfiles; publication depends on the ledger, never the other way round."""
    g = import_graph()
    assert "audit.publish" not in g["audit.ledger"]
    assert "audit.ledger" in g["audit.publish"]
    assert g["audit.recovery"] & {"audit.ledger", "audit.publish"} == set()
    assert "audit.recovery" in g["audit.ledger"] and "audit.rootfiles" in g["audit.recovery"]
