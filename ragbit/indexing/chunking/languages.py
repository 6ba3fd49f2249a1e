"""File name -> language name.

The names are tree-sitter-language-pack grammar names for languages we parse ("python", "tsx", ...), "markdown" and
"rst" for markup we split by headings, and plain labels ("yaml", "toml", ...) for files that are chunked by line
windows but still deserve a language tag in search results. `None` means "unknown": such files are still indexed
(as "text") if the walker lets them through.
"""
from __future__ import annotations

from pathlib import PurePosixPath

# ==================================================================================================================
# extension -> language
# ==================================================================================================================

EXTENSIONS: dict[str, str] = {
    # parsed with tree-sitter (see chunking/syntax.py for the definition rules)
    ".py": "python", ".pyi": "python", ".pyw": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".c++": "cpp", ".hh": "cpp", ".hpp": "cpp", ".hxx": "cpp",
    ".h++": "cpp", ".ipp": "cpp", ".tpp": "cpp", ".inl": "cpp",
    ".rb": "ruby", ".rake": "ruby", ".gemspec": "ruby",
    ".cs": "csharp",
    ".php": "php",
    ".kt": "kotlin", ".kts": "kotlin",
    ".swift": "swift",
    ".scala": "scala", ".sc": "scala",
    # split by headings (chunking/markup.py)
    ".md": "markdown", ".markdown": "markdown", ".mdx": "markdown",
    ".rst": "rst", ".rest": "rst",
    # line windows, tagged for display and filtering
    ".txt": "text", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json", ".jsonc": "json",
    ".ini": "ini", ".cfg": "ini", ".conf": "ini", ".xml": "xml", ".html": "html", ".htm": "html",
    ".css": "css", ".scss": "scss", ".sass": "sass", ".less": "less", ".sql": "sql", ".sh": "bash",
    ".bash": "bash", ".zsh": "bash", ".fish": "fish", ".ps1": "powershell", ".bat": "batch", ".cmd": "batch",
    ".lua": "lua", ".pl": "perl", ".pm": "perl", ".r": "r", ".R": "r", ".jl": "julia", ".hs": "haskell",
    ".ml": "ocaml", ".mli": "ocaml", ".ex": "elixir", ".exs": "elixir", ".erl": "erlang", ".clj": "clojure",
    ".dart": "dart", ".zig": "zig", ".nim": "nim", ".vue": "vue", ".svelte": "svelte", ".proto": "proto",
    ".graphql": "graphql", ".tf": "hcl", ".hcl": "hcl", ".cmake": "cmake", ".mk": "make", ".gradle": "groovy",
    ".groovy": "groovy", ".tex": "latex", ".ipynb": "json", ".csv": "csv", ".tsv": "csv",
}

# Files identified by their whole name (no useful extension).
FILENAMES: dict[str, str] = {
    "Makefile": "make", "makefile": "make", "GNUmakefile": "make", "CMakeLists.txt": "cmake",
    "Dockerfile": "dockerfile", "Containerfile": "dockerfile", "Rakefile": "ruby", "Gemfile": "ruby",
    "Vagrantfile": "ruby", "Jenkinsfile": "groovy", "BUILD": "starlark", "WORKSPACE": "starlark",
    "README": "text", "LICENSE": "text", "COPYING": "text", "CHANGELOG": "text", "AUTHORS": "text",
}

# Languages whose files are split by headings rather than by definitions.
MARKUP = frozenset({"markdown", "rst"})


def language_for_path(path: str) -> str | None:
    """Language of a repository-relative path, or None when we have no idea (the caller then uses "text")."""
    p = PurePosixPath(path)
    if p.name in FILENAMES:
        return FILENAMES[p.name]
    if p.name.startswith("Dockerfile."):
        return "dockerfile"
    suffix = p.suffix
    return EXTENSIONS.get(suffix) or EXTENSIONS.get(suffix.lower())
