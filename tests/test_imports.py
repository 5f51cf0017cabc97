"""The package's import graph, read with ``ast`` (nothing is imported): no cycles, one direction.

Counts module-level and function-level imports alike. ``from tlkit.pkg import name`` is an edge
to ``tlkit.pkg.name`` when that is a module, else to the package ``tlkit.pkg`` itself; the
implicit import of a parent package's ``__init__`` is not counted (every package would
otherwise "import" its own submodules).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "tlkit"

#: Units of the layering, lowest first: a unit imports only units of a lower rank.
#: ``data``, ``augment`` and ``freeze`` share a rank, so none of them imports another; the data
#: pipeline and augmentation share ``tlkit.imageops`` instead. ``evaluation`` (loading, scoring,
#: methods, figures, tables, the page) stands on the data and the models only, below ``train``,
#: whose hooks write ``history.csv`` with its tables.
RANKS = {
    "tlkit": 0,
    "tlkit.errors": 0,
    "tlkit.io": 0,
    "tlkit.interrupts": 0,
    "tlkit.section": 0,
    "tlkit.layers": 0,
    "tlkit.imageops": 0,
    "tlkit.runtime": 0,
    "tlkit.torchfile": 1,
    "tlkit.rundir": 1,
    "tlkit.contract": 2,
    "tlkit.weights": 2,
    "tlkit.models": 3,
    "tlkit.data": 4,
    "tlkit.augment": 4,
    "tlkit.freeze": 4,
    "tlkit.evaluation": 5,
    "tlkit.train": 6,
    "tlkit.recipes": 7,
    "tlkit.finetune": 8,
    "tlkit.export": 8,
    "tlkit.cli": 9,
}

#: Imports against the order, each with its reason.
UPWARD = {
    # `import tlkit` is enough to load any tlkit model file: the root registers tlkit's layers
    # (lazily, once Keras is imported), although everything else imports the root.
    ("tlkit", "tlkit.layers"),
}

#: Function-level imports of tlkit modules outside tlkit/cli, each with its reason: they keep
#: TensorFlow (or Keras) out of a light import. A new one needs a reason here.
#: (A registry entry names its builder ``"tlkit.models.vgg:VGG16"``, and ``tlkit.models`` its
#: Keras names so, each imported by ``tlkit.models.info.resolve`` when first used: the registry's
#: facts are read without Keras. tests/models/test_registry.py checks what entries name.)
LAZY_IMPORTS = {
    ("tlkit.data", "tlkit.data.pipeline"): "tlkit.data imports without TensorFlow",
    ("tlkit.data.images", "tlkit.imageops"): "reading an image file needs no TensorFlow",
    ("tlkit.recipes.loader", "tlkit.recipes.schema"): "`tlkit recipes list` reads YAML only",
    ("tlkit", "tlkit.layers"): "`import tlkit` registers its layers once Keras loads, not before",
    ("tlkit.export", "tlkit.export.run"): "`tlkit --help` lists `tlkit export` without TensorFlow",
    ("tlkit.weights", "tlkit.weights.loading"): "the registry's facts hold weight sources, no Keras",
    ("tlkit.contract", "tlkit.imageops"): "validating a recipe's preprocess needs no TensorFlow",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _targets(node, module: str) -> list[str]:
    """The tlkit modules an import statement names."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
            parents = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parents, *([node.module] if node.module else [])])
        names = []
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            names.append(sub if sub in MODULES else base)
    out = []
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name.startswith("tlkit") and name != module:
            out.append(name)
    return out


def _imports():
    """``[(module, target, function_level, lineno)]`` for every tlkit import, and every import
    of any module as ``(module, top-level name, lineno)``."""
    tlkit_edges, all_imports = [], []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Import):
                all_imports += [(module, a.name.split(".")[0], node.lineno) for a in node.names]
            elif not node.level and node.module:
                all_imports.append((module, node.module.split(".")[0], node.lineno))
            for target in _targets(node, module):
                tlkit_edges.append((module, target, id(node) not in top, node.lineno))
    return tlkit_edges, all_imports


EDGES, ALL_IMPORTS = _imports()


def _unit(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_checker_sees_the_imports():
    assert len(MODULES) > 50
    assert ("tlkit.finetune", "tlkit.train", False) in {e[:3] for e in EDGES}
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_modules():
    graph = defaultdict(set)
    for module, target, _, _ in EDGES:
        graph[module].add(target)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_no_import_cycle_between_packages():
    graph = defaultdict(set)
    for module, target, _, _ in EDGES:
        if _unit(module) != _unit(target):
            graph[_unit(module)].add(_unit(target))
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_packages_import_in_one_direction():
    assert set(RANKS) >= {_unit(m) for m in MODULES}, "a new package needs a rank in RANKS"
    wrong = sorted(
        f"{module}:{line} imports {target}"
        for module, target, _, line in EDGES
        if _unit(module) != _unit(target) and RANKS[_unit(target)] >= RANKS[_unit(module)]
        and (module, target) not in UPWARD
    )
    assert not wrong, "\n".join(wrong)


def test_function_level_imports_have_a_reason():
    lazy = {
        (module, target)
        for module, target, function_level, _ in EDGES
        if function_level and not module.startswith("tlkit.cli")
    }
    unexplained = sorted(lazy - set(LAZY_IMPORTS))
    assert not unexplained, f"function-level imports without a reason: {unexplained}"
    assert len(lazy) <= 12


def test_click_only_in_the_cli():
    bad = [f"{m}:{line}" for m, name, line in ALL_IMPORTS if name == "click"]
    assert not [b for b in bad if not b.startswith("tlkit.cli")], bad


def test_no_tensorflow_in_the_builders():
    """``tlkit.models`` and its custom layers use keras and keras.ops only (every backend)."""
    bad = [
        f"{m}:{line}"
        for m, name, line in ALL_IMPORTS
        if name == "tensorflow" and (m.startswith("tlkit.models") or m == "tlkit.layers")
    ]
    assert not bad, bad


def test_no_module_is_a_monolith():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 450}
    assert not long, long
