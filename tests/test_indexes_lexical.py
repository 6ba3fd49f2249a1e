"""Code tokenizer and BM25 lexical index."""
import numpy as np
import pytest

from indexes.lexical import LexicalIndex, code_tokens


@pytest.mark.parametrize("text, expected", [
    ("QuerySet.filter_by", ["queryset.filter_by", "queryset", "query", "set", "filter_by", "filter", "by"]),
    ("parseHTTPResponse", ["parsehttpresponse", "parse", "http", "response"]),
    ("sha256sum", ["sha256sum", "sha", "256", "sum"]),
    ("MAX_RETRY_COUNT", ["max_retry_count", "max", "retry", "count"]),
    ("__init__", ["__init__", "init"]),
    ("src/ragbit/walker.py", ["src", "ragbit", "walker.py", "walker", "py"]),
])
def test_code_tokens_splits_and_keeps_whole(text, expected):
    assert code_tokens(text) == expected


def test_code_tokens_drops_short_tokens_and_free_standing_stop_words():
    toks = code_tokens("How does the x parser handle self.path?")
    assert toks == ["parser", "handle", "self.path", "path"]
    # the same word inside an identifier is kept: it carries meaning there
    assert "by" in code_tokens("group_by")
    assert code_tokens("") == [] and code_tokens("the a of ( ) ; =") == []


def test_code_tokens_identical_for_query_and_document_spelling():
    assert set(code_tokens("query set")) <= set(code_tokens("QuerySet"))


DOCS = [
    "def parseHttpResponse(raw):\n    return Response(raw)",        # 0: identifier only present joined
    "the http layer sends requests and reads responses",               # 1: split words only
    "class QuerySet:\n    def filter_by(self, **kw): ...",             # 2
    "a query is a set of conditions; filter them later",               # 3: same words, not the identifier
    "",                                                                 # 4: empty document
]


@pytest.fixture(scope="module")
def index():
    return LexicalIndex.build(DOCS)


def test_split_query_finds_joined_identifier(index):
    hits = index.search("how do we parse an http response", k=10)
    assert hits[0][0] == 0
    assert all(score > 0 for _, score in hits)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_joined_query_prefers_exact_identifier(index):
    hits = index.search("QuerySet.filter_by", k=10)
    assert hits[0][0] == 2
    assert 3 in [d for d, _ in hits]          # the split words still match the prose document, lower
    assert dict(hits)[2] > dict(hits)[3]


def test_out_of_vocabulary_and_empty_queries_return_nothing(index):
    assert index.search("zebra quokka", k=5) == []
    assert index.search("", k=5) == []
    assert index.search("the of a", k=5) == []


def test_k_larger_than_corpus_and_only_positive_scores(index):
    hits = index.search("http", k=1000)
    assert {d for d, _ in hits} == {0, 1}
    assert index.search("http", k=1) == hits[:1]
    assert index.search("http", k=0) == []
    assert len(index) == len(DOCS)


def test_save_load_round_trip(index, tmp_path):
    index.save(tmp_path / "lex")
    loaded = LexicalIndex.load(tmp_path / "lex")
    assert len(loaded) == len(index)
    for q in ["parse http response", "QuerySet", "filter conditions", "nothing_here"]:
        a, b = index.search(q, 10), loaded.search(q, 10)
        assert [d for d, _ in a] == [d for d, _ in b]
        np.testing.assert_allclose([s for _, s in a], [s for _, s in b], rtol=1e-6)


def test_empty_corpus(tmp_path):
    empty = LexicalIndex.build([])
    assert len(empty) == 0 and empty.search("anything", 5) == []
    empty.save(tmp_path / "e")
    assert LexicalIndex.load(tmp_path / "e").search("anything", 5) == []


def test_load_rejects_a_directory_that_is_not_an_index(tmp_path):
    with pytest.raises(ValueError, match="not a lexical index"):
        LexicalIndex.load(tmp_path)


def test_load_reports_damaged_files_as_value_error(index, tmp_path):
    index.save(tmp_path / "lex")
    terms = next((tmp_path / "lex").glob("seg-*/terms.json"))
    terms.write_text(terms.read_text()[:20])
    with pytest.raises(ValueError, match="unreadable lexical segment"):
        LexicalIndex.load(tmp_path / "lex")


def test_repeated_query_terms_weigh_more():
    index = LexicalIndex.build(["alpha gamma", "beta gamma", "delta"])
    hits = index.search("alpha beta beta", k=3)
    assert [d for d, _ in hits] == [1, 0]
    assert hits[0][1] == pytest.approx(2 * hits[1][1], rel=1e-5)     # symmetric docs: twice the mentions
