"""Qwen3/Bonsai tokenizer built from a GGUF file's own `tokenizer.ggml.*` metadata.

WHY from the GGUF and not from a tokenizer.json: a Bonsai .gguf is the only file a user has, and it
carries the full vocabulary, merges and token types. The BPE itself is the `tokenizers` library
(byte-level BPE model + the Qwen2 split regex + ByteLevel pre-tokenizer/decoder + added tokens); what
this module adds is the handful of llama.cpp conventions that decide which ids a prompt becomes and
which tokens end generation, so that our ids are exactly llama.cpp's:

1. CONTROL and USER_DEFINED token texts are matched as single tokens when `parse_special=True`;
   with `parse_special=False` only USER_DEFINED ones (`<think>`, `<tool_call>`, ...) still are.
2. End-of-generation (EOG) tokens are found by their TEXT (llama.cpp's list), plus the file's eos id;
   every EOG token is treated as CONTROL even if the file says otherwise (Qwen's `</s>`, id 128247).
3. UNUSED tokens (`[PADnnnnnn]`, table padding) are never produced from text and render as "".
4. Detokenization concatenates token bytes; CONTROL tokens render only when asked to.
"""
from __future__ import annotations

import codecs
import threading
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

from generator.errors import GeneratorError


class TokenizerError(GeneratorError, ValueError):
    """The GGUF's tokenizer metadata is missing, inconsistent or of a kind we do not support."""


