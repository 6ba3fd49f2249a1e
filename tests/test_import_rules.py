"""The one-way doors between ragbit's rooms, checked from the source (ast), not by importing anything.

Rules (see README "Layout"):
1. `generator` and `indexes` never import `ragbit`, nor each other;
2. nothing inside `ragbit` imports `ragbit.cli`, except the CLI itself and the console script (`ragbit.launcher`);
3. the readers of an index (`ragbit.search.*`, `ragbit.symbols.*`) never import its writer (`ragbit.indexing.indexer`), directly or
   through other ragbit modules.
Every import counts: module level or inside a function, `import x`, `from x import y`, relative imports, and
`importlib.import_module("x")` with a literal name.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ragbit", "generator", "indexes")
FOREIGN = {"generator": ("ragbit", "indexes"), "indexes": ("ragbit", "generator")}
CLI, CLI_USERS = "ragbit.cli", ("ragbit.cli", "ragbit.launcher")
READERS, WRITER = ("ragbit.search", "ragbit.symbols"), "ragbit.indexing.indexer"


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, is_package: bool) -> tuple[set[str], set[str]]:
    """(modules `source`, the code of `module`, imports; names that are modules if such a file exists):
    `from a import b` imports a, and a.b when b is a module."""
    found: set[str] = set()
    maybe: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            maybe.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "import_module" and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            found.add(node.args[0].value)
    return {m for m in found if m}, maybe


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the first-party modules it imports, for every .py file of the three packages under `root`."""
    files = {module_name(root, p): p for pkg in PACKAGES if (root / pkg).is_dir() for p in (root / pkg).rglob("*.py")}
    graph = {}
    for module, path in files.items():
        names, maybe = imports_of(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
        names |= maybe & files.keys()
        graph[module] = {n for n in names if n.split(".")[0] in PACKAGES}
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Modules reachable from `start` through first-party imports -> the module that imports each."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        current = todo.pop()
        for target in graph.get(current, ()):
            if target not in seen and target != start:
                seen[target] = current
                todo.append(target)
    return seen


def violations(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, targets in sorted(graph.items()):
        top = module.split(".")[0]
        for target in sorted(targets):
            if any(_within(target, pkg) for pkg in FOREIGN.get(top, ())):
                problems.append(f"{module} imports {target}: {top} never imports {', '.join(FOREIGN[top])}")
            if top == "ragbit" and _within(target, CLI) and not any(_within(module, u) for u in CLI_USERS):
                problems.append(f"{module} imports {target}: nothing inside ragbit imports the CLI")
        if any(_within(module, reader) for reader in READERS):
            via = _reachable(graph, module)
            for target, importer in sorted(via.items()):
                if _within(target, WRITER):
                    problems.append(f"{module} reaches {target} (imported by {importer}): "
                                    "a reader of the index never imports its writer")
    return problems


def test_the_code_keeps_the_import_rules():
    graph = import_graph(ROOT)
    assert "ragbit.search.searcher" in graph and "generator.model" in graph and "indexes.store" in graph
    assert violations(graph) == []


def test_each_rule_catches_a_violation(tmp_path):
    files = {
        "generator/__init__.py": "",
        "generator/bad.py": "def f():\n    from ragbit.config import RagbitConfig\n",       # inside a function
        "generator/worse.py": "import indexes.store\n",
        "indexes/__init__.py": "",
        "indexes/bad.py": "import importlib\nimportlib.import_module('generator.model')\n",
        "ragbit/__init__.py": "",
        "ragbit/cli/__init__.py": "from ragbit.search import searcher\n",                  # allowed direction
        "ragbit/launcher.py": "from ragbit.cli import main\n",                              # allowed user of the CLI
        "ragbit/pipeline/__init__.py": "",
        "ragbit/pipeline/bad.py": "from ragbit import cli\n",
        "ragbit/indexing/__init__.py": "",
        "ragbit/indexing/indexer.py": "",
        "ragbit/helper.py": "from .indexing import indexer\n",                              # relative
        "ragbit/search/__init__.py": "",
        "ragbit/search/searcher.py": "from ragbit import helper\n",                         # reaches the writer
    }
    for name, code in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(code)
    problems = violations(import_graph(tmp_path))
    joined = "\n".join(problems)
    assert "generator.bad imports ragbit.config" in joined
    assert "generator.worse imports indexes.store" in joined
    assert "indexes.bad imports generator.model" in joined
    assert "ragbit.pipeline.bad imports ragbit.cli" in joined
    assert "ragbit.search.searcher reaches ragbit.indexing.indexer (imported by ragbit.helper)" in joined
    assert not any(p.startswith(("ragbit.launcher", "ragbit.cli ")) for p in problems)
    assert len(problems) == 5, problems
