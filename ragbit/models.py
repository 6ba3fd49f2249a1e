"""Which generator models this machine has, and which one ragbit uses: what `ragbit models` shows.

Why here and not in generator/hub.py: the answer mixes the engine's catalogue (short names -> Hugging Face
files) with ragbit's configuration (the user's config file, $RAGBIT_MODEL, the repository's ragbit.toml),
and only the `ragbit` package may know both. Nothing here touches the network.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ragbit.config import MODEL_ENV, RagbitConfig, user_config_path


@dataclass
class ModelEntry:
    name: str                      # short name, or the path the configuration names
    path: Path | None              # the local file, when there is one
    size: int | None               # bytes of that file
    source: str                    # where it comes from: "huggingface:<repo>/<file>" or "local file"
    default: bool                  # the one `ragbit query` would use here


def cached_file(name: str) -> Path | None:
    """The local copy of a short-named model in the Hugging Face cache, or None (never downloads)."""
    from generator.hub import BONSAI_MODELS
    model = BONSAI_MODELS.get(name.lower())
    if model is None:
        return None
    from huggingface_hub import try_to_load_from_cache
    found = try_to_load_from_cache(model.repo_id, model.filename)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def list_models(cfg: RagbitConfig) -> list[ModelEntry]:
    """The known short names (downloaded or not), plus the configured model when it is a file of its own."""
    from generator.hub import BONSAI_MODELS
    default = cfg.generator.model
    entries = []
    for name, model in BONSAI_MODELS.items():
        path = cached_file(name)
        entries.append(ModelEntry(name, path, path.stat().st_size if path else None,
                                  f"huggingface:{model.repo_id}/{model.filename}", default.lower() == name))
    if default.lower() not in BONSAI_MODELS:
        path = Path(default).expanduser()
        entries.append(ModelEntry(default, path if path.is_file() else None,
                                  path.stat().st_size if path.is_file() else None, "local file", True))
    return entries


def default_model_origin(cfg: RagbitConfig) -> str:
    """Which setting chose the default model, for the listing's last line."""
    import os
    if os.environ.get(MODEL_ENV, "").strip():
        return f"${MODEL_ENV}"
    for path in (cfg.repo / "ragbit.toml", user_config_path()):
        try:
            if path.is_file() and "model" in _generator_section(path):
                return str(path)
        except Exception:           # unreadable: RagbitConfig.load has reported it already
            continue
    return "built-in default"


def _generator_section(path: Path) -> dict:
    import tomllib
    return tomllib.loads(path.read_text(encoding="utf-8")).get("generator", {})
