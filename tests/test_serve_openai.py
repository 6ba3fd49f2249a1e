"""`ragbit serve` through the unmodified `openai` client on loopback: the tiny random-weight model (real Qwen3
tokenizer: token counts, streaming and stop handling are real; the words are gibberish) and the fake embedder.

The answers' text is only compared with itself (streamed vs whole, with vs without a stop string, same vs
other seed); token counts are compared with the model's own tokenizer.
"""
from __future__ import annotations

import asyncio
import json

import numpy as np
import openai
import pytest

import ragbit.indexing.embeddings
from ragbit.config import RagbitConfig
from tests.retrieval_fixtures import FakeEmbedder, make_repo
from tests.serve_fixtures import DETERMINISTIC_ENGINE, http, running_server, tiny_model_file

QUESTION = "How does retry_with_backoff sleep between failures?"
MODEL = "tiny-tied"


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    model = tiny_model_file(d)
    return RagbitConfig.load(make_repo(d / "shop"), overrides={
        "generator": {"model": str(model), **DETERMINISTIC_ENGINE}, "query": {"budget": 400}})


@pytest.fixture(scope="module")
def fake_embedder():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ragbit.indexing.embeddings, "Embedder", lambda cfg=None: FakeEmbedder())
        yield


@pytest.fixture(scope="module")
def server(cfg, fake_embedder):
    with running_server(cfg) as (url, serve_app):
        yield url, serve_app


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0)


def chat(client, model=MODEL, content=QUESTION, **kw):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}], **kw)


