"""The OpenAI HTTP API's shapes: requests validated with pydantic, responses and stream chunks as plain dicts.

Why pydantic for requests: a bad field must come back as an OpenAI error object naming the field (400), and
clients send many fields ragbit ignores (`user`, `presence_penalty`, `stream_options`, ...): unknown fields are
kept (`extra="allow"`), never an error. Responses are built as dicts because the unmodified `openai` client
parses exactly these keys; `ragbit` (sources) is an extra top-level key that OpenAI clients ignore.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ragbit.config import MAX_K

__all__ = ["ChatRequest", "CompletionRequest", "EmbeddingRequest", "SearchRequest", "ValidationError",
           "ApiError", "error_body", "finish_reason", "chat_response", "chat_chunk", "completion_response",
           "completion_chunk", "usage", "new_id"]


class ApiError(Exception):
    """An error the client caused (or a state it must wait out), as OpenAI reports it."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}


def error_body(message: str, type_: str = "invalid_request_error", code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def validation_message(e: ValidationError) -> tuple[str, str | None]:
    """One line for the first problem pydantic found, and the field it concerns."""
    err = e.errors()[0]
    param = ".".join(str(p) for p in err.get("loc", ())) or None
    return (f"{param}: {err.get('msg', 'invalid value')}" if param else err.get("msg", "invalid request")), param


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)      # newer clients send this instead of max_tokens
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = Field(1, ge=1, le=1)                               # one choice per request

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> list[str]:
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        return [s for s in stops if s]

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None

    @property
    def text(self) -> str:
        """The message's text: a string, or the text parts of a content array (images are not supported)."""
        if isinstance(self.content, str) or self.content is None:
            return self.content or ""
        parts = []
        for part in self.content:
            if part.get("type") != "text":
                raise ValueError(f"content parts of type {part.get('type')!r} are not supported (text only)")
            parts.append(str(part.get("text", "")))
        return "".join(parts)


class ChatRequest(_Request):
    messages: list[Message] = Field(min_length=1)

    def plain_messages(self) -> list[dict[str, str]]:
        """[{"role", "content"}] as the chat template takes them (`developer` is OpenAI's new `system`)."""
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text} for m in self.messages]


class CompletionRequest(_Request):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: str | list[str]) -> str:
        if isinstance(v, list):
            if len(v) != 1:
                raise ValueError("exactly one prompt per request")
            v = v[0]
        return v


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class SearchClient(BaseModel):
    """Who asks, when it is `ragbit search` (ragbit/search/client.py): the repository and index it means, and
    the config it would search with (`client.fingerprint`), so a server started for another one says so."""
    model_config = ConfigDict(extra="forbid")

    repo: str
    index_dir: str
    config: dict[str, Any] | None = None


class SearchRender(BaseModel):
    """Also return what `ragbit search` prints for the hits (ragbit/search/render.py), for this terminal."""
    model_config = ConfigDict(extra="forbid")

    json_: bool = Field(False, alias="json")
    terminal: dict[str, Any] = Field(default_factory=dict)


class SearchRequest(BaseModel):
    """ragbit's own retrieval-only call (POST /v1/search): the hits `ragbit search --json` prints. None for
    k / mode / max_hits_per_file means the repository's `[search]` setting."""
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1)
    k: int | None = Field(None, ge=1, le=MAX_K)
    mode: Literal["hybrid", "dense", "lexical"] | None = None
    max_hits_per_file: int | None = Field(None, ge=0, le=MAX_K)
    client: SearchClient | None = None
    render: SearchRender | None = None


# ------------------------------------------------------------------------------------------------ responses
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def finish_reason(engine_reason: str) -> str:
    """The engine's reasons (eog | stop | length) as OpenAI's (stop | length)."""
    return "length" if engine_reason == "length" else "stop"


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens}}


def _envelope(rid: str, obj: str, created: int, model: str, choice: dict | None, use: dict | None,
              extra: dict | None) -> dict[str, Any]:
    """The fields every response and chunk shares; `choice` None = an empty choices list (the usage chunk)."""
    body: dict[str, Any] = {"id": rid, "object": obj, "created": created, "model": model,
                            "system_fingerprint": None, "choices": [choice] if choice is not None else []}
    if use is not None:
        body["usage"] = use
    if extra:
        body["ragbit"] = extra
    return body


def chat_response(rid: str, model: str, text: str, reason: str, use: dict, extra: dict | None) -> dict[str, Any]:
    choice = {"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
              "logprobs": None, "finish_reason": reason}
    return _envelope(rid, "chat.completion", int(time.time()), model, choice, use, extra)


def chat_chunk(rid: str, created: int, model: str, delta: dict, reason: str | None = None,
               use: dict | None = None, extra: dict | None = None, choices: bool = True) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason} if choices else None
    return _envelope(rid, "chat.completion.chunk", created, model, choice, use, extra)


def completion_response(rid: str, model: str, text: str, reason: str, use: dict, extra: dict | None) -> dict:
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
    return _envelope(rid, "text_completion", int(time.time()), model, choice, use, extra)


def completion_chunk(rid: str, created: int, model: str, text: str, reason: str | None = None,
                     use: dict | None = None, extra: dict | None = None, choices: bool = True) -> dict[str, Any]:
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason} if choices else None
    return _envelope(rid, "text_completion", created, model, choice, use, extra)
