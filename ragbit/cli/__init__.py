"""The `ragbit` command line (typer).

Each command group lives in its own module and registers on `app`; heavy libraries (torch, numba,
faiss) are imported inside the commands, never at module import, so `ragbit --help` stays instant.
"""
from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Ask questions about your codebase on a CPU, with 1-bit Bonsai models.")

@app.callback()
def _root() -> None:
    """Ask questions about your codebase on a CPU, with 1-bit Bonsai models."""
    # Present so typer keeps subcommands even while only one is registered.


# Command modules register themselves on `app` when imported.
from ragbit.cli import _registry  # noqa: E402,F401


def main() -> None:
    app()
