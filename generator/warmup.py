"""Compile the engine's kernels before the first prompt, in two processes at once.

Why: numba compiles every kernel on its first call and caches it on disk (`cache=True`). On a fresh install the
first prompt therefore waits for ~26 s of compiling (Emerald Rapids; more on a slower CPU), one kernel after the
other on one core. The kernels fall in two nearly disjoint sets, the prompt's (batched matmul, batched attention,
row-wise norms) and the decoding's (matvec, one-token attention, the thread pool), so two processes, one per set,
each running a tiny model of the same layout through its half, fill the cache in about the time of the larger
half, and they can start while the caller is still busy (indexing, downloading the model).

What makes the tiny model compile what the real one runs: numba specialises on types, not sizes, and the kernel
path (AMX, VNNI, AVX2...) is chosen from the CPU and the settings alone (`kernels/dispatch.py`), so the same
weight type, decode kernel, KV cache type, thread count, head size and GQA group (the attention kernels depend on
the last two) give the same compiled functions. `tests/test_warmup.py` checks that a model of another shape then
compiles nothing.

    python -m generator.warmup --part prefill|decode [--weight-type Q1_0|Q2_0] [--decode-kernel int11]
                               [--kv-cache f16] [--threads 0] [--group 2]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

PARTS = ("prefill", "decode")
HEAD_DIM = 128              # every Bonsai size; the attention kernels are chosen by head size
PROMPT_TOKENS = 64          # more than MATVEC_MAX_ROWS: the prompt takes the batched (matmul) kernels
N_VOCAB = 16384             # the LM head (256 x 16,384) is over kernels/matrix.SERIAL_BELOW_BYTES even in Q1_0, so
#                             decoding runs it on the thread pool, as a real model runs its larger matrices


@dataclass(frozen=True)
class EngineSettings:
    """What selects the compiled kernels (the arguments `Qwen3Model.load` takes besides the file)."""

    weight_type: str = "Q1_0"        # "Q1_0" (Bonsai) or "Q2_0" (Ternary-Bonsai)
    decode_kernel: str = "int11"
    kv_cache: str = "f16"
    threads: int = 0
    group: int = 2                   # query heads per KV head: Bonsai-1.7B 16/8, 4B and 8B 32/8

    def argv(self) -> list[str]:
        return ["--weight-type", self.weight_type, "--decode-kernel", self.decode_kernel,
                "--kv-cache", self.kv_cache, "--threads", str(self.threads), "--group", str(self.group)]


def settings_for(model: str | os.PathLike[str], decode_kernel: str = "int11", kv_cache: str = "f16",
                 threads: int = 0) -> EngineSettings | None:
    """The EngineSettings that compile what `model` (a Bonsai short name or a GGUF file) will run; None when
    neither the name nor the file says (an unknown name, a file not there yet or not of the Bonsai layout)."""
    from .gguf_file import GGML_Q1_0, GGML_Q2_0, GGUFError, GGUFFile
    from .hub import BONSAI_MODELS
    from .model import ModelError, Qwen3Config
    from .synthetic import PRESETS

    name = str(model).lower()
    if name in BONSAI_MODELS:                    # known before it is downloaded: its type and shape are fixed
        preset = PRESETS[name.removeprefix("ternary-")]
        weight_type = "Q2_0" if "Q2_0" in BONSAI_MODELS[name].filename else "Q1_0"
        group = preset.n_head // preset.n_head_kv
    else:
        try:
            gguf = GGUFFile(model)
            config = Qwen3Config.from_gguf(gguf)
            weight_type = {GGML_Q1_0: "Q1_0", GGML_Q2_0: "Q2_0"}.get(gguf.tensor("blk.0.ffn_down.weight").ggml_type)
        except (GGUFError, ModelError, OSError):
            return None
        group = config.n_head // config.n_head_kv
        if weight_type is None or config.head_dim != HEAD_DIM:
            return None
    return EngineSettings(weight_type, decode_kernel, kv_cache, int(threads), group)


def compile_part(part: str, settings: EngineSettings) -> None:
    """Run a one-layer random model of the Bonsai layout through `part`'s kernels, compiling (and caching) them:
    with the model's GQA group (the attention kernels specialise on it), decoding at a short and at a long
    context (one KV head per thread from layers.PARALLEL_MIN_WORK on)."""
    import numpy as np

    from .layers import PARALLEL_MIN_WORK
    from .model import Qwen3Model, Workspace
    from .synthetic import SyntheticSpec, write_synthetic_gguf

    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; choose one of {', '.join(PARTS)}")
    with tempfile.TemporaryDirectory(prefix="ragbit-warmup-") as tmp:
        group = settings.group
        spec = SyntheticSpec(n_layer=1, n_embd=256, n_ff=384, n_head=group, n_head_kv=1, head_dim=HEAD_DIM,
                             weight_type=settings.weight_type)
        path = write_synthetic_gguf(Path(tmp) / "warmup.gguf", spec, tokenizer_from=None, n_vocab=N_VOCAB)
        long_context = PARALLEL_MIN_WORK // (2 * HEAD_DIM * group)          # where decode attention goes parallel
        model = Qwen3Model.load(path, n_ctx=long_context + 8, threads=settings.threads,
                                q1_decode=settings.decode_kernel, kv_cache=settings.kv_cache)
        if part == "prefill":                      # the prompt's batched kernels; the head's matvec is decode's
            ids = np.arange(1, PROMPT_TOKENS + 1, dtype=np.int64)
            model._forward(ids, Workspace.allocate(model.config, ids.size))
        else:                                      # one token at a time: matvec, cached attention, the head
            for token in (1, 2, 3):
                model.decode(token)
            model.cache.advance(long_context - model.n_past)              # positions of zeros: only types matter
            model.decode(4)
        del model                                  # the memory map closes before the directory goes


def start(settings: EngineSettings) -> list[subprocess.Popen]:
    """Start one compiling process per part (in the background; `wait` for them). They run in a session of
    their own: a Ctrl-C that stops the caller's answer (`ragbit chat`) must not throw their work away."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)        # this generator package, however it was found
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    processes = []
    for part in PARTS:
        log = tempfile.TemporaryFile()             # its error, if any (a file: nobody reads a pipe meanwhile)
        # cwd=root: `-m` puts the working directory first on the import path, and the caller's is the user's
        # repository, whose own `generator` package would be imported (and run) instead of this one
        p = subprocess.Popen([sys.executable, "-m", "generator.warmup", "--part", part, *settings.argv()],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env,
                             cwd=root, start_new_session=True)
        p.log = log
        processes.append(p)
    return processes


def wait(processes: list[subprocess.Popen]) -> list[str]:
    """Wait for `start`'s processes; the last error line of each that failed (then the caller just compiles
    in-process, as without a warm-up)."""
    failures = []
    for p in processes:
        if p.wait() != 0:
            p.log.seek(0)
            lines = p.log.read().decode(errors="replace").strip().splitlines()
            failures.append(lines[-1] if lines else f"exit code {p.returncode}")
    return failures


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m generator.warmup", description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=PARTS, required=True)
    ap.add_argument("--weight-type", default="Q1_0", choices=("Q1_0", "Q2_0"))
    ap.add_argument("--decode-kernel", default="int11")
    ap.add_argument("--kv-cache", default="f16")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--group", type=int, default=2, help="query heads per KV head")
    a = ap.parse_args(argv)
    compile_part(a.part, EngineSettings(a.weight_type, a.decode_kernel, a.kv_cache, a.threads, a.group))


if __name__ == "__main__":
    main()
