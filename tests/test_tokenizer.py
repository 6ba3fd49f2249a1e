"""BonsaiTokenizer against llama.cpp's own tokenization of the reference GGUF (tokenize.jsonl, greedy.jsonl)."""
from __future__ import annotations

import pytest

from conftest import read_jsonl
from generator.tokenizer import CONTROL, USER_DEFINED, BonsaiTokenizer, TokenizerError

TOKENIZE = read_jsonl("tokenize.jsonl")
GREEDY = read_jsonl("greedy.jsonl")


@pytest.mark.parametrize("case", TOKENIZE, ids=[c["name"] for c in TOKENIZE])
def test_ids_match_llama_cpp(bonsai_tokenizer, case):
    assert bonsai_tokenizer.encode(case["text"], parse_special=case["parse_special"]) == case["ids"]


@pytest.mark.parametrize("case", TOKENIZE, ids=[c["name"] for c in TOKENIZE])
def test_detokenization_matches_llama_cpp(bonsai_tokenizer, case):
    assert bonsai_tokenizer.decode(case["ids"]) == case["detok"]
    if "detok_without_special" in case:
        assert bonsai_tokenizer.decode(case["ids"], render_special=False) == case["detok_without_special"]


def test_greedy_prompt_ids(bonsai_tokenizer):
    # Both reference models share the tokenizer, so one table serves all 12 prompts.
    for run in GREEDY:
        assert bonsai_tokenizer.encode(run["prompt"], parse_special=True, add_special=True) == run["prompt_ids"], run["prompt_name"]


def test_special_token_rules(bonsai_tokenizer):
    tok = bonsai_tokenizer
    assert tok.n_vocab == 151936
    # EOG tokens come from their text (incl. `</s>`, a plain BPE token in the file) and the eos id.
    assert tok.eog_ids == {128247, 151643, 151645, 151662, 151663, 151664}
    assert tok.token_types[128247] == CONTROL
    assert tok.token_types[151667] == USER_DEFINED           # <think>
    # USER_DEFINED tokens are matched even without parse_special, CONTROL ones only with it.
    assert tok.encode("<think>", parse_special=False) == [151667]
    assert tok.encode("<|im_end|>", parse_special=True) == [151645]
    assert len(tok.encode("<|im_end|>", parse_special=False)) > 1
    # </s> renders as text only when special tokens are rendered; [PAD] never renders.
    assert tok.decode([128247]) == "</s>" and tok.decode([128247], render_special=False) == ""
    assert tok.decode([151669, 151935]) == ""
    assert tok.decode([151667], render_special=False) == "<think>"
    with pytest.raises(TokenizerError):
        tok.decode([tok.n_vocab])


def test_stream_decoder_never_splits_characters(bonsai_tokenizer):
    tok = bonsai_tokenizer
    text = "日本語 🤔🦙 ok é"
    # Feed every character as single-byte tokens (the byte-level BPE has a token for each byte).
    ids = [i for i in range(tok.n_vocab) if len(tok.token_bytes(i)) == 1]
    by_byte = {tok.token_bytes(i): i for i in ids}
    assert len(by_byte) == 256
    seq = [by_byte[bytes([b])] for b in text.encode("utf-8")]
    dec = tok.stream_decoder()
    pieces = [dec.push(i) for i in seq] + [dec.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    # An incomplete character at the very end is flushed as one replacement character.
    dec = tok.stream_decoder()
    assert dec.push(by_byte[b"\xe6"]) == "" and dec.flush() == "\ufffd"


def test_stream_decoder_agrees_with_decode_on_real_output(bonsai_tokenizer):
    # greedy.jsonl generations are random-weight gibberish that splits multi-byte characters.
    for run in GREEDY:
        dec = bonsai_tokenizer.stream_decoder()
        streamed = "".join(dec.push(i) for i in run["generated_ids"]) + dec.flush()
        exact = b"".join(bonsai_tokenizer.token_bytes(i) for i in run["generated_ids"])
        assert exact == bytes.fromhex(run["generated_text_utf8_hex"])
        assert streamed == bonsai_tokenizer.decode(run["generated_ids"]) == exact.decode("utf-8", errors="replace")


def test_unpadded_table_gives_same_ids(tied_metadata, bonsai_tokenizer):
    """A file written without the [PAD] rows (151,669 entries) tokenizes identically."""
    meta = dict(tied_metadata)
    meta["tokenizer.ggml.tokens"] = list(meta["tokenizer.ggml.tokens"])[:151669]
    meta["tokenizer.ggml.token_type"] = list(meta["tokenizer.ggml.token_type"])[:151669]
    small = BonsaiTokenizer.from_metadata(meta)
    assert small.n_vocab == 151669
    assert small.eog_ids == bonsai_tokenizer.eog_ids
    for case in TOKENIZE[::7]:
        assert small.encode(case["text"], case["parse_special"]) == case["ids"]


def test_bad_metadata_is_a_clear_error(tied_metadata):
    with pytest.raises(TokenizerError, match="pre-tokenizer"):
        BonsaiTokenizer.from_metadata({**tied_metadata, "tokenizer.ggml.pre": "nonesuch"})
    with pytest.raises(TokenizerError, match="tokenizer.ggml.tokens"):
        BonsaiTokenizer.from_metadata({k: v for k, v in tied_metadata.items() if k != "tokenizer.ggml.tokens"})
    tokens = list(tied_metadata["tokenizer.ggml.tokens"])
    tokens[100] = "not byte level"   # raw spaces never occur in a byte-level vocabulary
    with pytest.raises(TokenizerError, match="token 100 .* not a byte-level BPE token"):
        BonsaiTokenizer.from_metadata({**tied_metadata, "tokenizer.ggml.tokens": tokens})
    with pytest.raises(TokenizerError, match="merges"):
        BonsaiTokenizer.from_metadata({**tied_metadata, "tokenizer.ggml.merges": ["Ġ zzzq"]})
    with pytest.raises(TokenizerError, match="only byte-level BPE"):
        BonsaiTokenizer.from_metadata({**tied_metadata, "tokenizer.ggml.model": "llama"})
