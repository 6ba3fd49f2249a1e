"""Whether the engine's numba kernels are compiled yet, so the first run can say why it is slow.

Why: the first `ragbit query` on a machine compiles the CPU kernels (numba, `cache=True`) before the first
token, several seconds on a laptop, and later runs load them from numba's cache. A user who sees only a pause
thinks ragbit is always that slow. The check looks for numba's cache index of the engine's layers
(`layers.*.nbi`) where numba writes it: `__pycache__` beside the source, else $NUMBA_CACHE_DIR, else numba's
user-wide cache directory. It never imports numba or the engine.

Which kernels a model needs depends on its settings (KV cache type, decode kernel, threads, weight type, GQA group),
and numba recompiles a kernel when its source file changes (an upgrade: its cache entries are stamped with a hash of
their source file). So "some kernels are cached" is not "this model's kernels are cached": switching `[generator]
kv_cache` to "q8" on a machine that had only run "f16" compiled ~15 s inside the first answer without a word. So a
model's first run here (or a finished warm-up) leaves a marker (`mark_warm`) named after a hash of what was compiled
for: the model file (path, size, time) or short name, the engine settings, the engine's source files (their
contents), numba's install (path, size, time), the CPU's flags, the Python version and the environment variables
that change numba's code or cache. `is_warm` checks for that marker: no parsing of the model file, a few ms.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

NOTICE = "compiling the CPU kernels once (first use only, often 10-20 s; later runs reuse them)"
WARM_PREFIX = "ragbit-warm-"
# what changes numba's code or where it caches it (RAGBIT_KERNEL caps the kernel paths that get compiled)
WARM_ENVIRONMENT = ("NUMBA_CACHE_DIR", "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "NUMBA_OPT", "RAGBIT_KERNEL")


def _cache_roots() -> list[Path]:
    """Where numba looks, in its order: $NUMBA_CACHE_DIR when set (then nothing else), beside the source, the
    user-wide cache (used when the source directory is read-only)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return [Path(os.environ["NUMBA_CACHE_DIR"])]
    import importlib.util
    spec = importlib.util.find_spec("generator")
    roots = [Path(p) / "__pycache__" for p in (spec.submodule_search_locations or [])] if spec else []
    roots.append(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "numba")
    return roots


def kernels_cached() -> bool:
    """True when numba's cache already holds the engine's layer kernels (then start-up is fast)."""
    for root in _cache_roots():
        if not root.is_dir():
            continue
        if any(root.glob("layers.*.nbi")) or (root.name != "__pycache__" and any(root.rglob("layers.*.nbi"))):
            return True
    return False


def jit_disabled() -> bool:
    return os.environ.get("NUMBA_DISABLE_JIT") == "1"


def say_compiling(write=None) -> None:
    """Print NOTICE to stderr (or through `write`)."""
    (write or (lambda msg: print(msg, file=sys.stderr, flush=True)))(NOTICE)


def _package_files(name: str) -> list[Path]:
    """The package's source files (the engine's: numba's cache entries are stamped with their contents)."""
    import importlib.util
    spec = importlib.util.find_spec(name)
    roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    return sorted(f for root in roots for f in root.rglob("*.py"))


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        import platform
        return platform.machine()


def warm_key(model: str, engine: dict[str, Any]) -> str:
    """The name of the marker a finished warm-up for `model` (a file or a short name) and `engine` (the
    `engine_settings` keys; n_ctx does not change the kernels) leaves behind."""
    h = hashlib.sha256()
    path = Path(model)
    if path.is_file():
        st = path.stat()
        h.update(f"file {path.resolve()} {st.st_size} {st.st_mtime_ns}\n".encode())
    else:
        h.update(f"name {str(model).lower()}\n".encode())
    h.update(repr(sorted((k, v) for k, v in engine.items() if k != "n_ctx")).encode())
    for f in _package_files("generator"):            # by content, as numba stamps its cache entries (~0.3 ms)
        try:
            h.update(f"{f}\n".encode() + f.read_bytes())
        except OSError:
            continue
    import importlib.util
    numba = importlib.util.find_spec("numba")                  # finds numba without importing it
    if numba is not None and numba.origin:                     # another numba compiles everything again
        st = Path(numba.origin).stat()
        h.update(f"{numba.origin} {st.st_size} {st.st_mtime_ns}\n".encode())
    h.update(_cpu_flags().encode())
    h.update(sys.version.encode())
    h.update(repr([os.environ.get(name, "") for name in WARM_ENVIRONMENT]).encode())
    return WARM_PREFIX + h.hexdigest()[:32]


def _marker_dir() -> Path | None:
    """Where numba caches the engine (so that clearing that cache clears the markers too): the first of
    `_cache_roots` that exists or can be made, None when none is writable."""
    for root in _cache_roots():
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(root, os.W_OK):
            return root
    return None


def is_warm(model: str, engine: dict[str, Any]) -> bool:
    """True when exactly this model, these settings and this install have run here before (or been warmed up)."""
    root = _marker_dir()
    return root is not None and (root / warm_key(model, engine)).is_file()


def mark_warm(model: str, engine: dict[str, Any]) -> None:
    """Record a first run or a finished warm-up (an empty file; a read-only cache just means the next run says it
    compiles again)."""
    root = _marker_dir()
    if root is None:
        return
    try:
        (root / warm_key(model, engine)).touch()
    except OSError:
        pass


def announce_first_compile(write=None) -> bool:
    """Print NOTICE (to stderr, or through `write`) when numba's cache has none of the kernels; True if it did."""
    if kernels_cached() or jit_disabled():
        return False
    say_compiling(write)
    return True
