"""One loaded Generator per (model file, engine settings), shared by the components that need it.

Why a cache: the ContextPacker needs the generator's tokenizer and the BonsaiGenerator needs the model;
both name the same model, and loading it twice would double start-up time and memory. `ragbit chat`
also keeps the same instance across turns, which is what lets the KV-cache prefix be reused.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

_CACHE: dict[tuple, Any] = {}
_LOCK = threading.Lock()
_WARMING: dict[Any, list] = {}     # generator.warmup.EngineSettings -> its compiling processes, until joined


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

    engine = {"threads": threads, "decode_kernel": decode_kernel, "kv_cache": kv_cache}
    start_kernel_warmup(model, **engine)                                  # if the caller has not yet
    path = str(resolve_model(model, on_download=warming_while_downloading(model, engine, on_download)))
    key = (path, int(n_ctx), int(threads), decode_kernel, kv_cache)
    with _LOCK:
        if key not in _CACHE:
            said = prepare_kernels(path, threads=threads, decode_kernel=decode_kernel, kv_cache=kv_cache)
            _CACHE[key] = Generator.load(path, n_ctx=n_ctx, threads=threads, q1_decode=decode_kernel,
                                         kv_cache=kv_cache)
            _first_run_here(path, engine, said)
        return _CACHE[key]


def _first_run_here(path: str, engine: dict[str, Any], said: bool) -> None:
    """After a model loaded: when this file, these settings and this install have not run here before
    (kernel_cache.is_warm), its first prompt compiles what they need (a new KV cache type, another model shape, an
    upgrade's changed kernels): say so (unless the warm-up already did) and record it for the next run. WHY in
    this process, not in warm-up processes: only what changed compiles, and that took 15 s here against 16-17 s
    through a warm-up (a switch to the q8 cache, or three edited kernel files; Emerald Rapids, 2 cores)."""
    from ragbit.kernel_cache import is_warm, jit_disabled, mark_warm, say_compiling
    if jit_disabled() or is_warm(path, engine):
        return
    if not said:
        say_compiling()
    mark_warm(path, engine)


def start_kernel_warmup(model: str, n_ctx: int = 0, threads: int = 0, decode_kernel: str = "int11",
                        kv_cache: str = "f16", downloading: bool = False) -> None:
    """On a machine whose numba cache lacks the engine's kernels, start compiling them in the background
    (`generator/warmup.py`: two processes, about half the time of compiling on first use). Call it as soon as
    a command knows it will generate: the compiling then overlaps indexing and the model's download, and
    `load_generator` waits for what is left. Takes `engine_settings` (n_ctx does not matter). Does nothing when
    numba's cache holds any of the engine's kernels (then only what a new setting or an upgrade changed is left
    to compile, cheaper in the answering process itself: `prepare_kernels`), or the model is neither on this
    machine nor `downloading` (a command that finds no model, e.g. offline, must not leave processes compiling
    behind it), or its layout is not Bonsai's."""
    from ragbit.kernel_cache import jit_disabled, kernels_cached
    if jit_disabled() or kernels_cached():
        return
    if not downloading:
        from ragbit.models import cached_file
        if not (Path(model).is_file() or cached_file(str(model))):
            return
    from generator import warmup
    settings = warmup.settings_for(model, decode_kernel, kv_cache, threads)
    if settings is None:
        return
    with _LOCK:
        if settings not in _WARMING:
            _WARMING[settings] = warmup.start(settings)


def warming_while_downloading(model: str, engine: dict[str, Any],
                              on_download: Callable[[str], None] | None) -> Callable[[str], None]:
    """An `on_download` callback that first starts the kernel warm-up: it compiles while the file downloads."""
    def started(message: str) -> None:
        start_kernel_warmup(model, **engine, downloading=True)
        if on_download is not None:
            on_download(message)
    return started


def prepare_kernels(path: str, n_ctx: int = 0, threads: int = 0, decode_kernel: str = "int11",
                    kv_cache: str = "f16") -> bool:
    """Have the engine's kernels compiled for the model file `path` before it is loaded: when numba's cache has
    none of them, say so once and wait for the warm-up processes (started now if `start_kernel_warmup` was not
    called). True when it said so. Nothing to do on a machine that compiled them before (what a new setting
    or an upgrade changed compiles on first use: `_first_run_here`)."""
    from ragbit.kernel_cache import announce_first_compile, jit_disabled, kernels_cached, mark_warm, say_compiling
    if jit_disabled() or (not _WARMING and kernels_cached()):
        return False                   # the usual case, decided without opening the file
    from generator import warmup
    settings = warmup.settings_for(path, decode_kernel, kv_cache, threads)
    processes = _WARMING.pop(settings, None)       # started early: its first files make the cache look ready
    if processes:
        say_compiling()
    elif not announce_first_compile():             # not started yet: say that the first load compiles
        return False
    elif settings:                                 # ... and warm up where the layout is Bonsai's
        processes = warmup.start(settings)
    else:
        return True
    try:
        failures = warmup.wait(processes or [])   # a failed warm-up only means the kernels compile here, as before
    except BaseException:              # Ctrl-C stopped this answer: the next one waits for the same processes
        if processes:
            _WARMING[settings] = processes
        raise
    if not failures:
        mark_warm(path, {"threads": threads, "decode_kernel": decode_kernel, "kv_cache": kv_cache})
    return True


def model_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean "no usable model": the caller can still show retrieved sources."""
    from generator.gguf_file import GGUFError
    from generator.hub import ModelNotAvailableError
    from generator.model import ModelError
    from generator.tokenizer import TokenizerError
    # ModelError: a file that parses but cannot run (token ids past its embedding, bad threads, no RAM for the
    # cache); `ragbit generate` reported it, `ragbit query` / `chat` used to print a traceback
    return (ModelNotAvailableError, GGUFError, ModelError, TokenizerError, FileNotFoundError)
