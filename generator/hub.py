"""Model names -> local GGUF files: a path is used as is, a short name comes from Hugging Face.

WHY short names: `--model bonsai-1.7b` is what a user remembers; the repository and file name are
PrismML's. Downloads go through `huggingface_hub` (its cache, resumable downloads, progress bar), and
the local cache is always tried first so that a model fetched once works offline afterwards.

Repositories and file names: PrismML's "Bonsai" collection on Hugging Face
(https://huggingface.co/collections/prism-ml/bonsai: prism-ml/Bonsai-{1.7B,4B,8B}-gguf), each
holding one `Bonsai-<size>.gguf` (the file name used by PrismML's Bonsai-demo download scripts).

Ternary-Bonsai (GGUF type 42 `Q2_0`): the "Ternary Bonsai" collection
(https://huggingface.co/collections/prism-ml/ternary-bonsai: prism-ml/Ternary-Bonsai-{1.7B,4B,8B}-gguf).
Each repository holds several files; ours is `Ternary-Bonsai-<size>-Q2_0_g64.gguf`, the 64-weight-group
layout of mainline llama.cpp, which the engine reads. Not `Ternary-Bonsai-<size>-Q2_0.gguf` (PrismML's first
128-weight-group layout under the same type id, refused by the loader) nor `-PQ2_0.gguf` (a fork-only type).
These names were checked offline, from stored copies of the collection page, PrismML's llama.cpp fork README
("*-Q2_0_g64.gguf ... official group-64, ggml id 42") and third-party listings naming each of the three
files in its repository; no download was tried (the hub is unreachable from where this was written).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from generator.errors import GeneratorError

ETAG_TIMEOUT_S = 5.0   # metadata request timeout once the hub answered the probe
PROBE_TIMEOUT_S = 5.0  # DNS + TCP connect to the hub; huggingface_hub itself retries for ~25 s


@dataclass(frozen=True)
class HubModel:
    repo_id: str
    filename: str


BONSAI_MODELS: dict[str, HubModel] = {
    "bonsai-1.7b": HubModel("prism-ml/Bonsai-1.7B-gguf", "Bonsai-1.7B.gguf"),
    "bonsai-4b": HubModel("prism-ml/Bonsai-4B-gguf", "Bonsai-4B.gguf"),
    "bonsai-8b": HubModel("prism-ml/Bonsai-8B-gguf", "Bonsai-8B.gguf"),
    "ternary-bonsai-1.7b": HubModel("prism-ml/Ternary-Bonsai-1.7B-gguf", "Ternary-Bonsai-1.7B-Q2_0_g64.gguf"),
    "ternary-bonsai-4b": HubModel("prism-ml/Ternary-Bonsai-4B-gguf", "Ternary-Bonsai-4B-Q2_0_g64.gguf"),
    "ternary-bonsai-8b": HubModel("prism-ml/Ternary-Bonsai-8B-gguf", "Ternary-Bonsai-8B-Q2_0_g64.gguf"),
}


class ModelNotAvailableError(GeneratorError, RuntimeError):
    """The model is neither a local file nor in the cache, and cannot be downloaded now."""


class UnknownModelError(GeneratorError, ValueError):
    """Neither an existing path nor one of the short names."""


def _offline() -> bool:
    # Read the variable now: huggingface_hub reads it once, at import.
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_reachable(endpoint: str | None) -> bool:
    """Can we open a TCP connection to the hub within PROBE_TIMEOUT_S? (DNS included, in a thread,
    because name resolution has no timeout of its own.)"""
    import socket
    import threading
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    url = urlsplit(endpoint or constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    ok = threading.Event()

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
            ok.set()
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(PROBE_TIMEOUT_S)
    return ok.is_set()


def _local_hint(model: HubModel) -> str:
    return f"pass a local file with --model /path/to/{model.filename}"


def resolve_model(name_or_path: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None,
                  endpoint: str | None = None, on_download: Callable[[str], None] | None = None) -> Path:
    """Path of a GGUF file for `name_or_path`.

    An existing path is returned unchanged. A short name (see `BONSAI_MODELS`, case-insensitive) is
    looked up in the Hugging Face cache, then downloaded (with a progress bar; `on_download` receives
    a one-line notice first). Raises UnknownModelError or ModelNotAvailableError with one line.
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    key = str(name_or_path).strip().lower()
    model = BONSAI_MODELS.get(key)
    if model is None:
        names = ", ".join(BONSAI_MODELS)
        if path.suffix == ".gguf" or os.sep in str(name_or_path):
            raise ModelNotAvailableError(f"model file not found: {name_or_path} (or use a short name: {names})")
        raise UnknownModelError(f"unknown model {str(name_or_path)!r}: use one of {names}, or a path to a .gguf file")

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(model.repo_id, model.filename, cache_dir=cache_dir, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    if _offline():
        raise ModelNotAvailableError(
            f"{key} is not in the local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE); "
            f"{_local_hint(model)}")
    if not _hub_reachable(endpoint):
        raise ModelNotAvailableError(
            f"cannot download {key}: the Hugging Face hub is unreachable; {_local_hint(model)}")
    if on_download is not None:
        on_download(f"downloading {model.repo_id}/{model.filename} from Hugging Face")
    try:
        return Path(hf_hub_download(model.repo_id, model.filename, cache_dir=cache_dir, endpoint=endpoint,
                                    etag_timeout=ETAG_TIMEOUT_S))
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        raise ModelNotAvailableError(
            f"cannot download {key}: the Hugging Face hub answered HTTP {status}; {_local_hint(model)}") from None
    except Exception as exc:  # network stack errors vary (httpx/requests/OSError); all mean the same here
        reason = type(exc).__name__
        raise ModelNotAvailableError(
            f"cannot download {key}: the Hugging Face hub is unreachable ({reason}); {_local_hint(model)}") from None
