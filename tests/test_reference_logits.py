"""Logits of the two reference models (tests/fixtures/reference, README "Noise floor and how to compare").

* vs `*.f32ref.npy` (an independent float32 forward pass): max abs <= 1e-3. This is the sharp test: our
  engine also computes in float32, so only summation order differs (measured ~1e-5).
* vs `*.llamacpp.npy`: max abs <= 0.35 and mean abs <= 0.04 (llama.cpp rounds activations to Q8_0
  before every Q1_0 product; its own worst case against the float32 reference is 0.234 / 0.031).
* Feeding the same tokens as one prefill, or as a shorter prefill plus single-token decode steps, must
  give the same logits (<= 1e-4: the batched matmul and the matvec kernels only sum in another order).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from generator.kernels import dispatch
from generator.model import ContextOverflowError, ModelError, Qwen3Model, kv_cache_bytes_for_file

REF = Path(__file__).parent / "fixtures" / "reference"
ENTRIES = json.loads((REF / "logits" / "logits.json").read_text())
MODEL_FILES = sorted({e["model"] for e in ENTRIES})


@pytest.fixture(scope="module")
def models():
    return {name: Qwen3Model.load(REF / name, n_ctx=512, threads=1) for name in MODEL_FILES}


def _id(e):
    return f"{e['model'].split('-q1_0')[0]}-{e['prompt_name']}-step{e['step']}"


@pytest.mark.parametrize("entry", ENTRIES, ids=[_id(e) for e in ENTRIES])
def test_logits_match_references(models, entry):
    model = models[entry["model"]]
    ids = entry["input_ids"]
    assert entry["position"] == len(ids) - 1
    model.reset()
    ours = model.prefill(ids).copy()
    f32ref = np.load(REF / entry["files"]["f32ref"])
    llama = np.load(REF / entry["files"]["llamacpp"])
    d_ref, d_llama = np.abs(ours - f32ref), np.abs(ours - llama)
    print(f"\n{_id(entry)}: vs f32ref max {d_ref.max():.2e} mean {d_ref.mean():.2e}; "
          f"vs llama.cpp max {d_llama.max():.3f} mean {d_llama.mean():.4f}")
    assert ours.shape == (151936,) and ours.dtype == np.float32
    assert d_ref.max() <= 1e-3
    assert d_llama.max() <= 0.35 and d_llama.mean() <= 0.04
    assert int(np.argmax(ours)) == int(np.argmax(f32ref))


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e["step"] == 4], ids=_id)
def test_prefill_then_decode_equals_prefill_all(models, entry):
    model = models[entry["model"]]
    ids = entry["input_ids"]
    model.reset()
    all_at_once = model.prefill(ids).copy()
    model.reset()
    model.prefill(ids[:-4])
    for tok in ids[-4:]:
        stepped = model.decode(tok)
    d = np.abs(stepped - all_at_once)
    print(f"\n{_id(entry)}: prefill-all vs prefill+4 decode: max {d.max():.2e}")
    assert model.n_past == len(ids)
    assert d.max() <= 1e-4
    # truncate + re-decode reuses the cached prefix and reproduces the same logits
    model.truncate(len(ids) - 1)
    again = model.decode(ids[-1])
    assert np.abs(again - all_at_once).max() <= 1e-4


def test_cache_accounting_and_context_overflow():
    model = Qwen3Model.load(REF / MODEL_FILES[0], n_ctx=8, threads=1)
    assert model.kv_cache_bytes == model.k_cache.nbytes + model.v_cache.nbytes
    assert model.kv_cache_bytes == kv_cache_bytes_for_file(REF / MODEL_FILES[0], 8)
    with pytest.raises(ContextOverflowError, match="n_ctx=8"):
        model.prefill(list(range(9)))
    assert model.n_past == 0                                  # nothing was appended
    first = model.prefill([785, 6722, 315]).copy()
    model.prefill([9625, 374, 1, 2, 3])
    assert model.n_past == 8
    with pytest.raises(ContextOverflowError):
        model.decode(5)
    with pytest.raises(ModelError, match="truncate"):
        model.truncate(9)
    model.reset()
    with pytest.raises(ModelError, match="out of range"):
        model.prefill([151936])
    with pytest.raises(ModelError, match="empty"):
        model.prefill([])
    model.truncate(0)
    assert np.array_equal(model.prefill([785, 6722, 315]), first)  # same input, same cache state, same logits
    with pytest.raises(ModelError, match="n_ctx"):
        Qwen3Model.load(REF / MODEL_FILES[0], n_ctx=10**6)
    assert Qwen3Model.estimate_kv_cache_bytes(REF / MODEL_FILES[0], 8) == model.kv_cache_bytes


def test_yarn_rope_tables_follow_the_readme():
    """README: for head_dim 128, base 1e6, YaRN x4 over 16384, pairs j <= 20 keep their frequency, pairs
    j >= 37 are divided by 4 (linear in between), and cos/sin carry mscale = 1 + 0.1 ln 4."""
    from generator.layers import rope_tables

    p = 1000
    cos, sin = rope_tables(p + 1, 128, 1e6, 4.0, 16384)
    plain_cos, plain_sin = rope_tables(p + 1, 128, 1e6)
    mscale = 1 + 0.1 * np.log(4.0)
    assert np.allclose(np.hypot(cos[p], sin[p]), mscale, atol=1e-6)
    angle = np.arctan2(sin[p], cos[p])
    j = np.arange(64)
    theta = p * 1e6 ** (-2.0 * j / 128)
    wrap = lambda a: np.angle(np.exp(1j * a))  # noqa: E731
    assert np.allclose(angle[:21], wrap(theta[:21]), atol=1e-4)          # extrapolated: unchanged
    assert np.allclose(angle[37:], wrap(theta[37:] / 4), atol=1e-4)      # interpolated: frequency / 4
    ramp = 1 - (j[21:37] - 20) / 17
    assert np.allclose(angle[21:37], wrap(theta[21:37] * (ramp + (1 - ramp) / 4)), atol=1e-4)
    assert np.allclose(np.hypot(plain_cos[p], plain_sin[p]), 1.0, atol=1e-6)


@pytest.mark.parametrize("kv_cache", ["f32", "f16"])
@pytest.mark.parametrize("entry", [e for e in ENTRIES if e["step"] == 4], ids=_id)
def test_int11_decode_kernel_stays_within_llama_cpp_tolerances(entry, kv_cache, int11_path):
    """The default decode kernel of `ragbit generate` ("int11": per-group activation sums rounded to 11-bit
    integers) is not float32-exact, so it is held to the llama.cpp comparison of the reference README:
    max abs <= 0.35 and mean abs <= 0.04 against llama.cpp, and the same argmax as the float32 reference.
    The last 4 tokens go through decode (the int11 path); the prompt before them is prefill: int8 activations
    on VNNI (q1_0_vnni.py), float32 elsewhere.
    With kv_cache="f16" (ragbit's default, and llama.cpp's) both attention paths read F16 keys/values.
    Against f32ref <= 0.1. Measured: ~0.025 max against f32ref (F16 alone adds ~4e-3), ~0.15 / 0.02 against
    llama.cpp. Run on every instruction-set path of the int11 kernel this CPU has (`int11_path`)."""
    model = Qwen3Model.load(REF / entry["model"], n_ctx=512, threads=1, q1_decode="int11", kv_cache=kv_cache)
    assert model.kernel_paths["decode"] == f"{dispatch.choose('q1_decode_int11')} (int11)"
    assert model.kernel_paths["prefill"] == dispatch.choose("q1_prefill_int11")
    assert model.k_cache.dtype == (np.uint16 if kv_cache == "f16" else np.float32)
    ids = entry["input_ids"]
    model.prefill(ids[:-4])
    for tok in ids[-4:]:
        ours = model.decode(tok)
    f32ref = np.load(REF / entry["files"]["f32ref"])
    llama = np.load(REF / entry["files"]["llamacpp"])
    d_ref, d_llama = np.abs(ours - f32ref), np.abs(ours - llama)
    print(f"\n{_id(entry)} int11, {kv_cache} kv: vs f32ref max {d_ref.max():.2e}; vs llama.cpp max "
          f"{d_llama.max():.3f} mean {d_llama.mean():.4f}")
    assert 1e-6 < d_ref.max() <= 0.1            # really the int11 path, not the float one
    assert d_llama.max() <= 0.35 and d_llama.mean() <= 0.04
    # our pick is the reference's, or (where the reference's top two are closer than the 0.1 this mode may
    # deviate: 0.0075 apart on chat_long_context of the tied model) one it scores within that of its best
    assert f32ref[int(np.argmax(ours))] >= f32ref.max() - 2 * 0.1
    if np.sort(f32ref)[-2] < f32ref.max() - 2 * 0.1:
        assert int(np.argmax(ours)) == int(np.argmax(f32ref))


def test_unknown_decode_kernel_is_a_model_error():
    with pytest.raises(ModelError, match="decode kernel"):
        Qwen3Model.load(REF / MODEL_FILES[0], n_ctx=16, q1_decode="int3")


def test_bad_forced_kernel_path_is_a_model_error(monkeypatch):
    monkeypatch.setenv(dispatch.ENV, "neon")
    with pytest.raises(ModelError, match="^RAGBIT_KERNEL='neon' is not a kernel path"):
        Qwen3Model.load(REF / MODEL_FILES[0], n_ctx=16)


def test_f16_kv_cache_alone_is_close_to_float32():
    """F16 keys/values with the exact float kernels: only the cache rounding differs from the float32 path
    (relative 2^-11 per stored value). Tolerance 2e-2 on the logits (measured ~4e-3)."""
    entry = next(e for e in ENTRIES if e["step"] == 4)
    ids = entry["input_ids"]
    exact = Qwen3Model.load(REF / entry["model"], n_ctx=64, threads=1)
    half = Qwen3Model.load(REF / entry["model"], n_ctx=64, threads=1, kv_cache="f16")
    a = exact.prefill(ids).copy()
    b = half.prefill(ids).copy()
    assert 0 < np.abs(a - b).max() <= 2e-2
    assert half.kv_cache_bytes * 2 == exact.kv_cache_bytes
    assert Qwen3Model.estimate_kv_cache_bytes(REF / entry["model"], 64, "f16") == half.kv_cache_bytes
    with pytest.raises(ModelError, match="KV cache type"):
        Qwen3Model.load(REF / entry["model"], n_ctx=16, kv_cache="q2")


def _quantized_cache_logits(entry, kind, dtype, bytes_per_f16_byte):
    """(model, logits) of an entry with a `kind` KV cache: its prompt but the last 4 tokens prefilled, those 4
    decoded. Checks the cache's element type, that keys and values are rotated, and its bytes (scales included)
    against the F16 cache's."""
    ids = entry["input_ids"]
    model = Qwen3Model.load(REF / entry["model"], n_ctx=512, threads=1, kv_cache=kind)
    assert model.k_cache.dtype == dtype and model.cache.rotated
    half_bytes = kv_cache_bytes_for_file(REF / entry["model"], 512, "f16")
    assert model.kv_cache_bytes == model.cache.nbytes == kv_cache_bytes_for_file(REF / entry["model"], 512, kind)
    assert model.kv_cache_bytes == half_bytes * bytes_per_f16_byte // 2
    model.prefill(ids[:-4])
    for tok in ids[-4:]:
        ours = model.decode(tok)
    return model, ours


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e["step"] == 4], ids=_id)
def test_q8_kv_cache_stays_within_llama_cpp_tolerances(entry):
    """The 8-bit cache (int8 per 32 values, kv_cache.store_kv_blocks, q k v rotated by kv_cache.rotate_heads) with the
    exact float kernels, so only the cache rounds: held to the llama.cpp comparison (max abs <= 0.35, mean <= 0.04)
    and <= 0.15 from the float32 reference (measured 0.048-0.087, F16 alone ~4e-3), the reference's argmax unless
    its top two are within that. It costs 56% of the F16 cache's bytes, scales included."""
    ids = entry["input_ids"]
    model, ours = _quantized_cache_logits(entry, "q8", np.int8, 1 + 4 / 32)
    f32ref, llama = np.load(REF / entry["files"]["f32ref"]), np.load(REF / entry["files"]["llamacpp"])
    d_ref, d_llama = np.abs(ours - f32ref), np.abs(ours - llama)
    print(f"\n{_id(entry)} q8 kv: vs f32ref max {d_ref.max():.3f}; vs llama.cpp max {d_llama.max():.3f} "
          f"mean {d_llama.mean():.4f}")
    assert 1e-3 < d_ref.max() <= 0.15           # really rounded, and not far
    assert d_llama.max() <= 0.35 and d_llama.mean() <= 0.04
    assert f32ref[int(np.argmax(ours))] >= f32ref.max() - 2 * 0.15
    if np.sort(f32ref)[-2] < f32ref.max() - 2 * 0.15:
        assert int(np.argmax(ours)) == int(np.argmax(f32ref))
    # prefill-all (the matrix-product attention over the int8 cache) agrees with prefill + decode
    model.reset()
    assert np.abs(model.prefill(ids) - ours).max() <= 1e-3


