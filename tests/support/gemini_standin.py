"""A local stand-in for the Gemini REST API's `batchEmbedContents`, so provider tests never reach Google.

It is a real HTTP server (Starlette under uvicorn, on its own thread and event loop, on a free port of
127.0.0.1) that answers what the google-genai SDK sends for `client.aio.models.embed_content` on the
Gemini Developer API:

    POST /{version}/models/{model}:batchEmbedContents      header x-goog-api-key: <key>
    {"requests": [{"model": "models/{model}", "content": {"parts": [{"text": ...}], "role": "user"},
                   "taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": 768}, ...]}
    -> 200 {"embeddings": [{"values": [...]}, ...]}
    -> 4xx/5xx {"error": {"code": 429, "message": ..., "status": "RESOURCE_EXHAUSTED", "details": [...]}}

Vectors are deterministic per text and deliberately not unit length, so a test can prove that the
provider normalizes them. Every request is recorded; tests script the next answers with `script()`
(consumed one per call) or `always()` (every call until reset).
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

VALID_API_KEY = "standin-valid-key"
# What gemini-embedding-001 answers when the request names no outputDimensionality.
DEFAULT_DIMENSIONS = 3072
MAX_BATCH_REQUESTS = 100

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def standin_vector(text: str, dimensions: int) -> list[float]:
    """The stand-in's answer for `text`: deterministic, entries in [-12.75, 12.75], far from unit length."""
    values: list[float] = []
    block = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{block}:{text}".encode()).digest()
        values.extend((byte - 127.5) / 10 for byte in digest)
        block += 1
    return values[:dimensions]


@dataclass(frozen=True)
class Reply:
    """One scripted answer: an error, a wrongly sized answer, or a delay before the normal answer."""

    status: int = 200
    message: str = ""
    # Sent as the Retry-After header.
    retry_after: str | None = None
    # Sent in the body as google.rpc.RetryInfo, the way Google's own 429s carry the hint.
    retry_delay: str | None = None
    # Sent in the body as google.rpc.ErrorInfo (e.g. API_KEY_INVALID).
    reason: str | None = None
    # Answer vectors of this size instead of the requested one.
    dimensions: int | None = None
    # Leave this many vectors out of the answer.
    drop: int = 0
    delay_seconds: float = 0.0


def rate_limited(retry_after: str | None = None, retry_delay: str | None = None) -> Reply:
    return Reply(
        status=429,
        message="Resource has been exhausted (e.g. check quota).",
        retry_after=retry_after,
        retry_delay=retry_delay,
    )


def server_error(status: int = 500) -> Reply:
    return Reply(status=status, message="An internal error has occurred.")


def invalid_argument(message: str = "Request contains an invalid argument.") -> Reply:
    return Reply(status=400, message=message)


def wrong_dimensions(dimensions: int) -> Reply:
    return Reply(dimensions=dimensions)


def missing_vectors(count: int = 1) -> Reply:
    return Reply(drop=count)


def slow(seconds: float) -> Reply:
    return Reply(delay_seconds=seconds)


@dataclass(frozen=True)
class RecordedCall:
    """One request as the stand-in received it."""

    path: str
    api_version: str
    model: str
    api_key: str | None
    server_timeout: str | None
    texts: list[str]
    task_types: list[str | None]
    dimensionalities: list[int | None]
    request_models: list[str | None]
    body: dict[str, Any] = field(repr=False)


