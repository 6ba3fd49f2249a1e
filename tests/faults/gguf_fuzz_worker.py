"""`python -m tests.faults.gguf_fuzz_worker BASE FIRST_SEED COUNT WORKDIR FULL`: load seeded mutations of the
GGUF file BASE, one JSON line per variant on stdout.

A variant is loaded the way ragbit loads a model: `Qwen3Model.load` (parse, validate, repack) and, when it
loads, a short forward pass (prefill 3 tokens, decode 1) so the kernels read every tensor. FULL=1 also
builds the tokenizer and chat template (`Generator.load`), for bases that carry one.

Outcomes: "ok" (harmless mutation), "error" (a domain error: what the CLI prints as one line), "crash" (any
other exception: a bug), "timeout". Memory is bounded with RLIMIT_AS and time per variant with SIGALRM; a
segfault kills the process, and the parent attributes it to the last {"start": seed} line.
"""
from __future__ import annotations

import json
import random
import resource
import signal
import sys
import traceback
from pathlib import Path

MEMORY_LIMIT = 3 << 30          # bytes of address space: a count of 2**63 must fail, not allocate
SECONDS_PER_VARIANT = 20


class VariantTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise VariantTimeout()


def main() -> None:
    base, first, count, workdir, full = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]), \
        sys.argv[5] == "1"
    from generator.chat import ChatTemplateError
    from generator.generate import GenerationError, Generator
    from generator.gguf_file import GGUFError
    from generator.model import ModelError, Qwen3Model
    from generator.tokenizer import TokenizerError
    from tests.faults.gguf_mutate import header_end, mutate
    domain = (GGUFError, ModelError, TokenizerError, ChatTemplateError, GenerationError)
    data = base.read_bytes()
    head = header_end(base)
    # Compile the kernels on the unmutated model first: on a fresh checkout (cold numba cache) LLVM would
    # otherwise compile under the memory limit below and fail, which says nothing about the variant.
    warm = (Generator.load(base, n_ctx=32, threads=1).model if full else Qwen3Model.load(base, n_ctx=32, threads=1))
    warm.prefill([1, 2, 3])
    warm.decode(4)
    del warm
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    signal.signal(signal.SIGALRM, _alarm)
    path = None
    for seed in range(first, first + count):
        variant, what = mutate(data, random.Random(seed), head)
        # a new file per variant: rewriting the previous one in place would truncate pages that the previous
        # variant's model may still map (SIGBUS on touch); an unlinked file stays valid for its old mappings
        model = gen = None
        if path is not None:
            path.unlink(missing_ok=True)
        path = workdir / f"variant-{seed}.gguf"
        path.write_bytes(variant)
        print(json.dumps({"start": seed}), flush=True)
        signal.alarm(SECONDS_PER_VARIANT)
        record = {"seed": seed, "what": what}
        try:
            if full:
                gen = Generator.load(path, n_ctx=32, threads=1)
                model = gen.model
            else:
                model = Qwen3Model.load(path, n_ctx=32, threads=1)
            model.prefill([1, 2, 3])
            model.decode(4)
            record["outcome"] = "ok"
        except domain as e:
            record.update(outcome="error", message=str(e))
        except VariantTimeout:
            record["outcome"] = "timeout"
        except BaseException as e:       # MemoryError included: nothing may allocate unboundedly
            record.update(outcome="crash", message=f"{type(e).__name__}: {e}",
                          traceback=traceback.format_exc()[-2000:])
        finally:
            signal.alarm(0)
        print(json.dumps(record), flush=True)
    if path is not None:
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
