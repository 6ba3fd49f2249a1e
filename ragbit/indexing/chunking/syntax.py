"""Syntax-aware chunking with tree-sitter: split at definitions, recurse into the ones that are too big.

One generic algorithm driven by a per-language rule table (`DEFINITIONS`): which node types are definitions
and which keyword names them in a scope path ("class Indexer > def add", "impl Store for Disk > fn get").

    file lines ──► definitions tree (+ leading comments/decorators/attributes attached)
               ──► pieces: each definition that fits is one piece; one that does not is cut at its child
                   definitions (its header and trailing lines become pieces of their own), or by line windows
                   when it has none; code between definitions becomes pieces under the enclosing scope
               ──► assembly.assemble merges small neighbours and builds the chunks
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache

from ragbit.indexing.chunking.budget import Budget, Piece, join_scope
from ragbit.indexing.chunking.windows import span_pieces, split_windows

# ==================================================================================================================
# rule table: node type -> scope keyword (None: take it from the source, e.g. Kotlin class/interface)
# ==================================================================================================================

_C = {"function_definition": "function", "struct_specifier": "struct", "union_specifier": "union",
      "enum_specifier": "enum"}
_JS = {"function_declaration": "function", "generator_function_declaration": "function",
       "class_declaration": "class", "method_definition": "method"}
_TS = {**_JS, "abstract_class_declaration": "class", "interface_declaration": "interface",
       "enum_declaration": "enum", "type_alias_declaration": "type", "internal_module": "namespace",
       "module": "module"}

DEFINITIONS: dict[str, dict[str, str | None]] = {
    "python": {"function_definition": "def", "class_definition": "class"},
    "javascript": _JS,
    "typescript": _TS,
    "tsx": _TS,
    "go": {"function_declaration": "func", "method_declaration": "func", "type_declaration": "type"},
    "rust": {"function_item": "fn", "function_signature_item": "fn", "struct_item": "struct", "enum_item": "enum",
             "union_item": "union", "trait_item": "trait", "impl_item": "impl", "mod_item": "mod",
             "macro_definition": "macro_rules!"},
    "java": {"class_declaration": "class", "interface_declaration": "interface", "enum_declaration": "enum",
             "record_declaration": "record", "annotation_type_declaration": "@interface",
             "method_declaration": "method", "constructor_declaration": "constructor"},
    "c": _C,
    "cpp": {**_C, "class_specifier": "class", "namespace_definition": "namespace"},
    "ruby": {"method": "def", "singleton_method": "def", "class": "class", "module": "module",
             "singleton_class": "class"},
    "csharp": {"class_declaration": "class", "struct_declaration": "struct", "interface_declaration": "interface",
               "enum_declaration": "enum", "record_declaration": "record", "method_declaration": "method",
               "constructor_declaration": "constructor", "namespace_declaration": "namespace",
               "local_function_statement": "function"},
    "php": {"function_definition": "function", "method_declaration": "function", "class_declaration": "class",
            "interface_declaration": "interface", "trait_declaration": "trait", "enum_declaration": "enum"},
    "kotlin": {"class_declaration": None, "object_declaration": "object", "function_declaration": "fun",
               "companion_object": "companion object"},
    "swift": {"class_declaration": None, "protocol_declaration": "protocol", "function_declaration": "func",
              "protocol_function_declaration": "func", "init_declaration": "init"},
    "scala": {"class_definition": "class", "object_definition": "object", "trait_definition": "trait",
              "function_definition": "def", "enum_definition": "enum"},
}

# Nodes that wrap one definition and belong to its span (decorators, `template <...>`, `export`).
WRAPPERS = frozenset({"decorated_definition", "template_declaration", "export_statement"})
# C-family type specifiers are definitions only with a body (`struct foo {...}`, not `struct foo *p;`).
NEEDS_BODY = frozenset({"struct_specifier", "union_specifier", "enum_specifier", "class_specifier"})
# `const f = () => {...}` / `let C = class {...}` in JavaScript and TypeScript.
DECLARATIONS = frozenset({"lexical_declaration", "variable_declaration"})
FUNCTION_VALUES = {"arrow_function": "function", "function_expression": "function", "function": "function",
                   "generator_function": "function", "class": "class", "class_expression": "class"}
# Siblings directly above a definition that describe it: comments, Rust `#[...]`, Java/Kotlin annotations.
ATTACHABLE = frozenset({"attribute_item", "decorator", "annotation", "marker_annotation", "attribute_list"})

SYNTAX_LANGUAGES = frozenset(DEFINITIONS)
MAX_LABEL_CHARS = 80


@dataclass
class Definition:
    start: int                  # 0-based first row (including attached comments/decorators)
    end: int                    # 0-based last row
    label: str                  # "class Indexer", "fn get", "impl Store for Disk"
    children: list["Definition"] = field(default_factory=list)
    # for the symbol table (ragbit/indexing/chunking/symbols.py), read from the same parse:
    name: str = ""              # "get"; a Rust impl: its type ("Disk"); a Go method: the method name
    owner: str = ""             # a Go method's receiver type, a Ruby `def self.x`'s object: what qualifies it
    keyword: str = ""           # "def", "class", "fn", ... (the rule table's keyword)
    line: int = 0               # 0-based row of the definition itself (after its decorators and comments)
    signature: str = ""         # its header as written, whitespace collapsed: "def get(self, key) -> int"


@lru_cache(maxsize=None)
def _parser(language: str):
    from tree_sitter_language_pack import get_parser
    return get_parser(language)


# ==================================================================================================================
# definitions tree
# ==================================================================================================================

def parse(language: str, source: bytes):
    """The tree-sitter tree of a file (chunking and the symbol table share one parse)."""
    return _parser(language).parse(source)


def find_definitions(language: str, source: bytes, lines: list[str], tree=None) -> list[Definition]:
    """Top-level definitions of a file, each with its nested definitions. Raises on parser failure."""
    rules = DEFINITIONS[language]
    if tree is None:
        tree = parse(language, source)
    top: list[Definition] = []
    stack = [(tree.root_node, top)]          # iterative pre-order walk: deep expression trees can't overflow
    while stack:
        node, out = stack.pop()
        for child in reversed(node.named_children):
            inner = _definition_node(child, rules)
            if inner is None:
                if child.end_point[0] > child.start_point[0] and "comment" not in child.type \
                        and "string" not in child.type:
                    stack.append((child, out))
                continue
            label, name, owner = _label(inner, rules, language, source)
            d = Definition(_first_row(child, lines), _last_row(child), label, name=name, owner=owner,
                           keyword=_keyword(inner, rules, language), line=inner.start_point[0],
                           signature=_signature(inner, source))
            out.append(d)
            stack.append((_body_of(inner), d.children))
    # pre-order with a LIFO stack appends children in reverse document order: restore it
    def _sort(defs: list[Definition]) -> None:
        defs.sort(key=lambda d: (d.start, d.end))
        for d in defs:
            _sort(d.children)
    _sort(top)
    return top


def _definition_node(node, rules):
    """The definition node `node` stands for (itself, or the definition inside a wrapper), else None."""
    t = node.type
    if t in rules:
        if t in NEEDS_BODY and node.child_by_field_name("body") is None:
            return None
        return node
    if t in WRAPPERS:
        for c in node.named_children:
            inner = _definition_node(c, rules)
            if inner is not None:
                return inner
        return None
    if t in DECLARATIONS and "function_declaration" in rules and "method_definition" in rules:
        declarators = [c for c in node.named_children if c.type == "variable_declarator"]
        if len(declarators) == 1:
            value = declarators[0].child_by_field_name("value")
            if value is not None and value.type in FUNCTION_VALUES:
                return node
    return None


def _body_of(node):
    """Where nested definitions live (for `const f = () => {}` that is the function value)."""
    if node.type in DECLARATIONS:
        for c in node.named_children:
            if c.type == "variable_declarator":
                return c.child_by_field_name("value") or c
    return node


def _last_row(node) -> int:
    row, col = node.end_point
    return row - 1 if col == 0 and row > node.start_point[0] else row


def _first_row(node, lines: list[str]) -> int:
    """Start row, moved up over comments/attributes that sit directly above (no blank line, own line)."""
    row = node.start_point[0]
    prev = node.prev_named_sibling
    while prev is not None and ("comment" in prev.type or prev.type in ATTACHABLE):
        p_row, p_col = prev.start_point
        if _last_row(prev) < row - 1 or lines[p_row][:p_col].strip():
            break
        row = p_row
        prev = prev.prev_named_sibling
    return row


def _text(node, source: bytes) -> str:
    return re.sub(r"\s+", " ", source[node.start_byte:node.end_byte].decode("utf-8", "replace")).strip()


def _name(node, source: bytes) -> str:
    if node.type in DECLARATIONS:
        for c in node.named_children:
            if c.type == "variable_declarator":
                node = c
                break
    name = node.child_by_field_name("name")
    if name is not None:
        return _text(name, source)
    declarator = node.child_by_field_name("declarator")           # C/C++: int *(*f)(...) -> f
    if declarator is not None:
        while (inner := declarator.child_by_field_name("declarator")) is not None:
            declarator = inner
        return _text(declarator, source)
    if node.type == "type_declaration":                          # Go: type X struct {...}
        for c in node.named_children:
            if c.type in ("type_spec", "type_alias"):
                return _name(c, source)
    for c in node.named_children:
        if c.type.endswith("identifier") or c.type in ("constant", "name", "user_type"):
            return _text(c, source)
    if node.parent is not None and node.parent.type == "type_definition":   # typedef struct {...} Foo;
        return _name(node.parent, source)
    return ""


def _keyword(node, rules, language: str) -> str:
    if node.type in DECLARATIONS:
        value = _body_of(node)
        return FUNCTION_VALUES.get(value.type, "function")
    keyword = rules.get(node.type)
    if keyword is not None:
        return keyword
    kind = node.child_by_field_name("declaration_kind")          # Swift: class/struct/enum/extension
    if kind is not None:
        return kind.type
    for c in node.children:                                       # Kotlin: class/interface
        if not c.is_named and c.type.isalpha():
            return c.type
    return node.type


_TYPE_NAME = re.compile(r"[A-Za-z_]\w*(?=\s*(?:<|$))")


def _label(node, rules, language: str, source: bytes) -> tuple[str, str, str]:
    """(scope label, simple name, owner) of a definition node."""
    keyword = _keyword(node, rules, language)
    simple, owner = _name(node, source), ""
    if node.type == "impl_item":                                  # Rust: impl Trait for Type
        trait, typ = node.child_by_field_name("trait"), node.child_by_field_name("type")
        name = (f"{_text(trait, source)} for " if trait is not None else "") + (_text(typ, source) if typ else "")
        found = _TYPE_NAME.search(_text(typ, source)) if typ is not None else None
        simple = found.group() if found else ""
    elif node.type == "method_declaration" and language == "go":
        receiver = node.child_by_field_name("receiver")
        name = (_text(receiver, source) + " " if receiver is not None else "") + simple
        types = re.findall(r"[A-Za-z_]\w*", _text(receiver, source)) if receiver is not None else []
        owner = types[-1] if types else ""
    elif node.type == "singleton_method":                         # Ruby: def self.name
        obj = node.child_by_field_name("object")
        name = (_text(obj, source) + "." if obj is not None else "") + simple
        owner = "" if obj is None or _text(obj, source) == "self" else _text(obj, source)
    else:
        name = simple
    label = keyword if name == keyword else f"{keyword} {name}".strip()     # Swift `init`
    return (label if len(label) <= MAX_LABEL_CHARS else label[:MAX_LABEL_CHARS - 1] + "…"), simple, owner


MAX_SIGNATURE_CHARS = 240


def _signature(node, source: bytes) -> str:
    """The definition's header as written (up to its body), whitespace collapsed: what `ragbit symbols` shows
    and the grounding check reads parameters from."""
    body = node.child_by_field_name("body")
    if node.type in DECLARATIONS:
        value = _body_of(node)
        body = value.child_by_field_name("body") if value is not node else None
    if body is not None and body.start_byte > node.start_byte:
        end = body.start_byte
    else:
        newline = source.find(b"\n", node.start_byte)
        end = node.end_byte if newline < 0 else min(newline, node.end_byte)
    header = source[node.start_byte:end].decode("utf-8", "replace")
    header = re.sub(r"[ \t]+(?:#|//)[^\n\"']*$", "", header, flags=re.MULTILINE)     # end-of-line comments
    text = re.sub(r"\s+", " ", header).strip().rstrip("{: ")
    return text if len(text) <= MAX_SIGNATURE_CHARS else text[:MAX_SIGNATURE_CHARS - 1] + "…"


# ==================================================================================================================
# definitions -> pieces
# ==================================================================================================================

def syntax_pieces(budget: Budget, language: str, text: str, split_overlap: int,
                  definitions: list[Definition] | None = None) -> list[Piece]:
    """Pieces for a parsed file. Raises if tree-sitter cannot parse it (the caller falls back to windows).
    `definitions`: the file's definitions when the caller has parsed it already (for the symbol table)."""
    if definitions is None:
        definitions = find_definitions(language, text.encode("utf-8"), budget.lines)
    return _plan(budget, 0, len(budget.lines) - 1, definitions, "", split_overlap)


def _plan(budget: Budget, start: int, end: int, definitions: list[Definition], scope: str,
          overlap: int) -> list[Piece]:
    pieces: list[Piece] = []
    cursor = start
    for d in definitions:
        if d.end < cursor or d.start > end:        # swallowed by a previous definition on the same line(s)
            continue
        if d.start > cursor:
            pieces += span_pieces(budget, cursor, d.start - 1, scope, overlap)
        first, last = max(d.start, cursor), min(d.end, end)
        inner_scope = join_scope(scope, d.label)
        trimmed = budget.trim(first, last)
        if trimmed is not None:
            if budget.fits(*trimmed, inner_scope):
                pieces.append(Piece(*trimmed, inner_scope))
            elif d.children:
                # merge the parts of a split definition among themselves only: they stay under its scope
                parts = budget.merge(_plan(budget, first, last, d.children, inner_scope, overlap))
                pieces += [replace(p, mergeable=False) for p in parts]
            else:
                pieces += split_windows(budget, first, last, inner_scope, overlap)
        cursor = last + 1
    if cursor <= end:
        pieces += span_pieces(budget, cursor, end, scope, overlap)
    return pieces
