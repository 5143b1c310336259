"""A local stand-in for the two language APIs consolidation calls, so tests never reach a model.

One real HTTP server (Starlette under uvicorn, on its own thread, on a free port of 127.0.0.1)
answers what the providers send:

    POST /{version}/models/{model}:generateContent     (google-genai, header x-goog-api-key)
    {"contents": [{"parts": [{"text": <user>}]}], "systemInstruction": {"parts": [{"text": ...}]},
     "generationConfig": {"responseMimeType": "application/json", ...}}
    -> {"candidates": [{"content": {"parts": [{"text": <answer>}], "role": "model"}}]}

    POST /v1/chat/completions                            (httpx, header Authorization: Bearer)
    {"model", "messages": [{"role": "system", ...}, {"role": "user", ...}], "response_format": ...}
    -> {"choices": [{"message": {"role": "assistant", "content": <answer>}}]}

Answers come from `respond(task, user_prompt)` (task: extract, decide or summarize, read off
the system prompt): by default a replay of recorded answers (`Recorded`), or anything a test sets.
`script()` queues error replies (status, Retry-After) consumed one per call. Every call is
recorded.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

VALID_API_KEY = "standin-valid-key"

Responder = Callable[[str, str], str]


@dataclass(frozen=True)
class Reply:
    """One scripted answer: an error status (with Retry-After), raw text, or a delay."""

    status: int = 200
    message: str = "scripted"
    retry_after: str | None = None
    text: str | None = None  # answer this text instead of asking the responder
    delay_seconds: float = 0.0


@dataclass(frozen=True)
class Call:
    api: str  # gemini | openai
    model: str
    api_key: str | None
    task: str
    system: str
    user: str
    body: dict[str, Any] = field(repr=False)


def task_of(system: str) -> str:
    if "list the\ndurable facts" in system or "durable facts" in system:
        return "extract"
    if "keep a user's memory current" in system:
        return "decide"
    return "summarize"


class Recorded:
    """Replays recorded model answers: extraction and summaries by their prompt; decisions by the
    new fact's statement, naming their target by its statement (ids differ from run to run)."""

    def __init__(self, path: Path) -> None:
        document = json.loads(path.read_text())
        self.extract: dict[str, Any] = document.get("extract", {})
        self.decide: dict[str, Any] = document.get("decide", {})
        self.summaries: dict[str, str] = document.get("summarize", {})
        self.misses: list[tuple[str, str]] = []

    def __call__(self, task: str, user: str) -> str:
        if task == "extract":
            if user not in self.extract:
                self.misses.append((task, user))
            return json.dumps({"facts": self.extract.get(user, [])})
        if task == "decide":
            prompt = json.loads(user)
            recorded = self.decide.get(prompt["new_fact"]["statement"])
            if recorded is None:  # not recorded: the model added it
                return json.dumps({"event": "ADD", "id": None})
            by_statement = {item["statement"]: item["id"] for item in prompt["existing"]}
            return json.dumps({"event": recorded["event"],
                               "id": by_statement.get(recorded.get("target") or "")})
        last_turn = user.rsplit("\n", 1)[-1]
        return json.dumps({"summary": self.summaries.get(last_turn, "A conversation.")})


def _gemini_texts(content: Any) -> str:
    if isinstance(content, dict):
        parts = content.get("parts") or []
        return "".join(p.get("text", "") for p in parts if isinstance(p, dict))
    return ""


class LanguageStandIn:
    """The stand-in server; use as a context manager."""

    def __init__(self, respond: Responder, api_keys: frozenset[str] = frozenset({VALID_API_KEY})) -> None:
        self.respond = respond
        self.api_keys = api_keys
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._script: deque[Reply] = deque()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._app = Starlette(routes=[
            Route("/v1/chat/completions", self._openai, methods=["POST"]),
            Route("/{version}/models/{target}", self._gemini, methods=["POST"]),
        ])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def _next(self) -> Reply:
        with self._lock:
            return self._script.popleft() if self._script else Reply()

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    async def _answer(self, call: Call) -> tuple[Reply, str]:
        reply = self._next()
        if reply.delay_seconds:
            await asyncio.sleep(reply.delay_seconds)
        if reply.status != 200:
            return reply, ""
        return reply, reply.text if reply.text is not None else self.respond(call.task, call.user)

    async def _openai(self, request: Request) -> JSONResponse:
        body = await request.json()
        messages = body.get("messages", [])
        system = next((m["content"] for m in messages if m.get("role") == "system"), "")
        user = next((m["content"] for m in messages if m.get("role") == "user"), "")
        authorization = request.headers.get("authorization", "")
        key = authorization.removeprefix("Bearer ") if authorization else None
        call = Call("openai", body.get("model", ""), key, task_of(system), system, user, body)
        self._record(call)
        if key not in self.api_keys:
            return JSONResponse({"error": {"message": "Incorrect API key provided"}}, status_code=401)
        reply, text = await self._answer(call)
        if reply.status != 200:
            headers = {"Retry-After": reply.retry_after} if reply.retry_after else None
            return JSONResponse({"error": {"message": reply.message}}, status_code=reply.status,
                                headers=headers)
        return JSONResponse({
            "id": "chatcmpl-standin", "object": "chat.completion", "model": call.model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
        })

    async def _gemini(self, request: Request) -> JSONResponse:
        model, _, method = request.path_params["target"].partition(":")
        body = await request.json()
        system = _gemini_texts(body.get("systemInstruction") or body.get("system_instruction"))
        user = "".join(_gemini_texts(c) for c in body.get("contents", []))
        call = Call("gemini", model, request.headers.get("x-goog-api-key"), task_of(system), system,
                    user, body)
        self._record(call)
        if method != "generateContent":
            return _google_error(404, f"Method {method!r} is not served by this stand-in.")
        if call.api_key not in self.api_keys:
            return _google_error(400, "API key not valid. Please pass a valid API key.", [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
            }])
        reply, text = await self._answer(call)
        if reply.status != 200:
            headers = {"Retry-After": reply.retry_after} if reply.retry_after else None
            return _google_error(reply.status, reply.message, headers=headers)
        return JSONResponse({
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                            "finishReason": "STOP", "index": 0}],
            "modelVersion": model,
        })

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = int(sock.getsockname()[1])
        config = uvicorn.Config(self._app, log_level="warning", access_log=False, lifespan="off",
                                loop="asyncio", timeout_graceful_shutdown=1)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                  name="language-standin", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the language stand-in did not start")
            time.sleep(0.01)
        self._server, self._thread = server, thread

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> LanguageStandIn:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


def _google_error(status: int, message: str, details: list[dict[str, Any]] | None = None,
                  headers: dict[str, str] | None = None) -> JSONResponse:
    error: dict[str, Any] = {"code": status, "message": message,
                             "status": _STATUS_NAMES.get(status, "UNKNOWN")}
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status, headers=headers)