def streamed(client, **kw):
    chunks = list(chat(client, stream=True, stream_options={"include_usage": True}, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


# ------------------------------------------------------------------------------------------------ basics
def test_models_lists_ragbit_the_plain_model_and_the_embedding_model(client, cfg):
    ids = [m.id for m in client.models.list()]
    assert ids[:3] == ["ragbit", f"ragbit:{MODEL}", MODEL]
    assert cfg.embed.model in ids


def test_plain_chat_counts_tokens_with_the_models_tokenizer(client, server):
    r = chat(client, max_tokens=7, temperature=0)
    gen = server[1].service.generator()
    expected_prompt = len(gen.prompt_ids([{"role": "user", "content": QUESTION}], chat=True))
    assert r.usage.prompt_tokens == expected_prompt
    assert r.choices[0].finish_reason in ("length", "stop")
    n_text = len(gen.tokenizer.encode(r.choices[0].message.content))
    assert r.usage.completion_tokens == 7 if r.choices[0].finish_reason == "length" else r.usage.completion_tokens <= 7
    assert abs(n_text - r.usage.completion_tokens) <= 2          # re-tokenising the text lands close
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.object == "chat.completion" and r.model == MODEL


def test_ragbit_streams_the_same_answer_it_returns_whole_with_sources(client, cfg):
    whole = chat(client, model="ragbit", max_tokens=12, temperature=0)
    text, chunks = streamed(client, model="ragbit", max_tokens=12, temperature=0)
    assert text == whole.choices[0].message.content and text
    assert chunks[0].choices[0].delta.role == "assistant"
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1 and final[0].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens > 100      # the packed context
    assert len({c.id for c in chunks}) == 1
    sources = whole.model_extra["ragbit"]["sources"]
    assert sources[0]["path"] == "src/net/retry.py"
    lines = (cfg.repo / "src/net/retry.py").read_text().splitlines()
    sleep_line = next(i for i, line in enumerate(lines, 1) if "time.sleep(base_delay" in line)
    assert sources[0]["start_line"] <= sleep_line <= sources[0]["end_line"]     # the lines that answer it
    assert all(set(s) >= {"path", "start_line", "end_line"} for s in sources)
    assert final[0].model_extra["ragbit"]["sources"] == sources
    # the aliased name answers the same way
    again = chat(client, model=f"ragbit:{MODEL}", max_tokens=12, temperature=0)
    assert again.choices[0].message.content == text


def test_raw_sse_is_openai_format_and_ends_with_done(server):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5, "stream": True}
    status, headers, raw = http("POST", server[0] + "/v1/chat/completions", body)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_stop_string_cuts_the_answer_before_it(client):
    base = chat(client, max_tokens=24, temperature=0).choices[0].message.content
    cut = len(base) // 2
    stop = base[cut:cut + 3]
    assert stop.strip(), base
    r = chat(client, max_tokens=24, temperature=0, stop=[stop])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == base[:base.index(stop)]
    text, chunks = streamed(client, max_tokens=24, temperature=0, stop=stop)
    assert text == base[:base.index(stop)]


def test_seed_temperature_and_top_p_are_honoured(client):
    greedy = chat(client, max_tokens=16, temperature=0).choices[0].message.content
    a = chat(client, max_tokens=16, temperature=1.5, seed=11).choices[0].message.content
    b = chat(client, max_tokens=16, temperature=1.5, seed=11).choices[0].message.content
    c = chat(client, max_tokens=16, temperature=1.5, seed=12).choices[0].message.content
    assert a == b
    assert a != c and a != greedy
    # top_p that keeps only the most likely token is greedy whatever the temperature
    assert chat(client, max_tokens=16, temperature=1.5, top_p=1e-6, seed=5).choices[0].message.content == greedy


def test_a_growing_conversation_reuses_the_kv_cache(client, server):
    first = [{"role": "user", "content": "Tell me about invoices and the total of line items."}]
    r1 = client.chat.completions.create(model=MODEL, messages=first, max_tokens=5, temperature=0)
    second = first + [{"role": "assistant", "content": r1.choices[0].message.content},
                      {"role": "user", "content": "And taxes?"}]
    r2 = client.chat.completions.create(model=MODEL, messages=second, max_tokens=5, temperature=0)
    # the first turn (all but its generation prompt, which the template renders differently in history)
    gen = server[1].service.generator()
    first_turn = gen.tokenizer.encode(gen.chat_template.render(first, add_generation_prompt=False),
                                      parse_special=True, add_special=True)
    assert r2.usage.prompt_tokens_details.cached_tokens >= len(first_turn) > 10


def test_completions_plain_text(client, server):
    r = client.completions.create(model=MODEL, prompt="def retry_with_backoff(", max_tokens=6, temperature=0)
    gen = server[1].service.generator()
    assert r.usage.prompt_tokens == len(gen.prompt_ids("def retry_with_backoff(", chat=False))
    assert r.choices[0].text and r.object == "text_completion"
    parts = list(client.completions.create(model=MODEL, prompt="def retry_with_backoff(", max_tokens=6,
                                           temperature=0, stream=True))
    assert "".join(p.choices[0].text for p in parts if p.choices) == r.choices[0].text


def test_embeddings_are_the_index_models_vectors(client, cfg):
    texts = ["retry with backoff", "invoice total"]
    expected = FakeEmbedder().embed(texts)
    for model in ("ragbit", cfg.embed.model):
        r = client.embeddings.create(model=model, input=texts)                 # client default: base64
        got = np.array([d.embedding for d in r.data], dtype=np.float32)
        assert np.allclose(got, expected, atol=1e-6)
        assert r.usage.prompt_tokens == sum(len(t.split()) + 2 for t in texts)
    f = client.embeddings.create(model="ragbit", input="retry with backoff", encoding_format="float")
    assert np.allclose(f.data[0].embedding, expected[0], atol=1e-6)


def test_search_is_the_retrieval_only_call(server):
    status, _, text = http("POST", server[0] + "/v1/search", {"query": QUESTION, "k": 3})
    assert status == 200
    hits = json.loads(text)["data"]
    assert hits[0]["path"] == "src/net/retry.py" and len(hits) <= 3
    assert {"path", "start_line", "end_line", "scope", "text", "score", "rank"} <= set(hits[0])


# ------------------------------------------------------------------------------------------------ errors
def test_bad_requests_get_openai_error_objects_and_the_server_keeps_serving(client, server):
    url = server[0]
    status, _, text = http("POST", url + "/v1/chat/completions", raw=b"{not json")
    assert status == 400 and json.loads(text)["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as e:
        chat(client, model="gpt-4o")
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, max_tokens=-3)
    assert e.value.param == "max_tokens"
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, content="word " * 5000, max_tokens=4)
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as e:       # streamed: the error comes before any chunk
        list(chat(client, content="word " * 5000, max_tokens=4, stream=True))
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="ragbit", messages=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model=MODEL, input="x")
    status, _, text = http("GET", url + "/v1/nothing-here")
    assert status == 404 and "error" in json.loads(text)
    for status, _, text in (http("POST", url + "/v1/search", {"query": ""}),
                            http("POST", url + "/v1/embeddings", [1, 2])):
        assert status == 400 and "Traceback" not in text and json.loads(text)["error"]["message"]
    assert json.loads(http("GET", url + "/health")[2])["status"] == "ok"
    assert chat(client, max_tokens=2).choices[0].message.content is not None


