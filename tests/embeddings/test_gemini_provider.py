"""The Gemini provider against a local HTTP stand-in of the Gemini REST API (no Google, no database).

The provider runs the real google-genai SDK over real HTTP; only the server is ours. Sleeps between
retries are recorded instead of slept, so the waits the provider chose can be checked exactly.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from google.genai import errors as genai_errors

from memory_layer.config import ConfigurationError, Settings
from memory_layer.embeddings.providers import build_provider
from memory_layer.embeddings.providers.base import EmbeddingError, EmbeddingProvider
from memory_layer.embeddings.providers.cache import QueryCachingProvider
from memory_layer.embeddings.providers.gemini import GeminiEmbeddingProvider
from tests.support.gemini_standin import (
    VALID_API_KEY,
    GeminiStandIn,
    Reply,
    invalid_argument,
    missing_vectors,
    rate_limited,
    server_error,
    slow,
    standin_vector,
    wrong_dimensions,
)

DIMENSIONS = 768
MODEL = "gemini-embedding-001"


class RecordingSleep:
    """Stands in for asyncio.sleep: records each wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


ProviderFactory = Callable[..., GeminiEmbeddingProvider]


@pytest.fixture(scope="session")
def standin_server() -> Iterator[GeminiStandIn]:
    with GeminiStandIn() as server:
        yield server


@pytest.fixture
def standin(standin_server: GeminiStandIn) -> GeminiStandIn:
    standin_server.reset()
    return standin_server


@pytest.fixture
def sleeper() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def make_provider(
    standin: GeminiStandIn, sleeper: RecordingSleep
) -> AsyncIterator[ProviderFactory]:
    providers: list[GeminiEmbeddingProvider] = []

    def factory(**overrides: Any) -> GeminiEmbeddingProvider:
        values: dict[str, Any] = {
            "api_key": VALID_API_KEY,
            "dimensions": DIMENSIONS,
            "model": MODEL,
            "base_url": standin.url,
            "timeout_seconds": 5.0,
            "max_retries": 3,
            "retry_base_seconds": 1.0,
            "retry_max_seconds": 30.0,
            "sleep": sleeper,
            # The middle of the jitter range, so back-off waits are exact numbers.
            "jitter": lambda: 0.5,
        }
        values.update(overrides)
        provider = GeminiEmbeddingProvider(**values)
        providers.append(provider)
        return provider

    yield factory
    for provider in providers:
        await provider.close()


def unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(value * value for value in vector))
    return [value / norm for value in vector]


def assert_unit_length(vectors: list[list[float]]) -> None:
    for vector in vectors:
        assert math.sqrt(sum(value * value for value in vector)) == pytest.approx(1.0, abs=1e-9)


def assert_direction_of(text: str, vector: list[float]) -> None:
    """`vector` is the stand-in's raw answer for `text`, scaled to unit length."""
    expected = unit(standin_vector(text, len(vector)))
    assert max(abs(got - want) for got, want in zip(vector, expected, strict=True)) < 1e-12


@pytest.mark.parametrize(("batch_size", "sizes"), [(100, [100, 100, 50]), (64, [64, 64, 64, 58])])
async def test_documents_go_out_in_ordered_batches_and_come_back_unit_length(
    make_provider: ProviderFactory, standin: GeminiStandIn, batch_size: int, sizes: list[int]
) -> None:
    texts = [f"message number {index}" for index in range(250)]
    provider = make_provider(batch_size=batch_size)

    vectors = await provider.embed_documents(texts)

    calls = standin.calls
    assert [len(call.texts) for call in calls] == sizes
    assert [text for call in calls for text in call.texts] == texts
    for call in calls:
        assert call.path == f"/{call.api_version}/models/{MODEL}:batchEmbedContents"
        assert call.api_key == VALID_API_KEY
        assert set(call.task_types) == {"RETRIEVAL_DOCUMENT"}
        assert set(call.dimensionalities) == {DIMENSIONS}
        assert set(call.request_models) == {f"models/{MODEL}"}
        # The per-call timeout reaches the server too.
        assert call.server_timeout == "5"
    assert len(vectors) == len(texts)
    assert all(len(vector) == DIMENSIONS for vector in vectors)
    assert_unit_length(vectors)
    # Each answer belongs to its own text: the stand-in's raw vector, scaled to unit length.
    for text, vector in zip(texts, vectors, strict=True):
        assert_direction_of(text, vector)