# ---------------------------------------------------------------------------------------------------
# GGUF token types (`tokenizer.ggml.token_type`), as llama.cpp numbers them
# ---------------------------------------------------------------------------------------------------
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Pre-tokenizer split regex per `tokenizer.ggml.pre`. Qwen2's regex as llama.cpp spells it: the
# contraction group is written '[sS]|'[tT]... instead of (?i:...), which also keeps Unicode case
# folding (e.g. U+017F long s) out of it, as in llama.cpp.
PRE_TOKENIZER_PATTERNS = {
    "qwen2": (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
              r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
}

# Token texts llama.cpp treats as end-of-generation whatever their type (llama-vocab.cpp, "maintain a
# list of tokens that cause end-of-generation"; it also adds the FIM pad/repo/file-separator tokens).
EOG_TEXTS = frozenset({
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>", "<|endoftext|>",
    "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>", "</s>",
    # FIM pad / repo / file-separator tokens
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>",
    "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>",
    "<|file_sep|>",
})


@lru_cache(maxsize=1)
def _byte_level_table() -> dict[int, int | None]:
    """str.translate table undoing GPT-2's byte-level alphabet: char standing for a byte -> that byte.

    Printable Latin-1 bytes stand for themselves; the other 68 bytes are mapped, in byte order, to
    U+0100 onward. Needed to turn a token's string back into its exact bytes (a token can hold half
    of a multi-byte UTF-8 character, which no str-returning decoder can express). Code points below
    256 that are NOT in the alphabet map to None (deleted), so a foreign token shows up as a length
    change; code points above 255 not in the table make the latin-1 encode fail.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table: dict[int, int | None] = {b: b for b in keep}
    table.update({b: None for b in range(256) if b not in table})
    for extra, b in enumerate(b for b in range(256) if b not in keep):
        table[0x100 + extra] = b
    return table


def _meta(meta: Mapping[str, Any], key: str, default: Any = KeyError) -> Any:
    if key in meta:
        return meta[key]
    if default is KeyError:
        raise TokenizerError(f"GGUF has no {key} (not a llama.cpp-style tokenizer)")
    return default


class BonsaiTokenizer:
    """Byte-level BPE tokenizer with llama.cpp's special-token rules; see the module docstring.

    Build it with `from_metadata(GGUFFile(path).metadata)`. Ids are those of the file (so a padded
    151,936-entry table and an unpadded 151,669-entry one both work); `n_vocab` is the table size.
    """

    def __init__(self, tokens: list[str], token_types: list[int], merges: list[str], pre: str,
                 eos_id: int | None = None, bos_id: int | None = None, pad_id: int | None = None,
                 add_bos: bool = False, eot_ids: Iterable[int] = ()):
        if len(token_types) != len(tokens):
            raise TokenizerError(f"tokenizer has {len(tokens)} tokens but {len(token_types)} token types")
        if pre not in PRE_TOKENIZER_PATTERNS:
            raise TokenizerError(f"unsupported pre-tokenizer {pre!r} (supported: {', '.join(PRE_TOKENIZER_PATTERNS)})")
        self.tokens = tokens
        self.n_vocab = len(tokens)
        self.bos_id, self.eos_id, self.pad_id, self.add_bos = bos_id, eos_id, pad_id, add_bos

        # --- EOG set and effective token types (llama.cpp rule 2)
        types = list(token_types)
        self.eog_ids: set[int] = {i for i, t in enumerate(tokens) if t in EOG_TEXTS}
        self.eog_ids |= {i for i in (eos_id, *eot_ids) if i is not None and 0 <= i < self.n_vocab}
        for i in self.eog_ids:
            types[i] = CONTROL
        self.token_types = types

        # --- detokenization table: exact bytes of every token (llama.cpp rules 3 and 4)
        table = _byte_level_table()
        self._pieces: list[bytes] = []
        for i, (t, ty) in enumerate(zip(tokens, types)):
            if ty == NORMAL:
                raw = t.translate(table)
                try:
                    if len(raw) != len(t):
                        raise UnicodeError
                    self._pieces.append(raw.encode("latin-1"))
                except UnicodeError:
                    raise TokenizerError(f"token {i} {t!r} is not a byte-level BPE token") from None
            elif ty in (CONTROL, USER_DEFINED):
                self._pieces.append(t.encode("utf-8"))
            else:  # UNUSED, UNKNOWN, BYTE: nothing to render for a gpt2-style vocabulary
                self._pieces.append(b"")
        self._control = frozenset(i for i, ty in enumerate(types) if ty == CONTROL)

        # --- tokenizers objects: BPE over the NORMAL vocabulary, special tokens as added tokens
        vocab = {t: i for i, t in enumerate(tokens) if types[i] != UNUSED}
        pairs = [tuple(m.split(" ", 1)) for m in merges]
        try:
            bpe = models.BPE(vocab=vocab, merges=pairs, ignore_merges=False, fuse_unk=False, byte_fallback=False)
        except Exception as exc:  # tokenizers raises its own exception type for bad merges
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TokenizerError(f"inconsistent tokenizer vocabulary/merges: {first}") from None   # one line
        tok = Tokenizer(bpe)
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PRE_TOKENIZER_PATTERNS[pre]), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ])
        tok.decoder = decoders.ByteLevel()
        # CONTROL texts become `special` added tokens (skipped when `encode_special_tokens` is on);
        # USER_DEFINED ones are ordinary added tokens, matched in both modes (llama.cpp rule 1).
        added = [AddedToken(tokens[i], special=types[i] == CONTROL, normalized=False)
                 for i in range(self.n_vocab) if types[i] in (CONTROL, USER_DEFINED)]
        tok.add_special_tokens([a for a in added if a.special])
        tok.add_tokens([a for a in added if not a.special])
        for a in added:  # the added tokens must keep the file's ids, not fresh ones
            if tok.token_to_id(a.content) != vocab[a.content]:
                raise TokenizerError(f"special token {a.content!r} did not keep its id {vocab[a.content]}")
        # One tokenizer serves both modes: `encode_special_tokens` (CONTROL texts tokenized as plain
        # text) is switched per call, under a lock because it is state on a shared object.
        self._hf = tok
        self._hf_lock = threading.Lock()

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> "BonsaiTokenizer":
        """Build from GGUF metadata (plain Python values, as `GGUFFile(path).metadata` gives)."""
        model = _meta(meta, "tokenizer.ggml.model")
        if model != "gpt2":
            raise TokenizerError(f"unsupported tokenizer model {model!r}: only byte-level BPE ('gpt2') is supported")
        tokens = list(_meta(meta, "tokenizer.ggml.tokens"))
        types = _meta(meta, "tokenizer.ggml.token_type", None)
        types = [int(t) for t in types] if types is not None else [NORMAL] * len(tokens)

        def opt_id(key: str) -> int | None:
            v = meta.get(key)
            return int(v) if v is not None else None

        eot = [i for i in (opt_id("tokenizer.ggml.eot_token_id"), opt_id("tokenizer.ggml.eom_token_id")) if i is not None]
        return cls(tokens, types, list(_meta(meta, "tokenizer.ggml.merges")),
                   pre=str(_meta(meta, "tokenizer.ggml.pre", "default")),
                   eos_id=opt_id("tokenizer.ggml.eos_token_id"), bos_id=opt_id("tokenizer.ggml.bos_token_id"),
                   pad_id=opt_id("tokenizer.ggml.padding_token_id"),
                   add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)), eot_ids=eot)

    # -----------------------------------------------------------------------------------------------
    # text -> ids
    # -----------------------------------------------------------------------------------------------
    def encode(self, text: str, parse_special: bool = False, add_special: bool = False) -> list[int]:
        """Token ids of `text`. `parse_special`: CONTROL texts like `<|im_start|>` become their ids
        (needed for hand-written chat prompts). `add_special`: prepend BOS if the file asks for it
        (Qwen3 does not)."""
        ids: list[int] = []
        if text:
            with self._hf_lock:
                self._hf.encode_special_tokens = not parse_special
                ids = self._hf.encode(text, add_special_tokens=False).ids
        if add_special and self.add_bos and self.bos_id is not None:
            ids = [self.bos_id, *ids]
        return ids

    def count(self, text: str) -> int:
        """Number of tokens of `text` as plain text (for context budgets)."""
        return len(self.encode(text))

    # -----------------------------------------------------------------------------------------------
    # ids -> text
    # -----------------------------------------------------------------------------------------------
    def token_bytes(self, token_id: int, render_special: bool = True) -> bytes:
        """The exact bytes a token stands for ("" for CONTROL tokens unless `render_special`)."""
        if not 0 <= token_id < self.n_vocab:
            raise TokenizerError(f"token id {token_id} out of range 0..{self.n_vocab - 1}")
        if not render_special and token_id in self._control:
            return b""
        return self._pieces[token_id]

    def decode(self, ids: Iterable[int], render_special: bool = True) -> str:
        """Text of a token sequence; invalid or split UTF-8 becomes U+FFFD."""
        return b"".join(self.token_bytes(i, render_special) for i in ids).decode("utf-8", errors="replace")

    def is_eog(self, token_id: int) -> bool:
        return token_id in self.eog_ids

    def stream_decoder(self, render_special: bool = True) -> "StreamDecoder":
        return StreamDecoder(self, render_special)


class StreamDecoder:
    """Turns ids into text one at a time, holding back bytes of a UTF-8 character that is not complete
    yet (byte-level tokens may split a character), so no piece ever contains a broken character."""

    def __init__(self, tokenizer: BonsaiTokenizer, render_special: bool = True):
        self._tokenizer = tokenizer
        self._render_special = render_special
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._utf8.decode(self._tokenizer.token_bytes(token_id, self._render_special))

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end becomes U+FFFD)."""
        return self._utf8.decode(b"", final=True)
