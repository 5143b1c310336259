"""The Gemini provider: Google's embedding models through the google-genai SDK (extra `gemini`).

Texts go out in batches of at most MEMORY_GEMINI_BATCH_SIZE per call (the SDK sends them to
`models/{model}:batchEmbedContents` of the Gemini Developer API), with the configured output
dimensionality and the retrieval task type of documents or queries. gemini-embedding-001 only returns
unit vectors at its full 3072 dimensions, so every vector is L2-normalized here.

Each call has a deadline. The retry policy lives in tenacity (`_retrying`): 429s, 5xx answers, timeouts
and connection failures are retried with exponential backoff and jitter, or after the server's own
Retry-After / RetryInfo when it sends one; the SDK's own retry is switched off so that exactly one policy
decides. Every failure surfaces as an EmbeddingError whose `kind` and `retryable` tell the worker what
to do next.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential

from memory_layer.embeddings.providers.base import EmbeddingError
from memory_layer.kit.client import parse_retry_after

if TYPE_CHECKING:
    from memory_layer.config import Settings

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gemini-embedding-001"
# The Gemini API accepts at most 100 texts per batchEmbedContents call.
MAX_BATCH_SIZE = 100
DOCUMENT_TASK = "RETRIEVAL_DOCUMENT"
QUERY_TASK = "RETRIEVAL_QUERY"
API_KEY_SETTING = "MEMORY_GEMINI_API_KEY"

Sleep = Callable[[float], Awaitable[None]]


class _Failure(Exception):
    """One failed call, classified: what to tell the caller, and whether (and when) to try again."""

    def __init__(self, message: str, kind: str, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.retryable = retryable
        self.retry_after = retry_after


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, _Failure) and exc.retryable


class GeminiEmbeddingProvider:
    """Embeds texts with a Gemini embedding model, in batches, with retries and unit-length output."""

    def __init__(
        self,
        *,
        api_key: str,
        dimensions: int,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        timeout_seconds: float = 30.0,
        max_retries: int = 4,
        retry_base_seconds: float = 1.0,
        retry_max_seconds: float = 60.0,
        batch_size: int = MAX_BATCH_SIZE,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if not api_key.strip():
            raise EmbeddingError(
                f"the Gemini provider needs an API key: set {API_KEY_SETTING}", kind="auth", retryable=False
            )
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, not {batch_size}")
        if dimensions < 1 or max_retries < 0 or timeout_seconds <= 0:
            raise ValueError("dimensions and timeout_seconds must be positive, max_retries not negative")
        self._model = model
        self._dimensions = dimensions
        self._timeout_seconds = timeout_seconds
        self._max_retries = max_retries
        self._retry_max_seconds = retry_max_seconds
        self._backoff_step = wait_exponential(multiplier=retry_base_seconds, max=retry_max_seconds)
        self._batch_size = batch_size
        self._sleep = sleep
        self._jitter = jitter
        self._endpoint = base_url or "https://generativelanguage.googleapis.com"
        # Our own httpx client, so connection failures and timeouts arrive as httpx exceptions whatever
        # HTTP backend the SDK would pick by default; the SDK leaves a client it was given open for us.
        self._http = httpx.AsyncClient(timeout=timeout_seconds)
        self._client = genai.Client(
            vertexai=False,
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=base_url,
                # The SDK passes its own timeout (milliseconds) to every request, replacing the
                # client's, and sends it to the server as X-Server-Timeout.
                timeout=math.ceil(timeout_seconds * 1000),
                # One attempt per SDK call: the retry policy lives in `_retrying` alone.
                retry_options=types.HttpRetryOptions(attempts=1),
                httpx_async_client=self._http,
            ),
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, sleep: Sleep = asyncio.sleep) -> GeminiEmbeddingProvider:
        """The provider described by the MEMORY_GEMINI_* and MEMORY_EMBEDDING_DIMENSIONS settings."""
        api_key = settings.gemini_api_key.get_secret_value() if settings.gemini_api_key else ""
        return cls(
            api_key=api_key,
            dimensions=settings.embedding_dimensions,
            model=settings.gemini_model,
            base_url=settings.gemini_base_url,
            timeout_seconds=settings.gemini_timeout_seconds,
            max_retries=settings.gemini_max_retries,
            retry_max_seconds=settings.gemini_retry_max_seconds,
            batch_size=settings.gemini_batch_size,
            sleep=sleep,
        )

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def dimensions(self) -> int:
        return self._dimensions

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Vectors for stored messages, in input order, one API call per batch."""
        vectors: list[list[float]] = []
        # One batch at a time: parallel batches would only meet the per-minute quota sooner.
        for start in range(0, len(texts), self._batch_size):
            vectors.extend(await self._embed_batch(texts[start : start + self._batch_size], DOCUMENT_TASK))
        return vectors

    async def embed_query(self, text: str) -> list[float]:
        """The vector for one search query."""
        return (await self._embed_batch([text], QUERY_TASK))[0]

    async def close(self) -> None:
        await self._client.aio.aclose()
        self._client.close()
        await self._http.aclose()

    async def _embed_batch(self, texts: list[str], task_type: str) -> list[list[float]]:
        contents = [types.Content(role="user", parts=[types.Part(text=text)]) for text in texts]
        config = types.EmbedContentConfig(task_type=task_type, output_dimensionality=self._dimensions)
        retrying = self._retrying()
        try:
            response: types.EmbedContentResponse = await retrying(self._call, contents, config)
        except _Failure as failure:
            attempts = retrying.statistics["attempt_number"]
            suffix = f" (gave up after {attempts} attempts)" if attempts > 1 else ""
            raise EmbeddingError(
                failure.message + suffix, kind=failure.kind, retryable=failure.retryable
            ) from failure.__cause__
        return self._unit_vectors(response, len(texts))

    def _retrying(self) -> AsyncRetrying:
        """A fresh policy per batch: its statistics count the attempts of this batch alone."""
        return AsyncRetrying(
            stop=stop_after_attempt(self._max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(_is_retryable),
            before_sleep=self._log_retry,
            sleep=self._sleep,
            # The last _Failure itself, not tenacity's RetryError, reaches `_embed_batch`.
            reraise=True,
        )

    async def _call(
        self, contents: list[types.Content], config: types.EmbedContentConfig
    ) -> types.EmbedContentResponse:
        """One call to the API; any failure comes out classified as a _Failure."""
        try:
            # The SDK's timeout covers each phase of the exchange; this one bounds the whole call.
            async with asyncio.timeout(self._timeout_seconds):
                return await self._client.aio.models.embed_content(
                    model=self._model, contents=contents, config=config
                )
        except Exception as exc:
            raise self._failure(exc) from exc

    def _wait(self, retry_state: RetryCallState) -> float:
        """Seconds before the next attempt: the server's hint if it gave one, else backoff with jitter."""
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(failure, _Failure) and failure.retry_after is not None:
            return min(failure.retry_after, self._retry_max_seconds)
        step = self._backoff_step(retry_state)
        # Half the step plus jitter: clients released by the same outage do not return in lockstep.
        return step / 2 + self._jitter() * step / 2

    def _log_retry(self, retry_state: RetryCallState) -> None:
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(failure, _Failure):
            logger.warning(
                "Gemini embedding call failed (%s: %s); retry %d of %d in %.2fs",
                failure.kind, failure.message, retry_state.attempt_number, self._max_retries,
                retry_state.upcoming_sleep,
            )

    def _failure(self, exc: Exception) -> _Failure:
        if isinstance(exc, genai_errors.APIError):
            return self._api_failure(exc)
        if isinstance(exc, TimeoutError | httpx.TimeoutException):
            return _Failure(
                f"the Gemini API did not answer within {self._timeout_seconds:g}s", "timeout", True
            )
        if isinstance(exc, httpx.TransportError):
            return _Failure(
                f"could not reach the Gemini API at {self._endpoint}: {type(exc).__name__}: {exc}",
                "unavailable",
                True,
            )
        if isinstance(exc, json.JSONDecodeError | genai_errors.UnknownApiResponseError | ValidationError):
            # A 200 whose body is not the JSON of an EmbedContentResponse (a gateway page, a proxy).
            return _Failure(f"the Gemini API answered something unreadable: {exc}", "bad_response", False)
        return _Failure(f"the Gemini SDK failed: {type(exc).__name__}: {exc}", "model", False)

    def _api_failure(self, exc: genai_errors.APIError) -> _Failure:
        code = exc.code
        detail = f"HTTP {code} {exc.status or ''}: {exc.message or ''}".strip()
        body = _error_body(exc)
        if code in (401, 403) or (code == 400 and _is_api_key_error(body, exc.message)):
            return _Failure(
                f"the Gemini API rejected the API key ({detail}); check {API_KEY_SETTING}", "auth", False
            )
        retry_after = _retry_after_seconds(exc, body)
        if code == 429:
            return _Failure(f"the Gemini API is rate limiting ({detail})", "rate_limited", True, retry_after)
        if code in (408, 504):
            return _Failure(f"the Gemini API timed out ({detail})", "timeout", True, retry_after)
        if code >= 500:
            return _Failure(f"the Gemini API is unavailable ({detail})", "unavailable", True, retry_after)
        if code == 404:
            return _Failure(
                f"the Gemini API does not serve the model {self._model!r} ({detail}); "
                "check MEMORY_GEMINI_MODEL",
                "model",
                False,
            )
        return _Failure(f"the Gemini API refused the request ({detail})", "invalid_input", False)

    def _unit_vectors(self, response: types.EmbedContentResponse, expected: int) -> list[list[float]]:
        embeddings = response.embeddings or []
        if len(embeddings) != expected:
            raise EmbeddingError(
                f"the Gemini API answered {len(embeddings)} vectors for {expected} texts",
                kind="bad_response",
                retryable=False,
            )
        vectors: list[list[float]] = []
        for embedding in embeddings:
            values = embedding.values or []
            if len(values) != self._dimensions:
                raise EmbeddingError(
                    f"the Gemini model {self._model} answered {len(values)}-dimensional vectors, expected "
                    f"{self._dimensions} (MEMORY_EMBEDDING_DIMENSIONS); the model or a proxy ignores "
                    "outputDimensionality",
                    kind="bad_response",
                    retryable=False,
                )
            norm = math.hypot(*values)
            if norm == 0.0 or not math.isfinite(norm):
                raise EmbeddingError(
                    f"the Gemini API answered a vector of norm {norm}, which cannot be normalized",
                    kind="bad_response",
                    retryable=False,
                )
            vectors.append([value / norm for value in values])
        return vectors


def _error_body(exc: genai_errors.APIError) -> dict[str, Any]:
    """The `error` object of a Google error answer ({"error": {"code", "message", "status", "details"}})."""
    details: Any = exc.details
    if isinstance(details, dict):
        inner = details.get("error")
        return inner if isinstance(inner, dict) else details
    return {}


def _detail_entries(body: dict[str, Any], type_suffix: str) -> list[dict[str, Any]]:
    entries = body.get("details")
    if not isinstance(entries, list):
        return []
    return [
        entry
        for entry in entries
        if isinstance(entry, dict) and str(entry.get("@type", "")).endswith(type_suffix)
    ]


def _is_api_key_error(body: dict[str, Any], message: str | None) -> bool:
    # A wrong or expired key is a 400 on this API; ErrorInfo.reason says so, older answers only the text.
    reasons = {entry.get("reason") for entry in _detail_entries(body, "google.rpc.ErrorInfo")}
    return "API_KEY_INVALID" in reasons or "api key" in (message or "").lower()


def _retry_after_seconds(exc: genai_errors.APIError, body: dict[str, Any]) -> float | None:
    """The server's own wait hint: the Retry-After header, else google.rpc.RetryInfo in the body."""
    headers: Any = getattr(getattr(exc, "response", None), "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if isinstance(value, str) and (seconds := parse_retry_after(value)) is not None:
        return seconds
    for entry in _detail_entries(body, "google.rpc.RetryInfo"):
        delay = entry.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                seconds = float(delay[:-1])
            except ValueError:
                continue
            if math.isfinite(seconds):
                return max(seconds, 0.0)
    return None
