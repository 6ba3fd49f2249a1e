"""The kernel warm-up (generator/warmup.py): two background processes compile what a model of the Bonsai layout
will run, so the first prompt after an install compiles nothing itself.

The end-to-end check runs in a child process with an empty numba cache (NUMBA_CACHE_DIR), through ragbit's own
path (`start_kernel_warmup` as `ask()` calls it, then `load_generator`, which must wait for the warm-up even though
the half-filled cache already looks ready), and counts numba's compile events in the child: a model of another
shape than the warm-up's must then prefill, decode and decode at a long context without compiling anything."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from generator.synthetic import SyntheticSpec, write_synthetic_gguf
from generator.warmup import EngineSettings, settings_for

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = ROOT / "tests" / "fixtures" / "reference" / "tiny-tied-q1_0.gguf"   # head size 32: not Bonsai's

CHILD = """
import json, sys
from numba.core import event
compiled = []
class Count(event.Listener):
    def on_start(self, e):
        compiled.append(e.data["dispatcher"].py_func.__qualname__)
    def on_end(self, e):
        pass
event.register("numba:compile", Count())

from generator.layers import PARALLEL_MIN_WORK
from ragbit.pipeline.model_loader import load_generator, start_kernel_warmup
path = sys.argv[1]
engine = dict(threads=0, decode_kernel="int11", kv_cache="f16")
start_kernel_warmup(path, **engine)                     # as ask() does, before the index is refreshed
gen = load_generator(path, n_ctx=8448, **engine)        # waits for the warm-up
model = gen.model
model.prefill(list(range(1, 41)))                       # batched kernels
for token in (5, 6, 7):                                 # one token at a time
    model.decode(token)
group = model.config.n_head // model.config.n_head_kv
model.cache.advance(PARALLEL_MIN_WORK // (2 * 128 * group) - model.n_past)
model.decode(8)                                         # attention over many positions: KV heads in parallel
print(json.dumps(compiled))
"""


def bonsai_layout_model(path: Path, weight_type: str = "Q1_0") -> Path:
    """Two layers with the Bonsai head size (128) and GQA group (2), other sizes unlike the warm-up's model."""
    spec = SyntheticSpec(n_layer=2, n_embd=384, n_ff=640, n_head=4, n_head_kv=2, head_dim=128,
                         weight_type=weight_type)
    return write_synthetic_gguf(path, spec, tokenizer_from=TINY_MODEL, seed=5)


def test_after_the_warm_up_a_first_prompt_compiles_nothing(tmp_path):
    model = bonsai_layout_model(tmp_path / "bonsai-layout.gguf")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"), "PYTHONPATH": str(ROOT)}
    env.pop("NUMBA_DISABLE_JIT", None)
    r = subprocess.run([sys.executable, "-c", CHILD, str(model)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []
    assert r.stderr.count("compiling the CPU kernels once") == 1, r.stderr
    assert list((tmp_path / "numba-cache").rglob("warmup.*.nbi")) == []      # the tool itself has no kernels
    assert list((tmp_path / "numba-cache").rglob("layers.*.nbi"))


def test_settings_come_from_the_short_name_or_the_file(tmp_path):
    assert settings_for("bonsai-1.7b") == EngineSettings("Q1_0", group=2)
    assert settings_for("Bonsai-8B") == EngineSettings("Q1_0", group=4)
    assert settings_for("ternary-bonsai-4b", "float", "q8", 1) == EngineSettings("Q2_0", "float", "q8", 1, group=4)
    ternary = bonsai_layout_model(tmp_path / "t.gguf", "Q2_0")
    assert settings_for(ternary) == EngineSettings("Q2_0", group=2)
    assert settings_for(TINY_MODEL) is None                   # head size 32: the warm-up would compile other kernels
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + b"\0" * 40)
    for unknown in ("bonsai-3b", tmp_path / "missing.gguf", tmp_path / "junk.gguf", tmp_path):
        assert settings_for(unknown) is None


def test_a_bad_part_is_refused():
    from generator.warmup import compile_part
    with pytest.raises(ValueError, match="unknown part"):
        compile_part("train", EngineSettings())


def test_a_failed_warm_up_reports_its_last_error_line():
    """The caller then compiles in-process as before; what failed is still known."""
    from generator.warmup import start, wait
    failures = wait(start(EngineSettings(decode_kernel="nonsense")))
    assert len(failures) == 2 and all("unknown decode kernel 'nonsense'" in f for f in failures), failures


def test_only_a_model_on_this_machine_or_downloading_starts_a_warm_up(tmp_path, monkeypatch):
    """An offline `ragbit query` with no model must not leave compiling processes behind; a download does start
    them, before its first message."""
    from ragbit.pipeline import model_loader
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "empty-numba-cache"))     # nothing compiled yet
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))           # nothing downloaded
    monkeypatch.delenv("NUMBA_DISABLE_JIT", raising=False)
    monkeypatch.setattr(model_loader, "_WARMING", {})
    model_loader.start_kernel_warmup("bonsai-1.7b")
    model_loader.start_kernel_warmup(str(tmp_path / "missing.gguf"))
    assert model_loader._WARMING == {}
    heard = []
    say = model_loader.warming_while_downloading("bonsai-8b", {"threads": 1}, heard.append)
    say("downloading prism-ml/Bonsai-8B-gguf/Bonsai-8B.gguf from Hugging Face")
    try:
        assert heard == ["downloading prism-ml/Bonsai-8B-gguf/Bonsai-8B.gguf from Hugging Face"]
        assert list(model_loader._WARMING) == [EngineSettings("Q1_0", threads=1, group=4)]
        assert [p.args[p.args.index("--part") + 1] for p in model_loader._WARMING[EngineSettings(
            "Q1_0", threads=1, group=4)]] == ["prefill", "decode"]
    finally:
        for processes in model_loader._WARMING.values():
            for p in processes:
                p.kill()
                p.wait()