def test_q4_kv_cache_rounds_as_llama_cpps_own():
    """The 4-bit cache (4-bit per 32 values with a float32 scale, rotated q k v) with the exact float kernels, so only
    the cache rounds, against llama.cpp's own 4-bit cache (Q4_0 K and V, with its Hadamard rotation) on the same
    models and tokens (fixtures/reference/SOURCE.md): over the four step-4 entries, ragbit's logits move from the
    float32 reference by no more than 1.15x what llama.cpp's do, max and mean averaged (measured 0.99x / 0.95x;
    per entry they scatter 0.8-1.3x either way: on random-weight models 4 bits move the logits ~10x more than 8,
    and real weights are untested here). And by more than q8's bound (really 4-bit). prefill-all (the
    matrix-product attention over the 4-bit cache) agrees with prefill + decode. The cache costs 31% of the F16
    cache's bytes, scales included."""
    ours_err, llama_err = [], []
    for entry in [e for e in ENTRIES if e["step"] == 4]:
        ids = entry["input_ids"]
        model, ours = _quantized_cache_logits(entry, "q4", np.uint8, 0.5 + 4 / 32)
        f32ref = np.load(REF / entry["files"]["f32ref"])
        llama_q4 = np.load(REF / entry["files"]["llamacpp"].replace(".llamacpp.npy", ".llamacpp-kv-q4_0.npy"))
        d_ref, d_llama = np.abs(ours - f32ref), np.abs(llama_q4 - f32ref)
        print(f"\n{_id(entry)} q4 kv: vs f32ref max {d_ref.max():.3f} mean {d_ref.mean():.4f}; llama.cpp q4_0 "
              f"kv vs f32ref max {d_llama.max():.3f} mean {d_llama.mean():.4f}")
        assert d_ref.max() > 0.3
        ours_err.append((d_ref.max(), d_ref.mean()))
        llama_err.append((d_llama.max(), d_llama.mean()))
        model.reset()
        assert np.abs(model.prefill(ids) - ours).max() <= 1e-3
    ratio = np.mean(ours_err, axis=0) / np.mean(llama_err, axis=0)
    print(f"ragbit / llama.cpp, max and mean averaged: {ratio[0]:.2f} {ratio[1]:.2f}")
    assert np.all(ratio <= 1.15)


