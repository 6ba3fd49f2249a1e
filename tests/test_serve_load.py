"""Load on loopback: N concurrent streaming clients send M requests to one `ragbit serve` with a short queue.

Every request either completes or gets a clean 429 (RateLimitError with Retry-After); no stream is lost or
mixed up: each completed stream's text equals what the same request yields alone at temperature 0. Bounded
in count (M requests of at most 16 tokens) and in time (asyncio.wait_for).
"""
from __future__ import annotations

import asyncio
import json

import openai
import pytest

import ragbit.indexing.embeddings
from ragbit.config import RagbitConfig
from tests.retrieval_fixtures import FakeEmbedder, make_repo
from tests.serve_fixtures import DETERMINISTIC_ENGINE, http, running_server, tiny_model_file

N_CLIENTS, N_REQUESTS, MAX_WAITING = 6, 24, 3
REQUESTS = [("tiny-tied", "Say something about invoices."), ("tiny-tied", "What is a carousel?"),
            ("tiny-tied", "Explain exponential backoff in one line."),
            ("ragbit", "How does retry_with_backoff sleep between failures?"),
            ("ragbit", "Where is the invoice total computed?"), ("ragbit", "What does the health handler return?")]


async def stream_text(client: openai.AsyncOpenAI, model: str, question: str) -> str:
    stream = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                                  max_tokens=16, temperature=0, stream=True)
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


def test_concurrent_streams_complete_or_get_429_and_never_mix(tmp_path, monkeypatch):
    monkeypatch.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())
    model = tiny_model_file(tmp_path)
    cfg = RagbitConfig.load(make_repo(tmp_path / "shop"), overrides={
        "generator": {"model": str(model), **DETERMINISTIC_ENGINE}, "query": {"budget": 300}})

    async def scenario(url: str) -> tuple[dict, list, int]:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        alone = {}
        for model_name, question in REQUESTS:            # each request alone, one after the other
            alone[(model_name, question)] = await stream_text(client, model_name, question)
        jobs = [REQUESTS[i % len(REQUESTS)] for i in range(N_REQUESTS)]
        results: list = []
        rejected = 0

        async def worker(mine: list) -> None:
            nonlocal rejected
            for model_name, question in mine:
                try:
                    results.append(((model_name, question), await stream_text(client, model_name, question)))
                except openai.RateLimitError as e:
                    assert e.status_code == 429 and int(e.response.headers["retry-after"]) >= 1
                    rejected += 1

        await asyncio.wait_for(asyncio.gather(*(worker(jobs[i::N_CLIENTS]) for i in range(N_CLIENTS))), 300)
        return alone, results, rejected

    with running_server(cfg, max_waiting=MAX_WAITING) as (url, serve_app):
        alone, results, rejected = asyncio.run(scenario(url))
        engine = json.loads(http("GET", url + "/health")[2])["engine"]

    print(f"load: {N_CLIENTS} clients, {N_REQUESTS} requests: {len(results)} completed, {rejected} answered 429")
    assert len(results) + rejected == N_REQUESTS
    assert len(results) >= N_CLIENTS                 # the queue held at least a first round
    for key, text in results:
        assert text == alone[key], key               # no lost, cut or mixed-up stream
    assert all(alone.values())
    assert engine["rejected"] == rejected and engine["failed"] == 0 and engine["cancelled"] == 0
    assert engine["running"] == 0 and engine["waiting"] == 0