# ------------------------------------------------------------------------------------------------ access
def test_api_key_guards_every_route_but_health(cfg, fake_embedder):
    with running_server(cfg, api_key="s3cret") as (url, _):
        assert http("GET", url + "/health")[0] == 200
        wrong = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        status, _, text = http("POST", url + "/v1/search", {"query": "x"})          # no key at all
        assert status == 401 and json.loads(text)["error"]["code"] == "invalid_api_key"
        good = openai.OpenAI(base_url=url + "/v1", api_key="s3cret", max_retries=0)
        assert chat(good, max_tokens=2).usage.completion_tokens >= 1


def test_non_loopback_host_without_key_refuses_to_start(tmp_path):
    from typer.testing import CliRunner

    from ragbit.cli import app
    from ragbit.serve.http_server import is_loopback
    r = CliRunner().invoke(app, ["serve", "--repo", str(tmp_path), "--host", "0.0.0.0"])
    assert r.exit_code == 1
    assert r.output.strip().count("\n") == 0 and "without --api-key" in r.output
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")


# ------------------------------------------------------------------------------------------------ queue
def test_full_queue_answers_429_and_a_disconnect_frees_the_engine(cfg, fake_embedder):
    async def scenario(url: str, serve_app) -> None:
        aclient = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        loop = asyncio.get_running_loop()

        async def engine() -> dict:
            return json.loads((await loop.run_in_executor(None, http, "GET", url + "/health"))[2])["engine"]

        long = await aclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "go"}],
                                                     max_tokens=3000, temperature=0, stream=True)
        it = long.__aiter__()
        for _ in range(3):
            await it.__anext__()                      # A is running and streaming
        waiting = asyncio.create_task(aclient.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "next"}], max_tokens=4, temperature=0))
        for _ in range(500):
            if (await engine())["waiting"] == 1:
                break
            await asyncio.sleep(0.01)
        assert (await engine())["waiting"] == 1       # B waits behind A
        with pytest.raises(openai.RateLimitError) as e:
            await aclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "C"}],
                                                  max_tokens=4)
        assert int(e.value.response.headers["retry-after"]) >= 1
        assert e.value.code == "queue_full"
        await long.close()                            # A's client leaves mid-stream
        b = await asyncio.wait_for(waiting, 60)       # ...which lets B run
        assert b.usage.completion_tokens >= 1
        for _ in range(500):                          # B's reply can reach us before the engine thread is idle again
            if (stats := await engine())["running"] == 0:
                break
            await asyncio.sleep(0.01)
        assert stats["cancelled"] == 1 and stats["rejected"] == 1 and stats["running"] == 0
        assert stats["pieces_after_cancel"] <= 1      # stopped within one token of the cancel

    with running_server(cfg, max_waiting=1) as (url, serve_app):
        asyncio.run(scenario(url, serve_app))


def test_completions_under_ragbit_answer_the_prompt_from_the_index(client):
    r = client.completions.create(model="ragbit", prompt=QUESTION, max_tokens=6, temperature=0)
    assert r.choices[0].text and r.usage.prompt_tokens > 100
    assert r.model_extra["ragbit"]["sources"][0]["path"] == "src/net/retry.py"


def test_a_client_that_leaves_a_whole_answer_cancels_it(server):
    import socket
    import time
    url, serve_app = server
    before = serve_app.queue.snapshot()["cancelled"]
    port = int(url.rsplit(":", 1)[1])
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "go on"}], "max_tokens": 3000,
                       "temperature": 0}).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    deadline = time.time() + 30
    while serve_app.queue.snapshot()["running"] == 0 and time.time() < deadline:
        time.sleep(0.01)
    sock.close()                                          # gone before the answer is complete
    while serve_app.queue.snapshot()["running"] and time.time() < deadline:
        time.sleep(0.01)
    snap = serve_app.queue.snapshot()
    assert snap["cancelled"] == before + 1 and snap["pieces_after_cancel"] <= 1
