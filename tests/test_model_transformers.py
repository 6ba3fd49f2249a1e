"""Our Qwen3 forward pass vs Hugging Face transformers' Qwen3ForCausalLM on the same (dequantized) weights.

Tiny random models are written with generator/synthetic.py (Q1_0, Q2_0 (Ternary-Bonsai) and F32 matrices; tied plain-RoPE and
untied YaRN x4 variants; small vocab, no tokenizer, to stay fast). transformers gets the float32
dequantization of exactly the tensors our engine reads, so any difference is arithmetic, not weights.

transformers' YaRN (`rope_type="yarn"`, beta_fast 32, beta_slow 1, truncated correction range,
attention_factor 1 + 0.1 ln(factor) on cos and sin) uses the same formulas as llama.cpp, so the YaRN variant
is compared here too (and against llama.cpp's own logits in test_reference_logits.py).

Tolerance: max |ours - transformers| <= 1e-3 over all logits (logit std ~1); measured <= 5e-6 (float32
summation order only). Real bugs (wrong RoPE pairing, ignored norm gains, missing YaRN) are >= 0.1.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from generator.gguf_file import GGUFFile  # noqa: E402
from generator.kernels import dequantize  # noqa: E402
from generator.model import Qwen3Model  # noqa: E402
from generator.synthetic import PRESETS, write_synthetic_gguf  # noqa: E402

N_VOCAB = 1024
TOLERANCE = 1e-3
VARIANTS = [("tiny-tied", "Q1_0"), ("tiny-tied", "F32"), ("tiny-untied-yarn", "Q1_0"), ("tiny-untied-yarn", "F32"),
            ("tiny-tied", "Q2_0"), ("tiny-untied-yarn", "Q2_0")]


def _hf_model(gf: GGUFFile):
    """Qwen3ForCausalLM (float32, eager attention) holding the dequantized tensors of a synthetic GGUF."""
    md = gf.metadata

    def t(name: str) -> "torch.Tensor":
        ref = gf.tensor(name)
        n_in = ref.shape[0]
        n_out = ref.shape[1] if len(ref.shape) > 1 else 1
        w = dequantize(ref.ggml_type, ref.raw, n_in, n_out)
        return torch.from_numpy(np.array(w.reshape(n_out, n_in) if n_out > 1 else w.reshape(n_in)))

    rope = {"rope_type": "default", "rope_theta": md["qwen3.rope.freq_base"]}
    if md.get("qwen3.rope.scaling.type") == "yarn":
        rope = {"rope_type": "yarn", "rope_theta": md["qwen3.rope.freq_base"],
                "factor": md["qwen3.rope.scaling.factor"],
                "original_max_position_embeddings": md["qwen3.rope.scaling.original_context_length"]}
    tied = not gf.has_tensor("output.weight")
    cfg = transformers.Qwen3Config(
        vocab_size=gf.tensor("token_embd.weight").shape[1], hidden_size=md["qwen3.embedding_length"],
        intermediate_size=md["qwen3.feed_forward_length"], num_hidden_layers=md["qwen3.block_count"],
        num_attention_heads=md["qwen3.attention.head_count"],
        num_key_value_heads=md["qwen3.attention.head_count_kv"], head_dim=md["qwen3.attention.key_length"],
        rms_norm_eps=1e-6, max_position_embeddings=md["qwen3.context_length"], rope_parameters=rope,
        tie_word_embeddings=tied, attention_bias=False, torch_dtype="float32",
    )
    model = transformers.Qwen3ForCausalLM(cfg).eval()
    model.config._attn_implementation = "eager"
    sd = {"model.embed_tokens.weight": t("token_embd.weight"), "model.norm.weight": t("output_norm.weight"),
          "lm_head.weight": t("token_embd.weight") if tied else t("output.weight")}
    for i in range(cfg.num_hidden_layers):
        b, p = f"blk.{i}.", f"model.layers.{i}."
        sd.update({
            p + "input_layernorm.weight": t(b + "attn_norm.weight"),
            p + "self_attn.q_proj.weight": t(b + "attn_q.weight"),
            p + "self_attn.k_proj.weight": t(b + "attn_k.weight"),
            p + "self_attn.v_proj.weight": t(b + "attn_v.weight"),
            p + "self_attn.o_proj.weight": t(b + "attn_output.weight"),
            p + "self_attn.q_norm.weight": t(b + "attn_q_norm.weight"),
            p + "self_attn.k_norm.weight": t(b + "attn_k_norm.weight"),
            p + "post_attention_layernorm.weight": t(b + "ffn_norm.weight"),
            p + "mlp.gate_proj.weight": t(b + "ffn_gate.weight"),
            p + "mlp.up_proj.weight": t(b + "ffn_up.weight"),
            p + "mlp.down_proj.weight": t(b + "ffn_down.weight"),
        })
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all(k == "lm_head.weight" for k in missing), (missing, unexpected)
    return model


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("synthetic")
    for i, (preset, wtype) in enumerate(VARIANTS):
        write_synthetic_gguf(d / f"{preset}-{wtype}.gguf", preset, None, seed=10 + i, weight_type=wtype,
                             n_vocab=N_VOCAB)
    return d


@pytest.mark.parametrize("preset,wtype", VARIANTS)
def test_logits_match_transformers(synthetic_dir, preset, wtype):
    path = synthetic_dir / f"{preset}-{wtype}.gguf"
    model = Qwen3Model.load(path, n_ctx=128)
    assert model.config.rope_scaling == ("yarn" if PRESETS[preset].yarn else "none")
    hf = _hf_model(model.gguf)

    rng = np.random.default_rng(0)
    prompt = rng.integers(0, N_VOCAB, size=37).tolist()
    steps = rng.integers(0, N_VOCAB, size=5).tolist()
    with torch.no_grad():
        ref = hf(torch.tensor([prompt + steps])).logits[0].numpy()  # (len, n_vocab): logits after each token

    ours = [model.prefill(prompt).copy()]                      # batch path
    ours += [model.decode(tok).copy() for tok in steps]          # cached single-token path
    diffs = [np.abs(o - ref[len(prompt) - 1 + k]) for k, o in enumerate(ours)]
    print(f"\n{preset} {wtype}: prefill max {diffs[0].max():.2e} mean {diffs[0].mean():.2e}; "
          f"decode max {max(d.max() for d in diffs[1:]):.2e} mean {np.mean([d.mean() for d in diffs[1:]]):.2e}")
    assert ref.std() > 0.3  # logits are not degenerate
    for k, d in enumerate(diffs):
        assert d.max() <= TOLERANCE, f"step {k}: max abs diff {d.max():.3g}"
    assert model.n_past == len(prompt) + len(steps)


@pytest.mark.parametrize("preset", ["tiny-tied", "tiny-untied-yarn"])
def test_ternary_q2_0_fast_mode_follows_transformers(synthetic_dir, preset, int11_path):
    """Q2_0 (Ternary-Bonsai) in the integer mode `ragbit generate` runs (int11 decode tables, int8 prefill on
    VNNI), on every instruction-set path this CPU has, along transformers' greedy continuation of 12 tokens on
    the dequantized weights: logits within the llama.cpp tolerances of the reference README (max abs <= 0.35,
    mean abs <= 0.04: integer activations are not float32-exact), and the same greedy token at every step whose
    reference top-1 margin exceeds twice our largest error there (where rounding cannot flip it)."""
    from generator.kernels import dispatch

    model = Qwen3Model.load(synthetic_dir / f"{preset}-Q2_0.gguf", n_ctx=128, q1_decode="int11", kv_cache="f16")
    assert model.kernel_paths["decode"] == f"{dispatch.choose('q2_decode_int11')} (int11)"
    assert model.kernel_paths["prefill"] == dispatch.choose("q2_prefill_int11")
    hf = _hf_model(model.gguf)
    prompt = np.random.default_rng(1).integers(0, N_VOCAB, size=37).tolist()
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(12):
            ids.append(int(hf(torch.tensor([ids])).logits[0, -1].argmax()))
        ref = hf(torch.tensor([ids])).logits[0, len(prompt) - 1:].numpy()   # (13, n_vocab)
    ours = np.stack([model.prefill(prompt).copy()] + [model.decode(t).copy() for t in ids[len(prompt):]])
    diff = np.abs(ours - ref)                                               # (13, n_vocab)
    top2 = np.sort(ref, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > 2 * diff.max(axis=1)              # steps rounding cannot flip
    print(f"\n{preset} Q2_0 int11 on {int11_path}: max {diff.max():.3f} mean {diff.mean():.4f}; "
          f"{decided.sum()} of {len(ref)} steps decided")
    assert diff.max() <= 0.35 and diff.mean() <= 0.04
    assert decided.sum() >= len(ref) // 2                                   # the check below has teeth
    assert np.array_equal(ours.argmax(axis=1)[decided], ref.argmax(axis=1)[decided])
