"""A damaged model file is one clear line, never garbage answers: NaN epsilon, a negative rope base, a tensor
whose type byte was changed, a token embedding with fewer rows than the tokenizer has tokens (issue #20)."""
from __future__ import annotations

import pytest

from generator.gguf_file import GGML_F32, GGUFError, GGUFFile
from generator.model import Qwen3Config
from tests.conftest import REFERENCE_DIR
from tests.faults.gguf_mutate import copy_of, set_metadata, set_tensor_type

TINY = REFERENCE_DIR / "tiny-tied-q1_0.gguf"


def load_config(path):
    return Qwen3Config.from_gguf(GGUFFile(path))


def test_reference_model_is_valid():
    assert load_config(TINY).n_vocab > 0


@pytest.mark.parametrize("key, value, fragment", [
    ("qwen3.attention.layer_norm_rms_epsilon", float("nan"), "layer_norm_rms_epsilon"),
    ("qwen3.attention.layer_norm_rms_epsilon", -1e-6, "layer_norm_rms_epsilon"),
    ("qwen3.rope.freq_base", -10000.0, "rope.freq_base"),
    ("qwen3.rope.freq_base", float("inf"), "rope.freq_base"),
])
def test_bad_hyper_parameters_are_one_line_errors(tmp_path, key, value, fragment):
    path = copy_of(TINY, tmp_path / "m.gguf")
    set_metadata(path, key, value)
    with pytest.raises(GGUFError, match=fragment) as e:
        load_config(path)
    assert "\n" not in str(e.value)


def test_tensor_type_changed_to_f32_is_rejected(tmp_path):
    path = copy_of(TINY, tmp_path / "m.gguf")
    set_tensor_type(path, "blk.0.attn_q.weight", GGML_F32)
    with pytest.raises(GGUFError, match="blk.0.attn_q.weight") as e:
        GGUFFile(path)
    assert "\n" not in str(e.value)


def test_embedding_smaller_than_tokenizer_is_rejected(tmp_path, monkeypatch):
    import generator.synthetic as synthetic
    plan = synthetic.tensor_plan
    monkeypatch.setattr(synthetic, "tensor_plan", lambda spec, n: plan(spec, 1000))
    path = synthetic.write_synthetic_gguf(tmp_path / "v.gguf", "tiny-tied", tokenizer_from=TINY, seed=1)
    with pytest.raises(GGUFError, match="1000 rows but the tokenizer has"):
        load_config(path)


def test_more_threads_than_cores_is_one_line(tmp_path):
    import numba

    from generator.model import ModelError, Qwen3Model
    with pytest.raises(ModelError, match="threads must be between 0"):
        Qwen3Model.load(TINY, n_ctx=64, threads=numba.config.NUMBA_NUM_THREADS + 998)
