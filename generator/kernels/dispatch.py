"""Run-time choice of the instruction-set path of each kernel operation, from the host CPU's features.

WHY one place: the machine that runs (or tests) ragbit changes from day to day (Zen1 with AVX2 only, Zen4 and
Sapphire Rapids with AVX-512); a kernel compiled for instructions the CPU lacks dies with SIGILL. So every
operation that has more than one implementation asks `choose(op)` once, at load time, and stores the answer;
`report()` says what ran (`ragbit generate --json`, the benchmarks).

Paths, widest first. Each names the instructions its kernels use explicitly (LLVM intrinsics); numba still
compiles the surrounding loops for the host CPU, so "portable" means "no hand-written SIMD", not "no SIMD":
  amx         AMX tiles, bf16 `tdpbf16ps` (16 x 16 x 32 multiply-adds per instruction); Linux must grant the
              process the tile state (`os_refuses`), else the path is unsupported, as a missing feature is
  avx512vnni  512-bit vpdpbusd int8 dot products (plus everything of avx512bw)
  avx512bw    512-bit vpshufb / vpmaddubsw (64 table lookups per instruction)
  avxvnni     256-bit vpdpbusd (AVX-VNNI; taken by CPUs that have it without AVX-512: Intel cores since Alder
              Lake), plus everything of avx2
  avx2        256-bit vpshufb / vpmaddubsw (32 lookups per instruction)
  ssse3       128-bit pshufb / pmaddubsw (any x86-64 since 2006)
  portable    plain numba code, every CPU

RAGBIT_KERNEL=<path> caps the choice (tests and same-run comparisons of paths): each operation then runs the
best path it implements that is not wider than the one asked for. Asking for a path the CPU cannot run is an
error, never a silent fallback.
"""

from __future__ import annotations

import os
from functools import lru_cache

from .formats import KernelFormatError

ENV = "RAGBIT_KERNEL"

# widest first: a lower index is faster
PATHS = ("amx", "avx512vnni", "avx512bw", "avxvnni", "avx2", "ssse3", "portable")

# LLVM feature names (llvmlite's get_host_cpu_features) each path needs
REQUIRES: dict[str, tuple[str, ...]] = {
    "amx": ("amx-tile", "amx-bf16", "avx512f", "avx512bw"),
    "avx512vnni": ("avx512f", "avx512bw", "avx512vl", "avx512vnni"),
    "avx512bw": ("avx512f", "avx512bw"),
    "avxvnni": ("avxvnni", "avx2", "fma", "f16c"),
    "avx2": ("avx2", "fma", "f16c"),
    "ssse3": ("ssse3",),
    "portable": (),
}

# operation -> the paths that have an implementation (kept in PATHS order)
IMPLEMENTED: dict[str, tuple[str, ...]] = {
    "q1_decode_int11": ("avx512bw", "avx2", "ssse3"),   # integer-table matvec (q1_0_simd.py); "portable" = use float
    "q1_decode_float": ("portable",),           # float32-exact matvec (q1_0.matvec_lut8)
    # prefill of the integer ("int11") mode, not float32-exact: bf16 activations x weights expanded to +-d on AMX
    # tiles (q1_0_amx.py), int8 activations x bits with vpdpbusd on VNNI, 512- or 256-bit (q1_0_vnni.py)
    "q1_prefill_int11": ("amx", "avx512vnni", "avxvnni"),
    "q1_prefill_float": ("portable",),          # float32 table matmul (q1_0.matmul_lut4_*)
    # Q2_0 (Ternary-Bonsai) runs the same kernels with its own tables (q2_0.py), so the same paths
    "q2_decode_int11": ("avx512bw", "avx2", "ssse3"),
    "q2_decode_float": ("portable",),
    "q2_prefill_int11": ("amx", "avx512vnni", "avxvnni"),
    "q2_prefill_float": ("portable",),
    # decode attention over the KV cache (attention.py): LLVM vector IR, 4 or 2 key tiles per step; avx512vnni:
    # the q.k of q8 / q4 caches in int8 (vpdpbusd), the rest as avx512bw
    "attention_decode": ("avx512vnni", "avx512bw", "avx2", "portable"),
    # prefill attention (T >= 16 queries): split-bf16 tile products on AMX (attention_amx.py); "portable" = float32
    # sgemm through numpy's BLAS (layers._attention_blas)
    "attention_prefill": ("amx", "portable"),
}


