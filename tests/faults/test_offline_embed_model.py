"""Offline, an unknown `[embed] model` is one line at once (issue #20: huggingface_hub retried for 146 s)."""
from __future__ import annotations

import socket
import time

import pytest

from ragbit.config import EmbedConfig
from ragbit.indexing.embeddings import Embedder, EmbeddingModelError


def unreachable(*args, **kwargs):
    raise socket.gaierror(-2, "Name or service not known")


def test_unknown_hub_model_offline_fails_fast(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setattr(socket, "create_connection", unreachable)
    t0 = time.monotonic()
    with pytest.raises(EmbeddingModelError, match="unreachable") as e:
        Embedder(EmbedConfig(model="acme/no-such-embedder")).embed(["hello"])
    assert time.monotonic() - t0 < 20 and "\n" not in str(e.value)


def test_unknown_hub_model_with_hf_hub_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EmbeddingModelError, match="HF_HUB_OFFLINE"):
        Embedder(EmbedConfig(model="acme/no-such-embedder")).embed(["hello"])
