"""`ragbit symbols NAME`: where a name is defined in the repository (the index's symbol table)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ragbit.cli import app, examples
from ragbit.cli.boundary import guarded, repo_config


@app.command(short_help="Where a name is defined (fuzzy when none is exact).", epilog=examples(
    "ragbit symbols Searcher.search", "ragbit symbols index_repository --json", "ragbit symbols fetch_al"))
def symbols(
    name: str = typer.Argument(..., help="a name as code writes it: search, Searcher.search, pkg.mod.func"),
    repo: Optional[Path] = typer.Option(None, "--repo", help="indexed repository (default: the one around "
                                        "the working directory)"),
    index_dir: Optional[str] = typer.Option(None, "--index-dir", help="where the index lives"),
    limit: int = typer.Option(10, "-n", min=1, help="at most N close matches when none is exact"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON document (schema ragbit.symbols/1, "
                                 "docs/json.md)"),
) -> None:
    """Where NAME is defined: path, lines, kind and signature of each definition; the closest names when no
    definition has that name exactly."""
    def go():
        from ragbit.symbols.reader import load_symbols
        table = load_symbols(repo_config(repo, {"index": {"dir": index_dir}}))
        exact = table.resolve(name)
        return exact, ([] if exact else table.fuzzy(name, limit))
    exact, close = guarded(go)
    if as_json:
        from ragbit.json_forms import symbols_document
        typer.echo(json.dumps(symbols_document(name, exact, close), ensure_ascii=False))
        return
    from ragbit.terminal_text import for_terminal
    if not exact:
        typer.echo(f"no definition named {for_terminal(name, False)}"
                   + ("; closest:" if close else " (nor anything close)"))
    for s in exact or close:
        typer.echo(f"{for_terminal(s.path, False)}:{s.start_line}-{s.end_line}  {s.kind}  "
                   f"{for_terminal(s.name, False)}")
        if s.signature:
            typer.echo(f"    {for_terminal(s.signature, False)}")
    if not exact and not close:
        raise typer.Exit(1)
