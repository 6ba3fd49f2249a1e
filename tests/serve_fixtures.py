"""A real `ragbit serve` app on loopback for the tests: uvicorn in a background thread, the tiny random-weight
Bonsai-layout model (real Qwen3 tokenizer) and the fake embedder, on the small multi-language repository."""
from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from tests.conftest import REFERENCE_DIR


# The float decode kernel: with "int11", a prompt prefilled whole (int8 VNNI prefill) and the same prompt whose
# last token comes after a reused KV-cache prefix can pick different greedy tokens on this random-weight model
# (its logit margins are tiny). The serving tests compare answers across cache states, so they take the path
# whose numbers do not depend on how the prompt was split.
DETERMINISTIC_ENGINE = {"decode_kernel": "float"}


def tiny_model_file(directory: Path) -> Path:
    from generator.synthetic import write_synthetic_gguf
    return write_synthetic_gguf(directory / "tiny-tied.gguf", "tiny-tied",
                                tokenizer_from=REFERENCE_DIR / "tiny-tied-q1_0.gguf", seed=3)


@contextlib.contextmanager
def running_server(cfg: Any, api_key: str | None = None, max_waiting: int = 8,
                   watch: bool = False, load_model: bool = True) -> Iterator[tuple[str, Any]]:
    """(base URL, ServeApp) of a prepared service served on 127.0.0.1 at a free port."""
    import uvicorn

    from ragbit.serve.app import create_app
    from ragbit.serve.http_server import uvicorn_config
    from ragbit.serve.service import RagbitService

    from ragbit.serve.http_server import start_watcher
    service = RagbitService(cfg, refresh_on_request=not watch)
    service.prepare(load_model=load_model)
    watcher = start_watcher(service, print) if watch else None
    app = create_app(service, api_key=api_key, max_waiting=max_waiting)
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", 0))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", app.state.serve
    finally:
        server.should_exit = True
        thread.join(10)
        if watcher is not None:
            watcher.stop()


def http(method: str, url: str, json_body: Any = None, raw: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, dict[str, str], str]:
    """(status, headers, body text) of one plain HTTP request (standard library, errors included)."""
    import json
    import urllib.error
    import urllib.request
    data = raw if raw is not None else (json.dumps(json_body).encode() if json_body is not None else None)
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()
