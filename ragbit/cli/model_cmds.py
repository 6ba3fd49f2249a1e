"""`ragbit models` and `ragbit pull`: which generator models are here, and getting one (as `ollama` does)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ragbit.cli import app, examples
from ragbit.cli.boundary import guarded, repo_config


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


@app.command(short_help="List generator models: downloaded or not, and the default.", epilog=examples(
    "ragbit models", "RAGBIT_MODEL=~/models/Bonsai-4B.gguf ragbit models"))
def models(repo: Optional[Path] = typer.Option(None, "--repo", help="whose ragbit.toml to read (default: the "
                                               "repository around the working directory)")) -> None:
    """List the generator models ragbit knows, where each one is on this machine, and the default.

    The default comes from --model, else $RAGBIT_MODEL, else the repository's ragbit.toml, else your
    config file ($XDG_CONFIG_HOME/ragbit/config.toml), else bonsai-1.7b.
    """
    from ragbit.config import user_config_path
    from ragbit.models import default_model_origin, list_models

    cfg = guarded(lambda: repo_config(repo, {}))
    entries = guarded(lambda: list_models(cfg))
    width = max(len(e.name) for e in entries)
    for e in entries:
        mark = "*" if e.default else " "
        where = str(e.path) if e.path else ("not downloaded: ragbit pull " + e.name if e.source != "local file"
                                            else "file not found")
        typer.echo(f"{mark} {e.name:<{width}}  {_size(e.size):>8}  {where}")
    typer.echo(f"* default, from {default_model_origin(cfg)}; make one stick with RAGBIT_MODEL=NAME_OR_PATH or "
               f"[generator] model = \"...\" in {user_config_path()}")


@app.command(short_help="Download a model into the Hugging Face cache.", epilog=examples(
    "ragbit pull bonsai-1.7b", "ragbit pull bonsai-4b"))
def pull(name: str = typer.Argument(..., help="bonsai-1.7b|4b|8b, ternary-bonsai-1.7b|4b|8b")) -> None:
    """Download a Bonsai model (with progress) so later queries work offline."""
    from generator.hub import BONSAI_MODELS, resolve_model
    from ragbit.cli.boundary import fail
    from ragbit.models import cached_file

    if name.lower() not in BONSAI_MODELS:
        fail(f"unknown model {name!r}: use one of {', '.join(BONSAI_MODELS)}")
    have = cached_file(name)
    if have is not None:
        typer.echo(f"{name.lower()} is already here: {have}")
        return
    from ragbit.pipeline.model_loader import engine_settings, prepare_kernels, warming_while_downloading
    engine = engine_settings(guarded(lambda: repo_config(None, {})))
    say = warming_while_downloading(name, engine, lambda msg: typer.echo(msg, err=True))   # compiles meanwhile
    path = guarded(lambda: resolve_model(name, on_download=say))
    guarded(lambda: prepare_kernels(str(path), **engine), interrupted="the model file is complete")
    typer.echo(f"{name.lower()}: {path} ({_size(Path(path).stat().st_size)})")
