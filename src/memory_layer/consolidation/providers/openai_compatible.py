"""Any server speaking the chat-completions API (Ollama, vLLM, llama.cpp's server, OpenAI) via httpx.

    POST {MEMORY_LANGUAGE_BASE_URL}/chat/completions     Authorization: Bearer <key> (when set)
    {"model", "messages": [system, user], "temperature": 0, "response_format": {"type": "json_object"}}
    -> {"choices": [{"message": {"content": "<JSON>"}}]}

Timeouts, retries and Retry-After as in llm.py.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx

from memory_layer.config import ConfigurationError
from memory_layer.consolidation.providers.llm import (
    CallFailure,
    ModelProvider,
    Sleep,
    status_failure,
)
from memory_layer.kit.client import parse_retry_after

if TYPE_CHECKING:
    from memory_layer.config import Settings


class OpenAICompatibleProvider(ModelProvider):
    """Chat completions with JSON answers."""

    provider_label = "the chat-completions server"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
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
        self._url = base_url.rstrip("/") + "/chat/completions"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(timeout=timeout_seconds, headers=headers)

    @classmethod
    def from_settings(cls, settings: Settings, *, sleep: Sleep = asyncio.sleep) -> OpenAICompatibleProvider:
        """The provider of the MEMORY_LANGUAGE_* settings."""
        if not settings.language_base_url or not settings.language_model:
            raise ConfigurationError(
                "MEMORY_LANGUAGE_PROVIDER=openai_compatible requires MEMORY_LANGUAGE_BASE_URL and "
                "MEMORY_LANGUAGE_MODEL."
            )
        key = settings.language_api_key.get_secret_value() if settings.language_api_key else None
        return cls(
            base_url=settings.language_base_url,
            model=settings.language_model,
            api_key=key,
            timeout_seconds=settings.language_timeout_seconds,
            max_retries=settings.language_max_retries,
            retry_max_seconds=settings.language_retry_max_seconds,
            sleep=sleep,
        )

    @property
    def name(self) -> str:
        return f"openai_compatible:{self._model}"

    async def close(self) -> None:
        await self._http.aclose()

    async def _complete(self, system: str, user: str) -> str:
        body = {
            "model": self._model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": 0,
            "response_format": {"type": "json_object"},
        }
        try:
            response = await self._http.post(self._url, json=body)
        except httpx.TimeoutException as exc:
            raise CallFailure(f"{self.provider_label} did not answer in time: {exc}", "timeout",
                              True) from exc
        except httpx.TransportError as exc:
            raise CallFailure(f"could not reach {self._url}: {type(exc).__name__}: {exc}",
                              "unavailable", True) from exc
        if response.status_code != 200:
            detail = f"HTTP {response.status_code}: {response.text[:300]}"
            raise status_failure(
                response.status_code, detail, parse_retry_after(response.headers.get("retry-after")),
                self.provider_label, self._model,
            )
        return _content(response)


def _content(response: httpx.Response) -> str:
    try:
        document: Any = response.json()
        content = document["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise CallFailure(f"the chat-completions answer is unreadable: {response.text[:200]!r}",
                          "bad_response", False) from exc
    if not isinstance(content, str):
        raise CallFailure("the chat-completions answer has no text content", "bad_response", False)
    return content