def _error(status: int, message: str, details: list[dict[str, Any]] | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": _STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _text_of(request: dict[str, Any]) -> str | None:
    content = request.get("content")
    if not isinstance(content, dict):
        return None
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        return None
    texts = [part.get("text") for part in parts if isinstance(part, dict)]
    strings = [text for text in texts if isinstance(text, str)]
    if not strings or len(strings) != len(parts):
        return None
    return "".join(strings)


class GeminiStandIn:
    """The stand-in server; use as a context manager or call `start()` / `stop()`."""

    def __init__(self, api_keys: frozenset[str] = frozenset({VALID_API_KEY})) -> None:
        self.api_keys = api_keys
        self._lock = threading.Lock()
        self._calls: list[RecordedCall] = []
        self._script: deque[Reply] = deque()
        self._always: Reply | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._app = Starlette(
            routes=[Route("/{version}/models/{target}", self._handle, methods=["POST"])]
        )

    # Scripting and inspection (called from the test's thread).

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def calls(self) -> list[RecordedCall]:
        with self._lock:
            return list(self._calls)

    def script(self, *replies: Reply) -> None:
        """Answer the next calls with these replies, one per call, then normally again."""
        with self._lock:
            self._script.extend(replies)

    def always(self, reply: Reply | None) -> None:
        """Answer every call with `reply` once the script is used up (None: answer normally)."""
        with self._lock:
            self._always = reply

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._script.clear()
            self._always = None

    # The HTTP side (runs on the server's thread).

    def _next_reply(self) -> Reply:
        with self._lock:
            if self._script:
                return self._script.popleft()
            return self._always or Reply()

    async def _handle(self, request: Request) -> JSONResponse:
        version = request.path_params["version"]
        model, _, method = request.path_params["target"].partition(":")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "Invalid JSON payload received.")
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list):
            requests = []
        call = RecordedCall(
            path=request.url.path,
            api_version=version,
            model=model,
            api_key=request.headers.get("x-goog-api-key"),
            server_timeout=request.headers.get("x-server-timeout"),
            texts=[_text_of(item) or "" for item in requests],
            task_types=[item.get("taskType") for item in requests],
            dimensionalities=[item.get("outputDimensionality") for item in requests],
            request_models=[item.get("model") for item in requests],
            body=body if isinstance(body, dict) else {},
        )
        with self._lock:
            self._calls.append(call)

        if method != "batchEmbedContents":
            return _error(404, f"Method {method!r} is not served by this stand-in.")
        if call.api_key is None:
            return _error(
                403,
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        if call.api_key not in self.api_keys:
            return _error(
                400,
                "API key not valid. Please pass a valid API key.",
                [{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                }],
            )
        if not requests:
            return _error(400, "* BatchEmbedContentsRequest.requests: contents is not specified")
        if len(requests) > MAX_BATCH_REQUESTS:
            return _error(400, f"* BatchEmbedContentsRequest.requests: at most {MAX_BATCH_REQUESTS} "
                               "requests can be in one batch")
        for index, item in enumerate(requests):
            if item.get("model") != f"models/{model}":
                return _error(400, f"* BatchEmbedContentsRequest.requests[{index}].model: the model "
                                   "must match the model of the batch")
            if not _text_of(item):
                return _error(400, f"* BatchEmbedContentsRequest.requests[{index}].content: "
                                   "contents is not specified")

        reply = self._next_reply()
        if reply.delay_seconds:
            await asyncio.sleep(reply.delay_seconds)
        if reply.status != 200:
            details: list[dict[str, Any]] = []
            if reply.reason:
                details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                "reason": reply.reason, "domain": "googleapis.com"})
            if reply.retry_delay:
                details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                "retryDelay": reply.retry_delay})
            headers = {"Retry-After": reply.retry_after} if reply.retry_after else None
            return _error(reply.status, reply.message, details, headers)

        embeddings = []
        for item, text in zip(requests, call.texts, strict=True):
            dimensions = reply.dimensions or item.get("outputDimensionality") or DEFAULT_DIMENSIONS
            embeddings.append({"values": standin_vector(text, int(dimensions))})
        if reply.drop:
            embeddings = embeddings[: max(len(embeddings) - reply.drop, 0)]
        return JSONResponse({"embeddings": embeddings})

    # Life cycle.

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            # Slow scripted answers must not hold up the end of the test run.
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="gemini-standin", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Gemini stand-in did not start")
            time.sleep(0.01)
        self._server, self._thread = server, thread

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> GeminiStandIn:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
