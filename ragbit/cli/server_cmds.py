"""`ragbit server list` / `ragbit server stop`: the background search servers (ragbit/search/registry.py)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from ragbit.cli import app, examples
from ragbit.cli.boundary import fail, repository

server_app = typer.Typer(help="The background search servers (one per index; they exit when idle).",
                         no_args_is_help=True)
app.add_typer(server_app, name="server", short_help="List or stop background search servers.")


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h"


@server_app.command("list", short_help="The running search servers.", epilog=examples("ragbit server list"))
def list_servers() -> None:
    """The running search servers: pid, memory, age, last use, repository."""
    from ragbit.search.registry import running
    entries = running()
    if not entries:
        typer.echo("no search servers running")
        return
    now = time.time()
    typer.echo(f"{'PID':>7}  {'MEMORY':>8}  {'UP':>5}  {'IDLE':>5}  REPOSITORY")
    for e in entries:
        memory = f"{e.rss_bytes / 1e6:.0f} MB" if e.rss_bytes else "-"
        typer.echo(f"{e.pid:>7}  {memory:>8}  {_ago(now - e.started):>5}  {_ago(now - e.last_used):>5}  {e.repo}")


@server_app.command("stop", short_help="Stop search servers now.", epilog=examples("ragbit server stop            # the server of the repository here",
                                            "ragbit server stop --all"))
def stop_servers(
    path: Optional[Path] = typer.Argument(None, help="repository whose server to stop (default: the one "
                                          "around the working directory)", show_default=False),
    repo: Optional[Path] = typer.Option(None, "--repo", help="same as PATH"),
    all_: bool = typer.Option(False, "--all", help="stop every search server"),
) -> None:
    """Stop search servers now (they also exit on their own after search.server_idle_timeout seconds)."""
    from ragbit.search.registry import running, stop
    entries = running()
    if not all_:
        target = repository(path, repo).expanduser().resolve()
        entries = [e for e in entries if Path(e.repo).resolve() == target]
        if not entries:
            typer.echo(f"no search server for {target}")
            return
    failed = [e for e in entries if not stop(e)]
    for e in entries:
        if e not in failed:
            typer.echo(f"stopped {e.pid} ({e.repo})")
    if failed:
        fail("could not stop " + ", ".join(str(e.pid) for e in failed))
