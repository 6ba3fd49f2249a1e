"""One loaded Generator per (model file, engine settings), shared by the components that need it.

Why a cache: the ContextPacker needs the generator's tokenizer and the BonsaiGenerator needs the model;
both name the same model, and loading it twice would double start-up time and memory. `ragbit chat`
also keeps the same instance across turns, which is what lets the KV-cache prefix be reused.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

_CACHE: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def engine_settings(cfg: Any) -> dict[str, Any]:
    """The `[generator]` settings that shape a loaded engine (what `load_generator` takes besides the model):
    one place, so every component that loads the model asks for the same instance."""
    g = cfg.generator
    return {"n_ctx": g.n_ctx, "threads": g.threads, "decode_kernel": g.decode_kernel, "kv_cache": g.kv_cache}


def sampling_settings(cfg: Any) -> dict[str, Any]:
    """The `[generator]` settings that shape sampling, as `generator.sampling.SamplingParams` takes them."""
    g = cfg.generator
    return {"temperature": g.temperature, "top_k": g.top_k, "top_p": g.top_p, "min_p": g.min_p,
            "repeat_penalty": g.repeat_penalty, "seed": g.seed}


def load_generator(model: str, n_ctx: int = 4096, threads: int = 0, decode_kernel: str = "int11",
                   kv_cache: str = "f16", on_download: Callable[[str], None] | None = None) -> Any:
    """`generator.Generator` for a short name ("bonsai-1.7b") or a .gguf path, loaded once per process.

    Raises one of `model_errors()` when there is no usable model (not downloadable / offline / corrupt);
    `on_download` hears about a download before it starts.
    """
    from generator.generate import Generator
    from generator.hub import resolve_model

    path = str(resolve_model(model, on_download=on_download))
    key = (path, int(n_ctx), int(threads), decode_kernel, kv_cache)
    with _LOCK:
        if key not in _CACHE:
            from ragbit.kernel_cache import announce_first_compile
            announce_first_compile()     # the first load on a machine compiles the kernels: say so
            _CACHE[key] = Generator.load(path, n_ctx=n_ctx, threads=threads, q1_decode=decode_kernel,
                                         kv_cache=kv_cache)
        return _CACHE[key]


def model_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean "no usable model": the caller can still show retrieved sources."""
    from generator.gguf_file import GGUFError
    from generator.hub import ModelNotAvailableError
    from generator.model import ModelError
    from generator.tokenizer import TokenizerError
    # ModelError: a file that parses but cannot run (token ids past its embedding, bad threads, no RAM for the
    # cache); `ragbit generate` reported it, `ragbit query` / `chat` used to print a traceback
    return (ModelNotAvailableError, GGUFError, ModelError, TokenizerError, FileNotFoundError)
