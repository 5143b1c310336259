"""Gemini through the google-genai SDK (extra `gemini`): generate_content with JSON output.

The client is built as the embedding provider builds its own (embeddings/providers/gemini.py):
our httpx client, MEMORY_LANGUAGE_BASE_URL (else Google's endpoint) as the SDK's base URL, its
own retries off so the policy of llm.py alone decides. Errors are classified by the same rules
as the embedding provider's (401/403 or API_KEY_INVALID: auth; 429 with Retry-After or
RetryInfo: rate_limited; 5xx: unavailable).
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import TYPE_CHECKING

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import ValidationError

from memory_layer.consolidation.providers.llm import CallFailure, ModelProvider, Sleep, status_failure
from memory_layer.embeddings.providers.gemini import (
    _error_body,
    _is_api_key_error,
    _retry_after_seconds,
)

if TYPE_CHECKING:
    from memory_layer.config import Settings

DEFAULT_MODEL = "gemini-2.5-flash"


class GeminiLanguageProvider(ModelProvider):
    """generate_content with a system instruction and application/json answers."""

    provider_label = "the Gemini API"

    def __init__(
        self,
        *,
        api_key: str,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        timeout_seconds: float = 60.0,
        max_retries: int = 3,
        retry_max_seconds: float = 60.0,
        sleep: Sleep = asyncio.sleep,
        retry_base_seconds: float = 1.0,
    ) -> None:
        super().__init__(
            model=model, timeout_seconds=timeout_seconds, max_retries=max_retries,
            retry_base_seconds=retry_base_seconds, retry_max_seconds=retry_max_seconds,
            sleep=sleep,
        )
        self._http = httpx.AsyncClient(timeout=timeout_seconds)
        self._client = genai.Client(
            vertexai=False,
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=base_url,
                timeout=math.ceil(timeout_seconds * 1000),
                retry_options=types.HttpRetryOptions(attempts=1),
                httpx_async_client=self._http,
            ),
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, sleep: Sleep = asyncio.sleep) -> GeminiLanguageProvider:
        """The provider of the MEMORY_LANGUAGE_* settings (the key falls back to
        MEMORY_GEMINI_API_KEY)."""
        secret = settings.language_api_key or settings.gemini_api_key
        return cls(
            api_key=secret.get_secret_value() if secret is not None else "",
            model=settings.language_model or DEFAULT_MODEL,
            base_url=settings.language_base_url,
            timeout_seconds=settings.language_timeout_seconds,
            max_retries=settings.language_max_retries,
            retry_max_seconds=settings.language_retry_max_seconds,
            sleep=sleep,
        )

    @property
    def name(self) -> str:
        return f"gemini:{self._model}"

    async def close(self) -> None:
        await self._client.aio.aclose()
        self._client.close()
        await self._http.aclose()

    async def _complete(self, system: str, user: str) -> str:
        config = types.GenerateContentConfig(
            system_instruction=system,
            response_mime_type="application/json",
            temperature=0,
        )
        try:
            response = await self._client.aio.models.generate_content(
                model=self._model, contents=user, config=config
            )
        except genai_errors.APIError as exc:
            raise self._api_failure(exc) from exc
        except httpx.TimeoutException as exc:
            raise CallFailure(f"{self.provider_label} did not answer in time", "timeout",
                              True) from exc
        except httpx.TransportError as exc:
            raise CallFailure(f"could not reach {self.provider_label}: {type(exc).__name__}: {exc}",
                              "unavailable", True) from exc
        except (json.JSONDecodeError, genai_errors.UnknownApiResponseError, ValidationError) as exc:
            raise CallFailure(f"{self.provider_label} answered something unreadable: {exc}",
                              "bad_response", False) from exc
        text = response.text
        if not text:
            raise CallFailure(f"{self.provider_label} answered no text", "bad_response", False)
        return text

    def _api_failure(self, exc: genai_errors.APIError) -> CallFailure:
        body = _error_body(exc)
        detail = f"HTTP {exc.code} {exc.status or ''}: {exc.message or ''}".strip()
        status = exc.code
        if status == 400 and _is_api_key_error(body, exc.message):
            status = 401
        return status_failure(status, detail, _retry_after_seconds(exc, body),
                              self.provider_label, self._model)
