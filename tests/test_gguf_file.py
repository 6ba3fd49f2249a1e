"""GGUFFile on the reference models (metadata, tensors) and on corrupt copies of them.

Every corrupt file must raise GGUFError (a ValueError) whose one-line message names the file and the
problem; no other exception type, no crash.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from generator.gguf_file import GGUFError, GGUFFile
from generator.model import ModelError, Qwen3Config, Qwen3Model, kv_cache_bytes

REF = Path(__file__).parent / "fixtures" / "reference"
TIED = REF / "tiny-tied-q1_0.gguf"
UNTIED = REF / "tiny-untied-yarn-q1_0.gguf"


# ---------------------------------------------------------------------------------------------------------------
# Good files
# ---------------------------------------------------------------------------------------------------------------


def test_reference_metadata_and_tensors():
    gf = GGUFFile(TIED)
    md = gf.metadata
    assert md["general.architecture"] == "qwen3"
    assert md["qwen3.block_count"] == 4 and md["qwen3.embedding_length"] == 256
    assert md["qwen3.attention.head_count_kv"] == 2
    assert isinstance(md["qwen3.rope.freq_base"], float) and md["qwen3.rope.freq_base"] == 1e6
    assert md["tokenizer.ggml.add_bos_token"] is False
    assert md["tokenizer.ggml.eos_token_id"] == 151645
    tokens = md["tokenizer.ggml.tokens"]
    assert len(tokens) == 151936 and tokens[151644] == "<|im_start|>" and tokens[151935] == "[PAD151935]"
    assert len(md["tokenizer.ggml.merges"]) == 151387 and md["tokenizer.ggml.merges"][0] == "Ġ Ġ"
    assert md["tokenizer.ggml.token_type"][151644] == 3  # CONTROL
    assert md["tokenizer.chat_template"].startswith("{%- if tools %}")

    assert len(gf.tensor_names) == 46 and not gf.has_tensor("output.weight")
    embd = gf.tensor("token_embd.weight")
    assert (embd.ggml_type, embd.shape, embd.raw.dtype) == (41, (256, 151936), np.uint8)
    assert embd.raw.size == 151936 * 2 * 18                    # 2 Q1_0 blocks of 18 bytes per row
    norm = gf.tensor("blk.3.attn_q_norm.weight")
    assert (norm.type_name, norm.shape) == ("F32", (64,))
    gains = norm.raw.view(np.float32)
    assert gains.min() >= 0.6 and gains.max() <= 1.4            # README: random gains in 0.6..1.4


def test_config_from_reference_files():
    tied = Qwen3Config.from_gguf(GGUFFile(TIED))
    assert (tied.n_vocab, tied.n_layer, tied.n_embd, tied.n_ff) == (151936, 4, 256, 512)
    assert (tied.n_head, tied.n_head_kv, tied.head_dim, tied.rope_scaling) == (4, 2, 64, "none")
    yarn = Qwen3Config.from_gguf(GGUFFile(UNTIED))
    assert (yarn.n_layer, yarn.n_embd, yarn.q_dim, yarn.n_head_kv) == (3, 128, 512, 1)
    assert (yarn.rope_scaling, yarn.rope_factor, yarn.rope_orig_ctx, yarn.n_ctx_train) == ("yarn", 4.0, 16384, 65536)
    assert kv_cache_bytes(yarn, 1000) == 2 * 3 * 1 * 1024 * 128 * 4   # n_ctx rounded up to 64 (padded_ctx)
    assert Qwen3Config.from_metadata(GGUFFile(UNTIED).metadata) == yarn   # n_vocab from the tokenizer
    with pytest.raises(ModelError, match="architecture"):
        Qwen3Config.from_metadata({"general.architecture": "llama"}, n_vocab=10)
    with pytest.raises(ModelError, match="qwen3.block_count"):
        Qwen3Config.from_metadata({"general.architecture": "qwen3", "qwen3.embedding_length": 64,
                                   "qwen3.attention.head_count": 2}, n_vocab=10)


# ---------------------------------------------------------------------------------------------------------------
# Corrupt files
# ---------------------------------------------------------------------------------------------------------------


def _copy(tmp_path: Path, src: Path = TIED) -> Path:
    dst = tmp_path / f"corrupt-{src.name}"
    shutil.copyfile(src, dst)
    return dst


def _patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def _tensor_info_offset(path: Path, name: str) -> int:
    """Byte offset just after the tensor-info name `name` (where n_dims starts)."""
    key = struct.pack("<Q", len(name)) + name.encode()
    blob = path.read_bytes()
    pos = blob.index(key)
    return pos + len(key)


def _expect_error(path: Path, match: str, load_model: bool = False) -> str:
    with pytest.raises(GGUFError, match=match) as info:
        Qwen3Model.load(path, n_ctx=16) if load_model else GGUFFile(path)
    message = str(info.value)
    assert path.name in message and "\n" not in message
    return message


def test_missing_file_and_directory(tmp_path):
    _expect_error(tmp_path / "nope.gguf", "file not found")
    with pytest.raises(GGUFError, match="directory"):
        GGUFFile(tmp_path)


def test_empty_and_wrong_magic(tmp_path):
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    _expect_error(empty, "wrong magic")
    text = tmp_path / "notes.gguf"
    text.write_text("this is not a model\n" * 10)
    _expect_error(text, "wrong magic")
    path = _copy(tmp_path)
    _patch(path, 0, b"GGML")
    _expect_error(path, "wrong magic")


def test_unsupported_version(tmp_path):
    path = _copy(tmp_path)
    _patch(path, 4, struct.pack("<I", 99))
    _expect_error(path, "unsupported GGUF version 99")


@pytest.mark.parametrize("size", [6, 20, 1000, 3_000_000])
def test_truncated_in_header_or_metadata(tmp_path, size):
    path = tmp_path / "short.gguf"
    path.write_bytes(TIED.read_bytes()[:size])
    _expect_error(path, "truncated")


def test_tensor_data_past_end_of_file(tmp_path):
    path = tmp_path / "short.gguf"
    path.write_bytes(TIED.read_bytes()[:-1000])                     # last tensor loses its tail
    _expect_error(path, "runs past the end")
    path = _copy(tmp_path)
    off = _tensor_info_offset(path, "blk.0.attn_q.weight") + 4 + 2 * 8 + 4
    _patch(path, off, struct.pack("<Q", 1 << 40))                     # data offset far beyond the file
    _expect_error(path, "blk.0.attn_q.weight.*runs past the end")


@pytest.mark.parametrize("bad_type", [99, 12])  # 99: not a ggml type; 12: Q4_K, real but unsupported here
def test_unknown_tensor_type(tmp_path, bad_type):
    path = _copy(tmp_path)
    off = _tensor_info_offset(path, "blk.1.ffn_up.weight") + 4 + 2 * 8
    _patch(path, off, struct.pack("<I", bad_type))
    _expect_error(path, f"blk.1.ffn_up.weight.*type {bad_type}")


def test_missing_tensor(tmp_path):
    with pytest.raises(GGUFError, match="missing tensor 'nope'"):
        GGUFFile(TIED).require("nope")
    path = _copy(tmp_path)
    off = _tensor_info_offset(path, "blk.2.ffn_down.weight")
    _patch(path, off - len("weight"), b"weighz")                      # rename: the model lacks ffn_down
    _expect_error(path, "missing tensor 'blk.2.ffn_down.weight'", load_model=True)


def test_wrong_tensor_shape(tmp_path):
    path = _copy(tmp_path)
    off = _tensor_info_offset(path, "blk.1.attn_k.weight") + 4
    _patch(path, off + 8, struct.pack("<Q", 64))                      # [256, 128] -> [256, 64]: fits the file
    assert GGUFFile(path).tensor("blk.1.attn_k.weight").shape == (256, 64)
    _expect_error(path, r"blk.1.attn_k.weight.*shape \[256, 64\], expected \[256, 128\]", load_model=True)


def test_random_corruption_never_escapes_as_other_exception(tmp_path):
    """Flip bytes in the header/metadata/tensor-info region and cut the file at random points: the result
    is either a readable file or a GGUFError, never IndexError/KeyError/struct.error/a crash."""
    blob = TIED.read_bytes()
    data_start = GGUFFile(TIED).tensor("token_embd.weight").raw.ctypes.data  # just to touch the map
    assert data_start
    rng = np.random.default_rng(7)
    path = tmp_path / "fuzz.gguf"
    outcomes = set()
    for trial in range(12):
        buf = bytearray(blob)
        if trial % 2:
            # header/KV-count/type fields and the start of the metadata (where lengths and types live)
            for pos in rng.integers(4, 200, size=3):
                buf[pos] = int(rng.integers(0, 256))
        else:
            buf = buf[: int(rng.integers(8, len(blob)))]
        path.write_bytes(bytes(buf))
        try:
            GGUFFile(path)
            outcomes.add("ok")
        except GGUFError as exc:
            assert path.name in str(exc)
            outcomes.add("error")
    assert "error" in outcomes


def test_synthetic_file_has_the_bonsai_layout(tmp_path):
    """synthetic.py with the reference model's shape writes the same tensor names, types and shapes, and
    copies every tokenizer key (vocab, merges, types, special ids, chat template) unchanged."""
    from generator.synthetic import SyntheticSpec, write_synthetic_gguf

    spec = SyntheticSpec(n_layer=4, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, head_dim=64)
    path = write_synthetic_gguf(tmp_path / "syn.gguf", spec, TIED, seed=1)
    syn, ref = GGUFFile(path), GGUFFile(TIED)
    layout = lambda gf: [(n, gf.tensor(n).ggml_type, gf.tensor(n).shape) for n in gf.tensor_names]  # noqa: E731
    assert layout(syn) == layout(ref)
    tok_keys = [k for k in ref.metadata if k.startswith("tokenizer.")]
    assert len(tok_keys) >= 9
    for key in tok_keys:
        assert syn.metadata[key] == ref.metadata[key], key
    for key in ("qwen3.block_count", "qwen3.attention.head_count_kv", "qwen3.rope.freq_base"):
        assert syn.metadata[key] == ref.metadata[key]
    assert Qwen3Config.from_gguf(syn) == Qwen3Config.from_gguf(ref)
    # Q1_0 blocks: random signs, per-block fp16 scales around 1/sqrt(n_in)
    q = syn.tensor("blk.0.attn_q.weight").raw.reshape(-1, 18)
    d = q[:, :2].copy().view(np.float16).astype(np.float32).ravel()
    assert 0.3 / 16 < d.min() and d.max() < 2.0 / 16 and np.unique(d).size > 100


def test_wrong_architecture_is_a_gguf_error(tmp_path):
    path = _copy(tmp_path)
    key = struct.pack("<Q", 5) + b"qwen3"                             # value of general.architecture
    blob = path.read_bytes()
    _patch(path, blob.index(key) + 8, b"llama")
    _expect_error(path, "unsupported architecture 'llama'", load_model=True)
