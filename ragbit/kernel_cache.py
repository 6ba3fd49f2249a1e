"""Whether the engine's numba kernels are compiled yet, so the first run can say why it is slow.

Why: the first `ragbit query` on a machine compiles the CPU kernels (numba, `cache=True`) before the first
token, several seconds on a laptop, and later runs load them from numba's cache. A user who sees only a pause
thinks ragbit is always that slow. The check looks for numba's cache index of the engine's layers
(`layers.*.nbi`) where numba writes it: `__pycache__` beside the source, else $NUMBA_CACHE_DIR, else numba's
user-wide cache directory. It never imports numba or the engine.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

NOTICE = "compiling the CPU kernels once (first use only, often 10-20 s; later runs reuse them)"


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


def announce_first_compile(write=None) -> bool:
    """Print NOTICE (to stderr, or through `write`) when the kernels are not compiled yet; True if it did."""
    if kernels_cached() or jit_disabled():
        return False
    say_compiling(write)
    return True
