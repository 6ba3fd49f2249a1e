"""Logits of the reference models via token-by-token decode (the matvec path), for a Q1_0 decode mode.

Run:  python benchmarks/q1_decode_accuracy.py float|int11

Prints, per reference entry, max/mean |ours - f32ref| and |ours - llama.cpp| (tests/test_reference_logits.py
allows 1e-3 vs f32ref and 0.35 / 0.04 vs llama.cpp) and whether the argmax matches. The engine has no
decode-mode option yet, so this script patches generator.model's prepare_matrix for the run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import generator.model as gm  # noqa: E402
from generator.kernels import prepare_matrix  # noqa: E402

REF = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "reference"


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "float"
    gm.prepare_matrix = lambda t, raw, n_in, n_out: prepare_matrix(t, raw, n_in, n_out, q1_decode=mode)
    models = {}
    for e in json.loads((REF / "logits" / "logits.json").read_text()):
        if e["model"] not in models:
            models[e["model"]] = gm.Qwen3Model.load(REF / e["model"], n_ctx=512, threads=1)
        model = models[e["model"]]
        model.reset()
        for t in e["input_ids"]:
            logits = model.prefill([t]).copy()  # one token at a time: every product is a matvec
        f32, llama = np.load(REF / e["files"]["f32ref"]), np.load(REF / e["files"]["llamacpp"])
        dr, dl = np.abs(logits - f32), np.abs(logits - llama)
        print(f"{mode} {e['model'].split('-q1_0')[0]} {e['prompt_name']} step{e['step']}: vs f32ref max {dr.max():.2e}"
              f" mean {dr.mean():.2e}; vs llama.cpp max {dl.max():.3f} mean {dl.mean():.4f};"
              f" argmax same: {np.argmax(logits) == np.argmax(f32)}")


if __name__ == "__main__":
    main()
