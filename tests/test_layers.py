"""The library's layers: no import cycle among lrbook's modules, and one vocabulary."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lrbook"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """lrbook modules that `path` imports anywhere in its code (module level or inside functions)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lrbook")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("lrbook"):
                for alias in node.names:  # `from . import corruptions` names a module
                    found.add(f"{base}.{alias.name}" if (PACKAGE.parent / f"{base}.{alias.name}".replace(".", "/")).with_suffix(".py").exists() else base)
    return found - {name}


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    names = {module_name(p) for p in files}
    return {module_name(p): {m for m in imports_of(p) if m in names} for p in files}


def find_cycle(graph):
    """One import cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_data_layer_has_no_import_cycle():
    """Configuration checks dataset names against the vocabulary; it never imports the builders, and
    the builders share `lrbook.data.base` rather than importing one another's private helpers."""
    graph = import_graph()
    assert "lrbook.data" not in graph["lrbook.config"] and "lrbook.vocabulary" in graph["lrbook.config"]
    assert find_cycle({m: graph[m] for m in graph if m.startswith("lrbook.data") or m in
                       ("lrbook.config", "lrbook.vocabulary")}) is None


def test_the_analysis_and_page_layers_have_no_import_cycle():
    layers = ("vocabulary", "paper", "stats", "selection", "compare", "prose", "tables", "theory", "mechanism",
              "plots", "mechanism_plots", "figures", "book", "status")
    graph = import_graph()
    sub = {f"lrbook.{m}": graph[f"lrbook.{m}"] for m in layers}
    assert find_cycle(sub) is None


@pytest.mark.parametrize("module", ["lrbook.config", "lrbook.data", "lrbook.data.cifar", "lrbook.figures",
                                    "lrbook.status"])
def test_each_module_imports_on_its_own(module):
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)


def test_the_vocabulary_names_every_dataset_the_presets_and_builders_know():
    from lrbook.config import DATASET_PRESETS, FCN_PRESETS
    from lrbook.data import builder
    from lrbook.paper import table_s1
    from lrbook.vocabulary import DATASETS, PAPER_CELLS, cell_title

    assert set(DATASET_PRESETS) == set(FCN_PRESETS) == set(DATASETS)
    assert all(callable(builder(d)) for d in DATASETS)
    assert {cell_title(*c) for c in PAPER_CELLS} <= {f"{d} / {m}" for d, m in zip(table_s1().dataset, table_s1().model)}
