"""Generator: stopping rules, streaming, prefix reuse (with a scripted fake model), and end to end on
the tiny reference model against llama.cpp's greedy continuation."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from conftest import REFERENCE_DIR, read_jsonl
from generator.chat import ChatTemplate
from generator.generate import GenerationError, Generator, _StopMatcher
from generator.sampling import SamplingParams


class ScriptedModel:
    """The Qwen3Model interface with logits that make greedy decoding follow `script`: after the
    prompt, step k's logits peak at script[k]. Records what was prefilled."""

    def __init__(self, script: list[int], n_vocab: int = 151936, n_ctx: int = 4096):
        self.config = SimpleNamespace(n_vocab=n_vocab)
        self.script, self.n_ctx, self.n_past = script, n_ctx, 0
        self.prefills: list[list[int]] = []
        self.decoded: list[int] = []
        self._step = 0

    def _logits(self) -> np.ndarray:
        out = np.zeros(self.config.n_vocab, np.float32)
        out[self.script[min(self._step, len(self.script) - 1)]] = 10.0
        return out

    def reset(self):
        self.n_past = 0

    def truncate(self, n):
        assert 0 <= n <= self.n_past
        self.n_past = n

    def prefill(self, ids):
        assert self.n_past + len(ids) <= self.n_ctx
        self.prefills.append(list(ids))
        self.n_past += len(ids)
        self._step = 0
        return self._logits()

    def decode(self, token_id):
        self.decoded.append(token_id)
        self.n_past += 1
        self._step += 1
        return self._logits()


@pytest.fixture
def make_gen(bonsai_tokenizer):
    def make(text_pieces: list[str] | None = None, ids: list[int] | None = None, **kw) -> Generator:
        script = ids if ids is not None else [bonsai_tokenizer.encode(p)[0] for p in text_pieces]
        return Generator(ScriptedModel(script, **kw), bonsai_tokenizer, ChatTemplate(None))
    return make


def test_stops_at_eog_and_streams_pieces(make_gen, bonsai_tokenizer):
    gen = make_gen(ids=bonsai_tokenizer.encode("Hello world!") + [151645, 11])
    pieces: list[str] = []
    res = gen.generate("hi", chat=False, max_tokens=50, on_piece=pieces.append)
    assert list(make_gen(ids=bonsai_tokenizer.encode("Hello world!") + [151645, 11]).stream("hi", chat=False)) \
        == pieces                                            # stream() yields the same pieces
    assert pieces == ["Hello", " world", "!"] and res.text == "Hello world!"
    assert res.finish_reason == "eog" and res.token_ids == bonsai_tokenizer.encode("Hello world!")
    assert res.prompt_token_ids == bonsai_tokenizer.encode("hi")


def test_max_tokens_and_full_context_end_with_length(make_gen, bonsai_tokenizer):
    gen = make_gen(ids=bonsai_tokenizer.encode(" a b c d e f"))
    res = gen.generate("x", chat=False, max_tokens=3)
    assert res.finish_reason == "length" and res.text == " a b c" and len(gen.model.decoded) == 2
    small = make_gen(ids=bonsai_tokenizer.encode(" a b c d e f"), n_ctx=4)
    res = small.generate("x", chat=False, max_tokens=100)   # 1 prompt token + 3 cached -> full
    assert res.finish_reason == "length" and len(res.token_ids) == 4 and small.model.n_past == 4


def test_stop_string_split_across_tokens(make_gen, bonsai_tokenizer):
    # "END" arrives as "E", "ND": the "E" must be held back, never streamed.
    gen = make_gen(["The", " answer", " E", "ND", " more"])
    pieces: list[str] = []
    res = gen.generate("q", chat=False, stop=[" END"], on_piece=pieces.append)
    assert pieces == ["The", " answer"] and res.text == "The answer"
    assert res.finish_reason == "stop"
    # a false start is released once it cannot be a stop string any more
    gen = make_gen(ids=[*bonsai_tokenizer.encode("The Egg"), 151645])
    res = gen.generate("q", chat=False, stop=[" END"])
    assert res.text == "The Egg" and res.finish_reason == "eog"


