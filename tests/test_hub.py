"""Model resolution: paths, cache hits, offline and unreachable hub (no real network used)."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from generator.hub import BONSAI_MODELS, HubModel, ModelNotAvailableError, UnknownModelError, resolve_model


def closed_port() -> int:
    """A localhost port nobody listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_cache(cache: Path, short: str) -> Path:
    """Lay out one cached file the way huggingface_hub stores it (refs/main -> snapshots/<commit>/)."""
    m = BONSAI_MODELS[short]
    repo = cache / ("models--" + m.repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / m.filename).write_bytes(b"GGUF")
    return snap / m.filename


def test_existing_path_is_used_as_is(tmp_path):
    f = tmp_path / "my.gguf"
    f.write_bytes(b"GGUF")
    assert resolve_model(f) == f
    assert resolve_model(str(f)) == f


def test_short_names_are_prismml_repositories():
    sizes = {"1.7b": "1.7B", "4b": "4B", "8b": "8B"}
    assert set(BONSAI_MODELS) == {f"{kind}bonsai-{s}" for kind in ("", "ternary-") for s in sizes}
    for s, size in sizes.items():
        assert BONSAI_MODELS[f"bonsai-{s}"] == HubModel(f"prism-ml/Bonsai-{size}-gguf", f"Bonsai-{size}.gguf")
        # the 64-weight-group Q2_0 file (mainline llama.cpp's layout), not the legacy 128-group *-Q2_0.gguf
        assert BONSAI_MODELS[f"ternary-bonsai-{s}"] == HubModel(f"prism-ml/Ternary-Bonsai-{size}-gguf",
                                                                 f"Ternary-Bonsai-{size}-Q2_0_g64.gguf")


def test_unknown_name_lists_short_names():
    with pytest.raises(UnknownModelError, match="bonsai-1.7b, bonsai-4b, bonsai-8b, ternary-bonsai-1.7b, "):
        resolve_model("llama-70b")
    with pytest.raises(ModelNotAvailableError, match="model file not found"):
        resolve_model("/no/such/file.gguf")


def test_cached_model_found_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    expected = fake_cache(tmp_path, "bonsai-4b")
    assert resolve_model("Bonsai-4B", cache_dir=tmp_path) == expected
    ternary = fake_cache(tmp_path, "ternary-bonsai-1.7b")
    assert resolve_model("Ternary-Bonsai-1.7B", cache_dir=tmp_path) == ternary


def test_offline_hub_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as err:
        resolve_model("bonsai-1.7b", cache_dir=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "offline" in msg and "--model /path/to/Bonsai-1.7B.gguf" in msg


def test_unreachable_hub_fails_fast(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)   # the library read the variable at import
    notices = []
    t0 = time.monotonic()
    with pytest.raises(ModelNotAvailableError) as err:
        resolve_model("bonsai-8b", cache_dir=tmp_path, endpoint=f"http://127.0.0.1:{closed_port()}",
                      on_download=notices.append)
    assert time.monotonic() - t0 < 60   # a guard against hanging, not a timing claim
    msg = str(err.value)
    assert "\n" not in msg and "unreachable" in msg and "--model /path/to/Bonsai-8B.gguf" in msg
    assert notices == []   # refused before any download started
