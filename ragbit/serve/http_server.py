"""Starting `ragbit serve`: refuse an unsafe bind, prepare the service, run the app under uvicorn.

Why refuse a non-loopback host without a key: the API answers questions about private code and spends the
machine's CPU; exposing it to a network with no key is never what a user meant.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable

from ragbit.errors import RagbitError


class UnsafeBindError(RagbitError, ValueError):
    """A non-loopback address without an API key."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and names that resolve only to loopback addresses (e.g. localhost)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):          # UnicodeError: a name the IDNA codec refuses (a label > 63 chars)
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def check_bind(host: str, api_key: str | None) -> None:
    if not is_loopback(host) and not api_key:
        raise UnsafeBindError(f"refusing to serve on {host} without --api-key: anyone who can reach it could "
                              "read your code (use --host 127.0.0.1, or set --api-key)")


def uvicorn_config(app: Any, host: str = "127.0.0.1", port: int = 8080, uds: str | None = None) -> Any:
    import uvicorn
    return uvicorn.Config(app, host=host, port=port, uds=uds, log_level="warning", access_log=False,
                          timeout_graceful_shutdown=2, lifespan="on")


def serve(cfg: Any, host: str, port: int, api_key: str | None, max_waiting: int = 8, load_model: bool = True,
          watch: bool = False, on_note: Callable[[str], None] = print) -> None:
    """Blocks until Ctrl-C. Raises UnsafeBindError before loading anything when the bind is unsafe."""
    import uvicorn

    from ragbit.serve.app import create_app
    from ragbit.serve.service import RagbitService

    check_bind(host, api_key)
    service = RagbitService(cfg, refresh_on_request=not watch)
    service.prepare(load_model=load_model, on_note=on_note)
    watcher = start_watcher(service, on_note) if watch else None
    app = create_app(service, api_key=api_key, max_waiting=max_waiting)
    shown = f"[{host}]" if ":" in host else host
    on_note(f"ragbit serve: {cfg.repo} on http://{shown}:{port}/v1 (models: ragbit, {service.model_name}; "
            f"embeddings: {service.embedding_model_name}){'; API key required' if api_key else ''}")
    try:
        uvicorn.Server(uvicorn_config(app, host, port)).run()
    finally:
        if watcher is not None:
            watcher.stop()


def start_watcher(service: Any, on_note: Callable[[str], None]) -> Any:
    """A file watcher that refreshes `service`'s index after each burst of changes (then requests skip it)."""
    from ragbit.serve.watch import IndexWatcher
    return IndexWatcher(service.cfg, lambda: service.refresh(force=True), on_note).start()