def test_stop_matcher_against_brute_force():
    """Random texts cut into random pieces: the streamed output must equal the text up to the first
    stop string found once the piece completing it arrived (as a non-streaming check after each
    token would find it), and nothing held back may leak."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        text = "".join(rng.choice(list("ab\n"), size=int(rng.integers(0, 12))))
        stops = ["".join(rng.choice(list("ab\n"), size=int(rng.integers(1, 4)))) for _ in range(2)]
        cuts = sorted(rng.choice(len(text) + 1, size=min(3, len(text) + 1), replace=False).tolist())
        parts = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
        expected, seen = text, ""
        for p in parts:
            seen += p
            hits = [seen.find(s) for s in stops if s in seen]
            if hits:
                expected = seen[:min(hits)]
                break
        m, out, stopped = _StopMatcher(stops), "", False
        for p in parts:
            o, stopped = m.feed(p)
            out += o
            if stopped:
                break
        if not stopped:
            out += m.finish()
        assert out == expected, (text, stops, parts)


def test_chat_prompt_and_multibyte_stream(make_gen, bonsai_tokenizer):
    # two byte-level tokens that each hold half of "é"... built from single-byte tokens
    by_byte = {bonsai_tokenizer.token_bytes(i): i for i in range(151643) if len(bonsai_tokenizer.token_bytes(i)) == 1}
    gen = make_gen(ids=[by_byte[b"\xc3"], by_byte[b"\xa9"], 151645])
    pieces: list[str] = []
    res = gen.generate("hi", chat=True, thinking=False, on_piece=pieces.append)
    assert pieces == ["é"]
    assert bonsai_tokenizer.decode(res.prompt_token_ids) == \
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def test_prefix_reuse_prefills_only_the_new_tail(make_gen, bonsai_tokenizer):
    gen = make_gen(ids=bonsai_tokenizer.encode(" fine thanks") + [151645])
    turn1 = [{"role": "user", "content": "How are you?"}]
    r1 = gen.generate(turn1)
    turn2 = turn1 + [{"role": "assistant", "content": r1.text}, {"role": "user", "content": "Sure?"}]
    r2 = gen.generate(turn2)
    assert r2.cached_prompt_tokens > 0
    assert gen.model.prefills[-1] == r2.prompt_token_ids[r2.cached_prompt_tokens:]
    assert r2.prompt_token_ids[:r2.cached_prompt_tokens] == r1.prompt_token_ids[:r2.cached_prompt_tokens]
    # same prompt again: all but the last MATVEC_MAX_ROWS + 1 tokens are reused (recomputed on the matmul kernel)
    from generator.kernels.matrix import MATVEC_MAX_ROWS
    r3 = gen.generate(turn2)
    tail = MATVEC_MAX_ROWS + 1
    assert r3.cached_prompt_tokens == len(r3.prompt_token_ids) - tail
    assert gen.model.prefills[-1] == r3.prompt_token_ids[-tail:]


@pytest.mark.parametrize("cut", [0, 1, 2, 3])
def test_a_prompt_gives_the_same_logits_however_it_was_cut(int11_path, reference_dir, cut):
    """Whole in one prefill, or a cached prefix plus a tail: every prompt token takes the matmul kernel, so the
    logits are the same bits (the matvec kernel rounds differently: a tail of 1-2 tokens used to change the
    greedy answer of a repeated question on the integer kernels)."""
    from generator.model import Qwen3Model, prefill_chunks

    model = Qwen3Model.load(reference_dir / "tiny-tied-q1_0.gguf", n_ctx=512, q1_decode="int11")
    ids = [(7 * i + 11) % 5000 for i in range(129 + cut)]        # 129..132: a 1-4 token tail past one batch
    whole = model.prefill(ids)
    assert all(c1 - c0 > 2 for c0, c1 in prefill_chunks(len(ids), model.prefill_chunk))
    model.reset()
    model.prefill(ids[:-3])
    split = model.prefill(ids[-3:])
    np.testing.assert_array_equal(whole, split)


def test_bad_requests(make_gen):
    gen = make_gen(ids=[11], n_ctx=8)
    with pytest.raises(GenerationError, match="empty prompt"):
        gen.generate("", chat=False)
    with pytest.raises(GenerationError, match="n_ctx=8"):
        gen.generate("one two three four five six seven eight nine", chat=False)
    with pytest.raises(GenerationError, match="max_tokens"):
        gen.generate("x", chat=False, max_tokens=0)
    with pytest.raises(GenerationError, match="raw"):
        gen.generate([{"role": "user", "content": "x"}], chat=False)


def test_sampling_is_reproducible_through_the_generator(make_gen, bonsai_tokenizer):
    class NoisyModel(ScriptedModel):
        def _logits(self):
            return np.random.default_rng(self.n_past).normal(0, 1, self.config.n_vocab).astype(np.float32)

    def run(seed):
        gen = Generator(NoisyModel([0]), bonsai_tokenizer, ChatTemplate(None))
        return gen.generate("x", chat=False, max_tokens=8,
                            sampling=SamplingParams(temperature=1.0, top_k=50, seed=seed)).token_ids
    assert run(1) == run(1) != run(2)


# ---------------------------------------------------------------------------------------------------
# end to end on the tiny reference model
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_file", [
    pytest.param("tiny-tied-q1_0.gguf", marks=pytest.mark.slow),   # only 2 sure steps; the untied run checks 7
    "tiny-untied-yarn-q1_0.gguf",
])
def test_greedy_matches_llama_cpp_until_first_near_tie(model_file):
    """Free-running greedy generation of raw_capital reproduces llama.cpp's ids up to the first step
    whose llama.cpp top-2 margin is below 0.1. Why that cut: our logits differ from llama.cpp's by
    its Q8_0 activation rounding (max abs ~0.13-0.23 over the whole vector, see the reference README),
    and in the README's float32 comparison every one of the 23 greedy disagreements happened at a
    margin <= 0.056. After one different token the continuations are unrelated, so nothing later is
    compared. (The brief's 0.25 would leave zero steps for the tied model: its first margin is 0.248.)"""
    run = next(r for r in read_jsonl("greedy.jsonl")
               if r["model"] == model_file and r["prompt_name"] == "raw_capital")
    n_sure = next((k for k, m in enumerate(run["top2_margin"]) if m < 0.1), len(run["top2_margin"]))
    assert n_sure >= 2, "fixture too noisy for a meaningful check"
    gen = Generator.load(REFERENCE_DIR / model_file, n_ctx=64)
    res = gen.generate(run["prompt"], chat=False, max_tokens=n_sure, sampling=SamplingParams(temperature=0))
    assert res.prompt_token_ids == run["prompt_ids"]
    assert res.token_ids == run["generated_ids"][:n_sure]
    assert res.finish_reason == "length"
    assert res.text == gen.tokenizer.decode(run["generated_ids"][:n_sure])
    assert res.timings.load_s > 0 and res.timings.ttft_s > 0
