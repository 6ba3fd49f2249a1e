"""Embedded views (ragbit/indexing/embed_views.py): long chunks are embedded as short views, nothing is cut,
one unit vector per chunk comes back, and the vector cache never mixes view vectors with whole-chunk ones."""
from __future__ import annotations

import numpy as np
import pytest

from ragbit.config import ConfigError, EmbedConfig, RagbitConfig
from ragbit.indexing.embed_views import plan_views, pool_views, split_views, vector_cache_id
from ragbit.indexing.embeddings import Embedder, packaged_model_dir


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(packaged_model_dir() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def _long_chunk(lines: int = 20) -> str:
    body = "\n".join(f"    total{i} = value(item{i}) * {i}" for i in range(lines))
    return "src/pkg/module.py\nclass Accumulator\ndef accumulate(items):\n" + body + "\n    return total"


def _ids(tok, text):
    return tok.encode(text, add_special_tokens=False).ids


def test_short_text_is_its_own_view(tokenizer):
    text = "src/a.py\ndef add(a, b):\n    return a + b"
    views, owner = plan_views([text], tokenizer, 128)
    assert views == [text] and owner.tolist() == [0]


def test_long_text_is_split_into_views_that_fit_and_lose_nothing(tokenizer):
    text = _long_chunk()
    n = len(_ids(tokenizer, text))
    views, owner = plan_views([text, "src/b.py\nx = 1"], tokenizer, 128)
    assert len(plan_views([_long_chunk(60)], tokenizer, 128)[0]) >= 3
    mine = [v for v, o in zip(views, owner) if o == 0]
    assert 126 < n <= 254 and len(mine) == 2 and owner.tolist()[-1] == 1
    for v in mine:
        assert len(_ids(tokenizer, v)) <= 128 - 2 + 2          # two spare: a cut word piece may re-tokenize
    for v in mine[1:]:
        assert v.startswith("src/pkg/module.py\n")             # every later view says where it comes from
    # every line of the chunk is in exactly one view (cuts land on line starts here), in order
    body_lines = [v.split("\n") for v in mine]
    rebuilt = body_lines[0] + [line for lines in body_lines[1:] for line in lines[1:]]
    assert [line.strip() for line in rebuilt] == [line.strip() for line in text.split("\n")]
    sizes = [len(_ids(tokenizer, v)) for v in mine]
    assert max(sizes) - min(sizes) < 30                         # nearly equal views: little padding


def test_a_single_long_line_is_cut_at_token_boundaries(tokenizer):
    text = "data/words.txt\n" + " ".join(f"word{i}" for i in range(400))
    enc = tokenizer.encode(text, add_special_tokens=False)
    views = split_views(text, enc.offsets, 64)
    assert len(views) >= 2 and all(len(_ids(tokenizer, v)) <= 64 for v in views)
    words = [w for v in views for w in v.split("\n", 1)[-1].split() if w.startswith("word")]
    assert words == [f"word{i}" for i in range(400)]


def test_pool_views_is_the_normalised_mean():
    v = np.eye(3, dtype=np.float32)
    out = pool_views(v, np.array([0, 0, 1]), 2)
    assert np.allclose(out[0], [2 ** -0.5, 2 ** -0.5, 0]) and np.allclose(out[1], [0, 0, 1])
    assert out.dtype == np.float32


def test_view_size_is_part_of_the_cache_key_and_config_is_checked():
    assert vector_cache_id("m", 0) == "m" and vector_cache_id("m", 128) != vector_cache_id("m", 96)
    assert Embedder(EmbedConfig(view_tokens=0)).vector_cache_id == Embedder().model_id
    assert Embedder(EmbedConfig(view_tokens=128)).vector_cache_id != Embedder().model_id
    assert Embedder(EmbedConfig(view_tokens=4096)).view_tokens == 0      # no shorter than the model's window
    with pytest.raises(ConfigError, match="view_tokens"):
        RagbitConfig.load(overrides={"embed": {"view_tokens": 3}})


def test_changing_the_view_size_re_embeds_and_switching_back_reuses(tmp_path):
    from ragbit.indexing.indexer import index_repository
    from tests.retrieval_fixtures import FakeEmbedder, make_repo

    class ViewsEmbedder(FakeEmbedder):
        def __init__(self, view_tokens):
            super().__init__()
            self.view_tokens = view_tokens
            self.vector_cache_id = vector_cache_id(self.model_id, view_tokens)

    repo = make_repo(tmp_path / "repo")
    cfg = RagbitConfig.load(repo)
    first = index_repository(cfg, progress=False, embedder=ViewsEmbedder(0))
    assert first.chunks_embedded == first.chunks > 0
    views = index_repository(cfg, progress=False, embedder=ViewsEmbedder(128))
    assert views.chunks_embedded == views.chunks                # old whole-chunk vectors are not taken
    again = index_repository(cfg, progress=False, embedder=ViewsEmbedder(128))
    assert again.chunks_embedded == 0
    back = index_repository(cfg, progress=False, embedder=ViewsEmbedder(0))
    assert back.chunks_embedded == 0 and back.dense_complete     # the whole-chunk vectors are still cached
