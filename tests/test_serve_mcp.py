"""`ragbit mcp` through the `mcp` SDK's own stdio client: the server runs as a subprocess on a small repository
(real embedding model, offline; tiny random-weight Bonsai-layout model for `ask`)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import pytest

from tests.retrieval_fixtures import make_repo
from tests.serve_fixtures import tiny_model_file

ROOT = Path(__file__).resolve().parents[1]


def structured(result) -> dict:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


async def session_run(repo: Path, model: Path, body) -> None:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "ragbit.cli", "mcp", "--repo", str(repo), "--model", str(model)],
                                   env=env, cwd=str(ROOT))
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            await body(session)


def test_mcp_tools_over_stdio(tmp_path):
    repo = make_repo(tmp_path / "shop")
    model = tiny_model_file(tmp_path)
    (tmp_path / "outside.txt").write_text("secret outside the repository\n")
    (repo / "link_out.txt").symlink_to(tmp_path / "outside.txt")
    (repo / ".env").write_text("API_KEY=do-not-read\n")
    (repo / "ragbit.toml").write_text("[generator]\nmax_tokens = 8\n")       # gibberish anyway: keep it short

    async def body(session) -> None:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert set(tools) >= {"search_code", "read_span", "index_status", "ask"}
        assert all(len(t.description or "") > 80 for t in tools.values())
        assert set(tools["search_code"].input_schema["properties"]) == {"query", "k", "mode"}

        found = structured(await session.call_tool("search_code", {"query": "retry_with_backoff sleep between "
                                                                              "failures", "k": 3, "mode": "hybrid"}))
        hits = found["hits"]
        assert 1 <= len(hits) <= 3 and hits[0]["path"] == "src/net/retry.py"
        assert "time.sleep" in hits[0]["code"] and hits[0]["start_line"] >= 1
        lexical = structured(await session.call_tool("search_code", {"query": "carousel", "mode": "lexical"}))
        assert lexical["hits"][0]["path"] == "web/static/carousel.js"

        h = hits[0]
        span = structured(await session.call_tool("read_span", {"path": h["path"], "start_line": h["start_line"],
                                                               "end_line": h["end_line"]}))
        on_disk = (repo / h["path"]).read_text().splitlines()[h["start_line"] - 1:h["end_line"]]
        assert span["text"] == "\n".join(on_disk) and span["total_lines"] >= h["end_line"]

        for bad in ("../outside.txt", str(tmp_path / "outside.txt"), "link_out.txt", "src/../../outside.txt",
                    ".env", ".git/config"):
            r = await session.call_tool("read_span", {"path": bad, "start_line": 1, "end_line": 5})
            assert r.is_error, bad
            text = r.content[0].text
            assert "secret outside" not in text and "do-not-read" not in text
            assert "Traceback" not in text and text.strip()

        status = structured(await session.call_tool("index_status", {}))
        assert status["files"] >= 5 and status["chunks"] >= status["files"]
        assert status["changed"] == 0

        answer = structured(await session.call_tool("ask", {"question": "How does retry_with_backoff sleep?"}))
        assert isinstance(answer["answer"], str) and answer["answer"]
        assert "src/net/retry.py" in {s["path"] for s in answer["sources"]}

    anyio.run(session_run, repo, model, body)


def test_mcp_over_streamable_http_on_loopback(tmp_path):
    import socket
    import subprocess
    import time

    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    repo = make_repo(tmp_path / "shop")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "ragbit.cli", "mcp", "--repo", str(repo), "--http", "--port",
                             str(port)], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=str(ROOT),
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline
                time.sleep(0.2)

        async def run() -> None:
            async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    names = {t.name for t in (await session.list_tools()).tools}
                    assert names >= {"search_code", "read_span", "index_status", "ask"}
                    found = structured(await session.call_tool("search_code", {"query": "carousel next slide",
                                                                               "k": 2}))
                    assert found["hits"][0]["path"] == "web/static/carousel.js"
                    r = await session.call_tool("read_span", {"path": "../x", "start_line": 1, "end_line": 2})
                    assert r.is_error
        anyio.run(run)
    finally:
        proc.terminate()
        proc.wait(20)