async def test_query_uses_the_query_task_type(make_provider: ProviderFactory, standin: GeminiStandIn) -> None:
    provider = make_provider()

    vector = await provider.embed_query("what is my name?")

    [call] = standin.calls
    assert call.texts == ["what is my name?"]
    assert call.task_types == ["RETRIEVAL_QUERY"]
    assert call.dimensionalities == [DIMENSIONS]
    assert len(vector) == DIMENSIONS
    assert_unit_length([vector])
    assert provider.model_name == MODEL
    assert provider.dimensions == DIMENSIONS


async def test_no_texts_make_no_call(make_provider: ProviderFactory, standin: GeminiStandIn) -> None:
    assert await make_provider().embed_documents([]) == []
    assert standin.calls == []


async def test_429_waits_as_long_as_retry_after_says(
    make_provider: ProviderFactory, standin: GeminiStandIn, sleeper: RecordingSleep
) -> None:
    standin.script(rate_limited(retry_after="7"), rate_limited(retry_after="2"))
    provider = make_provider()

    vectors = await provider.embed_documents(["hello", "world"])

    assert sleeper.waits == [7.0, 2.0]
    assert len(standin.calls) == 3
    assert [call.texts for call in standin.calls] == [["hello", "world"]] * 3
    assert_direction_of("world", vectors[1])


async def test_429_without_header_uses_the_retry_info_in_the_body(
    make_provider: ProviderFactory, standin: GeminiStandIn, sleeper: RecordingSleep
) -> None:
    standin.script(rate_limited(retry_delay="3.5s"))

    await make_provider().embed_query("hello")

    assert sleeper.waits == [3.5]
    assert len(standin.calls) == 2


async def test_retry_after_is_capped_by_retry_max_seconds(
    make_provider: ProviderFactory, standin: GeminiStandIn, sleeper: RecordingSleep
) -> None:
    standin.script(rate_limited(retry_after="120"))

    await make_provider(retry_max_seconds=5.0).embed_query("hello")

    assert sleeper.waits == [5.0]


async def test_429_storm_gives_up_rate_limited_after_max_retries(
    make_provider: ProviderFactory, standin: GeminiStandIn, sleeper: RecordingSleep
) -> None:
    standin.always(rate_limited())
    provider = make_provider(max_retries=3)

    with pytest.raises(EmbeddingError) as caught:
        await provider.embed_documents(["hello"])

    assert caught.value.kind == "rate_limited"
    assert caught.value.retryable is True
    assert len(standin.calls) == 3 + 1
    # No server hint: exponential back-off (1, 2, 4 s steps) with the jitter fixed at the middle.
    assert sleeper.waits == [0.75, 1.5, 3.0]