@lru_cache(maxsize=1)
def host_features() -> frozenset[str]:
    """The CPU features LLVM sees on this host (empty where llvmlite cannot tell, e.g. non-x86)."""
    try:
        import llvmlite.binding as llvm_binding

        return frozenset(k for k, v in llvm_binding.get_host_cpu_features().items() if v)
    except Exception:  # noqa: BLE001  (an unknown host: only the portable path is safe)
        return frozenset()


# Linux x86-64: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) asks for the AMX tile state (8 KB per thread
# in the signal frame and context switches); without it the first tile instruction kills the process (SIGILL)
_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA = 158, 0x1023, 18


@lru_cache(maxsize=1)
def _amx_refused() -> str | None:
    """Ask Linux once per process for the AMX tile state: None if granted, else why not. The permission is per
    process (every thread, also those started later); the tile configuration is per thread (the kernels load it)."""
    import ctypes
    import platform
    import sys

    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"):
        return f"AMX tile permission is only requested on Linux x86-64, not {sys.platform} {platform.machine()}"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        rc = libc.syscall(ctypes.c_long(_SYS_ARCH_PRCTL), ctypes.c_long(_ARCH_REQ_XCOMP_PERM),
                          ctypes.c_long(_XFEATURE_XTILEDATA))
    except (OSError, AttributeError) as exc:
        return f"arch_prctl(ARCH_REQ_XCOMP_PERM) could not be called: {exc}"
    if rc != 0:
        return f"the OS refused AMX tile permission (arch_prctl(ARCH_REQ_XCOMP_PERM): {os.strerror(ctypes.get_errno())})"
    return None


def os_refuses(path: str) -> str | None:
    """Why the OS will not run `path` on this host (None: nothing stops it). Only AMX needs a grant; it is asked
    for only where the CPU has the features, and once."""
    return _amx_refused() if path == "amx" else None


def missing(path: str, features: frozenset[str] | None = None) -> str | None:
    """Why the CPU (host by default) cannot run `path`, as a phrase ("this CPU lacks amx-tile", the OS's refusal),
    or None if it can. Given `features`, only those are judged (no OS check: another machine's features)."""
    if path not in REQUIRES:
        raise KernelFormatError(f"unknown kernel path {path!r}; choose one of {', '.join(PATHS)}")
    have = host_features() if features is None else features
    lacks = [f for f in REQUIRES[path] if f not in have]
    if lacks:
        return f"this CPU lacks {', '.join(lacks)}"
    return os_refuses(path) if features is None else None


def supported(path: str, features: frozenset[str] | None = None) -> bool:
    """True if the CPU (host by default) has every feature `path` needs (and, on the host, the OS allows it)."""
    return missing(path, features) is None


def host_paths() -> tuple[str, ...]:
    """Every path this CPU can run, widest first (always ends with "portable")."""
    return tuple(p for p in PATHS if supported(p))


def forced() -> str | None:
    """The path RAGBIT_KERNEL asks for, or None. Raises KernelFormatError if unknown or not on this CPU."""
    want = os.environ.get(ENV, "").strip().lower()
    if not want:
        return None
    if want not in PATHS:
        raise KernelFormatError(f"{ENV}={want!r} is not a kernel path; choose one of {', '.join(PATHS)}")
    why = missing(want)
    if why:
        raise KernelFormatError(f"{ENV}={want}: {why}")
    return want


def choose(op: str, cap: str | None = None) -> str:
    """The path `op` runs on this host: the widest implemented one the CPU supports and not wider than
    `cap` (default: RAGBIT_KERNEL, else no cap)."""
    if op not in IMPLEMENTED:
        raise KernelFormatError(f"unknown kernel operation {op!r}")
    cap = forced() if cap is None else cap
    floor = PATHS.index(cap) if cap else 0
    for path in IMPLEMENTED[op]:
        if PATHS.index(path) >= floor and supported(path):
            return path
    return "portable"


def report() -> dict[str, str]:
    """{operation: path} as `choose` answers now (for logs, `--json` output and benchmarks)."""
    return {op: choose(op) for op in IMPLEMENTED}
