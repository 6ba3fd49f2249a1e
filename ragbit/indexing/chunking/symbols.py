"""The symbols of one file, from the parse its chunks were cut from: every definition and, for Python, imports.

Why from the chunker's parse: tree-sitter already found every definition (with its name, keyword, line range
and header) to cut the file at; the symbol table records them instead of parsing the file a second time. Only
Python adds one tree-sitter query over the same tree, for what is not a definition node but still a name an
answer can use: imports (what a name stands for, and which names come from dependencies), module constants,
class attributes and `self.x = ...` attributes.

A file's record is plain JSON-able data (`ragbit/symbols/table.py` stores and reads it):

    {"module": "ragbit.search.searcher",          # Python only: the dotted module its path stands for
     "symbols": [[qualname, kind, start_line, end_line, signature], ...],   # 1-based lines, qualname in-file
     "imports": [[alias, target], ...]}           # Python only: "np" -> "numpy", "Hit" -> "ragbit.search.searcher.Hit"
"""
from __future__ import annotations

from functools import lru_cache

from ragbit.indexing.chunking.syntax import Definition

CALLABLE = {"def", "fn", "func", "fun", "function", "method", "constructor", "init", "macro_rules!"}
TYPES = {"class", "struct", "interface", "enum", "record", "trait", "union", "protocol", "object",
         "@interface", "companion object", "type", "extension"}
MODULES = {"module", "namespace", "mod"}

_PYTHON_QUERY = """
(import_statement) @import
(import_from_statement) @import
(module (assignment left: (identifier) @module_var))
(class_definition body: (block (assignment left: (identifier) @class_var)))
(assignment left: (attribute object: (identifier) @self attribute: (identifier) @self_attr) (#eq? @self "self"))
"""


def python_module(path: str) -> str:
    """"a/b/c.py" -> "a.b.c", "a/b/__init__.py" -> "a.b" (the import path the file stands for from the root)."""
    stem = path.rsplit(".", 1)[0] if path.endswith((".py", ".pyi", ".pyw")) else path
    parts = stem.split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(p for p in parts if p)


def file_symbols(path: str, language: str, definitions: list[Definition], tree, source: bytes) -> dict:
    """The record of one parsed file (see the module docstring)."""
    symbols: list[list] = []
    _walk(definitions, "", False, symbols)
    record = {"module": "", "symbols": symbols, "imports": []}
    if language == "python":
        record["module"] = python_module(path)
        _python_extras(tree, source, record, path.rsplit("/", 1)[-1].startswith("__init__."))
        symbols.sort(key=lambda s: (s[2], s[0]))
    return record


def _kind(keyword: str, in_type: bool) -> str:
    if keyword in CALLABLE:
        return "method" if in_type else "function"
    if keyword in TYPES:
        return "class"
    if keyword in MODULES:
        return "module"
    if keyword == "impl":
        return "impl"
    return keyword or "definition"


def _walk(definitions: list[Definition], prefix: str, in_type: bool, out: list[list]) -> None:
    for d in definitions:
        if not d.name:
            _walk(d.children, prefix, in_type, out)
            continue
        owner = d.owner + "." if d.owner else ""
        qualname = f"{prefix}{owner}{d.name}"
        kind = _kind(d.keyword, in_type or bool(d.owner))
        out.append([qualname, kind, d.line + 1, d.end + 1, d.signature])
        _walk(d.children, qualname + ".", kind in ("class", "impl"), out)


@lru_cache(maxsize=None)
def _query(language: str):
    from tree_sitter import Query
    from tree_sitter_language_pack import get_language
    return Query(get_language(language), _PYTHON_QUERY)


def _python_extras(tree, source: bytes, record: dict, is_package: bool) -> None:
    from tree_sitter import QueryCursor
    # captures come back in no fixed order: sorted by position, a file's record is the same on every run
    captures = {name: sorted(nodes, key=lambda n: n.start_byte)
                for name, nodes in QueryCursor(_query("python")).captures(tree.root_node).items()}
    text = lambda node: source[node.start_byte:node.end_byte].decode("utf-8", "replace")   # noqa: E731
    module = record["module"]
    for node in captures.get("import", []):
        record["imports"].extend(_imports(node, text, module, is_package))
    symbols = record["symbols"]
    known = {s[0] for s in symbols}
    classes = [(s[2] - 1, s[3] - 1, s[0]) for s in symbols if s[1] == "class"]

    def add(name: str, kind: str, node) -> None:
        if name not in known:
            known.add(name)
            row = node.start_point[0]
            line = source[node.start_byte:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
            symbols.append([name, kind, row + 1, node.end_point[0] + 1, line[:240]])

    for node in captures.get("module_var", []):
        add(text(node), "constant" if text(node).isupper() else "variable", node)
    for node in captures.get("class_var", []):
        owner = _innermost(classes, node.start_point[0])
        if owner:
            add(f"{owner}.{text(node)}", "attribute", node)
    for node in captures.get("self_attr", []):
        owner = _innermost(classes, node.start_point[0])
        if owner:
            add(f"{owner}.{text(node)}", "attribute", node)


def _innermost(classes: list[tuple[int, int, str]], row: int) -> str:
    """Qualified name of the innermost class whose lines hold `row`, else ""."""
    best = ""
    best_size = None
    for start, end, name in classes:
        if start <= row <= end and (best_size is None or end - start < best_size):
            best, best_size = name, end - start
    return best


def _imports(node, text, module: str, is_package: bool) -> list[list[str]]:
    """[alias, target] pairs of one import statement, relative imports resolved against `module`."""
    out = []
    if node.type == "import_statement":
        for name in node.named_children:
            if name.type == "aliased_import":
                out.append([text(name.child_by_field_name("alias")), text(name.child_by_field_name("name"))])
            else:
                dotted = text(name)
                out.append([dotted.split(".")[0], dotted.split(".")[0]])
        return out
    source_node = node.child_by_field_name("module_name")
    source = text(source_node) if source_node is not None else ""
    if source.startswith("."):
        level = len(source) - len(source.lstrip("."))
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - (level - 1)] if level > 1 else package
        rest = source.lstrip(".")
        source = ".".join(package + ([rest] if rest else []))
    for name in node.children_by_field_name("name"):
        if name.type == "aliased_import":
            alias, target = text(name.child_by_field_name("alias")), text(name.child_by_field_name("name"))
        else:
            alias = target = text(name)
        out.append([alias, f"{source}.{target}" if source else target])
    if any(c.type == "wildcard_import" for c in node.named_children):
        out.append(["*", source])
    return out