async def test_giving_up_says_how_many_attempts_and_logs_each_retry(
    make_provider: ProviderFactory,
    standin: GeminiStandIn,
    sleeper: RecordingSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    standin.always(rate_limited())
    caplog.set_level(logging.WARNING, logger="memory_layer.embeddings.providers.gemini")

    with pytest.raises(EmbeddingError) as caught:
        await make_provider(max_retries=2).embed_query("hello")

    assert str(caught.value).endswith("(gave up after 3 attempts)")
    # The SDK's error stays attached, for the traceback in the worker's log.
    assert isinstance(caught.value.__cause__, genai_errors.ClientError)
    failure = str(caught.value).removesuffix(" (gave up after 3 attempts)")
    assert [record.getMessage() for record in caplog.records] == [
        f"Gemini embedding call failed (rate_limited: {failure}); retry 1 of 2 in 0.75s",
        f"Gemini embedding call failed (rate_limited: {failure}); retry 2 of 2 in 1.50s",
    ]


async def test_backoff_steps_are_capped_by_retry_max_seconds(
    make_provider: ProviderFactory, standin: GeminiStandIn, sleeper: RecordingSleep
) -> None:
    standin.always(server_error(503))

    with pytest.raises(EmbeddingError):
        await make_provider(max_retries=3, retry_max_seconds=1.5).embed_query("hello")

    # Steps of 1, then 1.5 and 1.5 s (not 2 and 4), each taken at its middle by the fixed jitter.
    assert sleeper.waits == [0.75, 1.125, 1.125]


async def test_a_non_retryable_answer_after_a_retry_ends_the_retries_at_once(
    make_provider: ProviderFactory, standin: GeminiStandIn, sleeper: RecordingSleep
) -> None:
    standin.script(server_error(503), invalid_argument("Request contains an invalid argument."))

    with pytest.raises(EmbeddingError) as caught:
        await make_provider(max_retries=3).embed_query("hello")

    assert caught.value.kind == "invalid_input"
    assert caught.value.retryable is False
    assert str(caught.value).endswith("(gave up after 2 attempts)")
    assert len(standin.calls) == 2
    assert len(sleeper.waits) == 1


async def test_an_error_on_the_first_and_only_attempt_does_not_mention_attempts(
    make_provider: ProviderFactory, standin: GeminiStandIn, sleeper: RecordingSleep
) -> None:
    standin.script(invalid_argument("Request contains an invalid argument."))

    with pytest.raises(EmbeddingError) as caught:
        await make_provider().embed_query("hello")

    assert "attempts" not in str(caught.value)
    assert len(standin.calls) == 1
    assert sleeper.waits == []


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_retried_until_success(
    make_provider: ProviderFactory, standin: GeminiStandIn, sleeper: RecordingSleep, status: int
) -> None:
    standin.script(server_error(status), server_error(status))

    vectors = await make_provider().embed_documents(["hello"])

    assert len(standin.calls) == 3
    assert len(sleeper.waits) == 2
    assert_unit_length(vectors)


async def test_server_error_storm_ends_unavailable(
    make_provider: ProviderFactory, standin: GeminiStandIn
) -> None:
    standin.always(server_error(503))

    with pytest.raises(EmbeddingError) as caught:
        await make_provider(max_retries=2).embed_query("hello")

    assert caught.value.kind == "unavailable"
    assert caught.value.retryable is True
    assert len(standin.calls) == 2 + 1


async def test_the_sdk_does_not_retry_on_its_own(
    make_provider: ProviderFactory, standin: GeminiStandIn
) -> None:
    standin.always(server_error(503))

    with pytest.raises(EmbeddingError):
        await make_provider(max_retries=0).embed_query("hello")

    assert len(standin.calls) == 1


async def test_a_call_that_takes_too_long_times_out_and_is_retried(
    make_provider: ProviderFactory, standin: GeminiStandIn, sleeper: RecordingSleep
) -> None:
    standin.script(slow(1.0))

    vector = await make_provider(timeout_seconds=0.2).embed_query("hello")

    assert len(standin.calls) == 2
    assert len(sleeper.waits) == 1
    assert_unit_length([vector])


async def test_timeouts_every_time_end_in_kind_timeout(
    make_provider: ProviderFactory, standin: GeminiStandIn
) -> None:
    standin.always(slow(1.0))

    with pytest.raises(EmbeddingError) as caught:
        await make_provider(timeout_seconds=0.2, max_retries=1).embed_query("hello")

    assert caught.value.kind == "timeout"
    assert caught.value.retryable is True
    assert len(standin.calls) == 2


async def test_an_unreachable_server_is_retried_then_unavailable(
    make_provider: ProviderFactory, sleeper: RecordingSleep
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]

    with pytest.raises(EmbeddingError) as caught:
        await make_provider(base_url=f"http://127.0.0.1:{closed_port}", max_retries=2).embed_query("x")

    assert caught.value.kind == "unavailable"
    assert caught.value.retryable is True
    assert len(sleeper.waits) == 2


@pytest.mark.parametrize(
    "reply",
    [
        None,  # a key the server does not know: 400 INVALID_ARGUMENT, reason API_KEY_INVALID
        Reply(status=401, message="Request had invalid authentication credentials."),
        Reply(status=403, message="Permission denied: Consumer has been suspended."),
    ],
    ids=["400-api-key-invalid", "401", "403"],
)
async def test_a_rejected_key_is_an_auth_error_and_not_retried(
    make_provider: ProviderFactory, standin: GeminiStandIn, sleeper: RecordingSleep, reply: Reply | None
) -> None:
    if reply is None:
        provider = make_provider(api_key="not-the-right-key")
    else:
        standin.always(reply)
        provider = make_provider()

    with pytest.raises(EmbeddingError) as caught:
        await provider.embed_documents(["hello"])

    assert caught.value.kind == "auth"
    assert caught.value.retryable is False
    assert "MEMORY_GEMINI_API_KEY" in str(caught.value)
    assert len(standin.calls) == 1
    assert sleeper.waits == []


async def test_vectors_of_the_wrong_dimension_are_a_bad_response(
    make_provider: ProviderFactory, standin: GeminiStandIn
) -> None:
    standin.script(wrong_dimensions(3072))

    with pytest.raises(EmbeddingError) as caught:
        await make_provider().embed_documents(["hello", "world"])

    assert caught.value.kind == "bad_response"
    assert caught.value.retryable is False
    assert "3072" in str(caught.value)
    assert str(DIMENSIONS) in str(caught.value)
    assert len(standin.calls) == 1


async def test_too_few_vectors_are_a_bad_response(
    make_provider: ProviderFactory, standin: GeminiStandIn
) -> None:
    standin.script(missing_vectors(1))

    with pytest.raises(EmbeddingError) as caught:
        await make_provider().embed_documents(["hello", "world", "again"])

    assert caught.value.kind == "bad_response"
    assert caught.value.retryable is False
    assert "2 vectors for 3 texts" in str(caught.value)


async def test_other_400s_are_invalid_input_and_not_retried(
    make_provider: ProviderFactory, standin: GeminiStandIn
) -> None:
    standin.script(invalid_argument("Request payload size exceeds the limit: 36000 bytes."))

    with pytest.raises(EmbeddingError) as caught:
        await make_provider().embed_documents(["hello"])

    assert caught.value.kind == "invalid_input"
    assert caught.value.retryable is False
    assert "payload size" in str(caught.value)
    assert len(standin.calls) == 1


def gemini_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "embedding_provider": "google_gemini",
        "embedding_dimensions": DIMENSIONS,
        "gemini_api_key": VALID_API_KEY,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


async def test_the_factory_builds_the_gemini_provider_from_settings(standin: GeminiStandIn) -> None:
    settings = gemini_settings(
        gemini_base_url=standin.url,
        gemini_batch_size=50,
        gemini_timeout_seconds=7.0,
        query_cache_size=16,
    )

    provider: EmbeddingProvider = await build_provider(settings)
    try:
        assert isinstance(provider, QueryCachingProvider)
        assert isinstance(provider.inner, GeminiEmbeddingProvider)
        assert provider.model_name == MODEL
        assert provider.dimensions == DIMENSIONS

        vectors = await provider.embed_documents([f"text {index}" for index in range(120)])
        await provider.embed_query("what is my name?")
        await provider.embed_query("what is my name?")
    finally:
        await provider.close()

    assert_unit_length(vectors)
    calls = standin.calls
    assert [len(call.texts) for call in calls] == [50, 50, 20, 1]
    assert {call.server_timeout for call in calls} == {"7"}
    assert calls[-1].task_types == ["RETRIEVAL_QUERY"]


async def test_the_factory_refuses_gemini_without_an_api_key() -> None:
    with pytest.raises(ConfigurationError, match="MEMORY_GEMINI_API_KEY"):
        await build_provider(gemini_settings(gemini_api_key=None))
