"""Dynamic batching of model calls (embeddings/providers/batching.py): concurrent callers share
one model call, each gets its own vectors, and one bad text fails only its own caller."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from memory_layer.config import LocalBackend, Settings
from memory_layer.embeddings.providers import build_provider
from memory_layer.embeddings.providers.base import EmbeddingError
from memory_layer.embeddings.providers.batching import BatchingProvider
from memory_layer.embeddings.providers.cache import QueryCachingProvider
from memory_layer.embeddings.providers.fake import FakeEmbeddingProvider
from tests.embeddings.test_local_backends import CACHE, sentences
from tests.fixtures.app import AppClient, running_client

# A hang guard, not a timing assertion: a batcher that never sends its queue fails here.
GUARD_SECONDS = 60
HOUR = 3600.0


class ModelStandIn(FakeEmbeddingProvider):
    """The fake provider, recording the texts of every call; `gate` (when cleared) holds each
    call until it is set, as a busy model would; `fail` says which error a call's texts cause."""

    def __init__(self, fail: Callable[[list[str]], Exception | None] | None = None) -> None:
        super().__init__(32)
        self.calls: list[list[str]] = []
        self.query_calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = fail

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        await self.gate.wait()
        error = self.fail(texts) if self.fail else None
        if error is not None:
            raise error
        return await super().embed_documents(texts)

    async def embed_query(self, text: str) -> list[float]:
        self.query_calls += 1
        return await super().embed_query(text)

    async def started(self, calls: int) -> None:
        """Until the model has been called `calls` times."""
        async with asyncio.timeout(GUARD_SECONDS):
            while len(self.calls) < calls:
                await asyncio.sleep(0)


def expected(texts: list[str]) -> list[list[float]]:
    return [FakeEmbeddingProvider(32).embed_sync(text) for text in texts]


async def test_callers_waiting_for_a_busy_model_share_its_next_call() -> None:
    model = ModelStandIn()
    batcher = BatchingProvider(model, wait_seconds=0, max_texts=32)
    model.gate.clear()
    first = asyncio.create_task(batcher.embed_documents(["the first message"]))
    await model.started(1)
    texts = [f"message number {i} about topic {i * 7}" for i in range(20)]
    rest = [asyncio.create_task(batcher.embed_documents([text])) for text in texts]
    await asyncio.sleep(0.01)
    assert len(model.calls) == 1  # the model is busy: the others wait in the queue
    model.gate.set()
    async with asyncio.timeout(GUARD_SECONDS):
        assert await first == expected(["the first message"])
        answers = await asyncio.gather(*rest)
    assert model.calls == [["the first message"], texts]
    assert answers == [expected([text]) for text in texts]
    assert (batcher.model_calls, batcher.texts_sent) == (2, 21)


async def test_many_concurrent_callers_get_their_own_vectors_in_order() -> None:
    model = ModelStandIn()
    batcher = BatchingProvider(model, wait_seconds=0.002, max_texts=8)
    rng = random.Random(27)
    requests = [
        [f"caller {caller} text {index} word{rng.randrange(10**6)}"
         for index in range(rng.randint(1, 3))]
        for caller in range(200)
    ]

    async def call(texts: list[str]) -> list[list[float]]:
        await asyncio.sleep(rng.random() * 0.005)
        return await batcher.embed_documents(texts)

    async with asyncio.timeout(GUARD_SECONDS):
        answers = await asyncio.gather(*(call(texts) for texts in requests))
    assert answers == [expected(texts) for texts in requests]
    sent = [text for texts in model.calls for text in texts]
    assert sorted(sent) == sorted(text for texts in requests for text in texts)
    assert max(len(texts) for texts in model.calls) <= 8
    assert len(model.calls) < len(requests)  # some callers shared a call


async def test_a_full_queue_goes_at_once_and_a_lone_call_after_the_wait() -> None:
    model = ModelStandIn()
    # An hour's wait: only a full queue can send these four.
    patient = BatchingProvider(model, wait_seconds=HOUR, max_texts=4)
    texts = ["one", "two", "three", "four"]
    async with asyncio.timeout(GUARD_SECONDS):
        answers = await asyncio.gather(*(patient.embed_documents([text]) for text in texts))
    assert answers == [expected([text]) for text in texts]
    assert model.calls == [texts]
    # A lone call on an idle model goes once the wait is over.
    prompt = BatchingProvider(model, wait_seconds=0.02, max_texts=4)
    async with asyncio.timeout(GUARD_SECONDS):
        assert await prompt.embed_documents(["alone"]) == expected(["alone"])
    assert model.calls[-1] == ["alone"]


async def test_a_call_of_max_texts_goes_alone_even_while_the_model_is_busy() -> None:
    model = ModelStandIn()
    batcher = BatchingProvider(model, wait_seconds=HOUR, max_texts=4)
    model.gate.clear()
    queued = asyncio.create_task(batcher.embed_documents(["queued"]))
    big = asyncio.create_task(batcher.embed_documents(["a", "b", "c", "d"]))
    await model.started(1)
    assert model.calls == [["a", "b", "c", "d"]]
    model.gate.set()
    assert await big == expected(["a", "b", "c", "d"])
    await asyncio.sleep(0.01)
    assert not queued.done()  # still within its (hour-long) wait for others
    queued.cancel()
    await batcher.close()


@pytest.mark.parametrize(
    "error",
    [EmbeddingError("the model rejected the text", kind="invalid_input"), ValueError("bad input")],
    ids=["embedding-error", "unexpected-exception"],
)
async def test_one_bad_text_fails_only_its_own_caller(error: Exception) -> None:
    model = ModelStandIn(fail=lambda texts: error if any("poison" in t for t in texts) else None)
    batcher = BatchingProvider(model, wait_seconds=0, max_texts=32)
    model.gate.clear()
    first = asyncio.create_task(batcher.embed_documents(["warm up"]))
    await model.started(1)
    requests = [["good one"], ["poison pill", "innocent neighbour"], ["good two"], ["good three"]]
    tasks = [asyncio.create_task(batcher.embed_documents(texts)) for texts in requests]
    await asyncio.sleep(0.01)
    model.gate.set()
    async with asyncio.timeout(GUARD_SECONDS):
        await first
        answers = await asyncio.gather(*tasks, return_exceptions=True)
    failure = answers[1]
    assert isinstance(failure, EmbeddingError)
    assert failure.kind in {"invalid_input", "model"}
    for index in (0, 2, 3):
        assert answers[index] == expected(requests[index])
    # The shared call failed, then every caller's texts went alone.
    assert model.calls == [["warm up"], [t for texts in requests for t in texts], *requests]


async def test_a_provider_wide_error_fails_every_caller_of_the_call_once() -> None:
    outage = EmbeddingError("provider down", kind="unavailable")
    model = ModelStandIn(fail=lambda texts: outage if len(texts) > 1 else None)
    batcher = BatchingProvider(model, wait_seconds=0, max_texts=32)
    model.gate.clear()
    first = asyncio.create_task(batcher.embed_documents(["warm up"]))
    await model.started(1)
    tasks = [asyncio.create_task(batcher.embed_documents([f"text {i}"])) for i in range(3)]
    await asyncio.sleep(0.01)
    model.gate.set()
    async with asyncio.timeout(GUARD_SECONDS):
        await first
        answers = await asyncio.gather(*tasks, return_exceptions=True)
    assert answers == [outage, outage, outage]
    assert len(model.calls) == 2  # not retried text by text: it is not the texts' fault


async def test_a_cancelled_caller_leaves_the_others_alone() -> None:
    model = ModelStandIn()
    batcher = BatchingProvider(model, wait_seconds=0, max_texts=32)
    model.gate.clear()
    first = asyncio.create_task(batcher.embed_documents(["first"]))
    await model.started(1)
    gone = asyncio.create_task(batcher.embed_documents(["gone"]))
    kept = asyncio.create_task(batcher.embed_documents(["kept"]))
    await asyncio.sleep(0.01)
    gone.cancel()
    model.gate.set()
    async with asyncio.timeout(GUARD_SECONDS):
        assert await first == expected(["first"])
        assert await kept == expected(["kept"])
    assert gone.cancelled()
    assert model.calls == [["first"], ["kept"]]


async def test_close_fails_the_calls_in_flight_and_in_the_queue() -> None:
    model = ModelStandIn()
    batcher = BatchingProvider(model, wait_seconds=0, max_texts=32)
    model.gate.clear()
    running = asyncio.create_task(batcher.embed_documents(["running"]))
    await model.started(1)
    queued = asyncio.create_task(batcher.embed_documents(["queued"]))
    await asyncio.sleep(0.01)
    await batcher.close()
    async with asyncio.timeout(GUARD_SECONDS):
        answers = await asyncio.gather(running, queued, return_exceptions=True)
    assert all(isinstance(a, EmbeddingError) and a.kind == "unavailable" for a in answers)
    with pytest.raises(EmbeddingError, match="closed"):
        await batcher.embed_documents(["after close"])


async def test_queries_join_the_batches_only_when_they_are_document_vectors() -> None:
    model = ModelStandIn()
    shared = BatchingProvider(model, wait_seconds=0, max_texts=32, queries_are_documents=True)
    assert await shared.embed_query("where do I live") == expected(["where do I live"])[0]
    assert (model.calls, model.query_calls) == ([["where do I live"]], 0)
    apart = BatchingProvider(model, wait_seconds=0, max_texts=32, queries_are_documents=False)
    assert await apart.embed_query("where do I live") == expected(["where do I live"])[0]
    assert (len(model.calls), model.query_calls) == (1, 1)


def test_settings_choose_the_batcher() -> None:
    base: dict[str, Any] = {"_env_file": None, "embedding_provider": "fake"}

    async def built(**overrides: Any) -> Any:
        provider = await build_provider(Settings(**base, **overrides))
        await provider.close()
        return provider

    on = asyncio.run(built(embed_batch_wait_ms=7, embed_batch_max=12))
    assert isinstance(on, QueryCachingProvider)
    assert isinstance(on.inner, BatchingProvider)
    assert (on.inner._wait, on.inner._max_texts) == (0.007, 12)
    off = asyncio.run(built(embed_batch_max=1))
    assert isinstance(off, QueryCachingProvider)
    assert isinstance(off.inner, FakeEmbeddingProvider)


async def test_concurrent_inline_writes_are_each_stored_with_their_own_vector(
    settings_factory: Callable[..., Settings], tenant: str
) -> None:
    """Through the API: 24 clients post one message each at once (inline embeddings), the fake
    model slowed so their calls overlap; each message is then found first by its own text, at
    similarity 1, in vector mode."""
    settings = settings_factory(fake_embedding_delay_ms=30, embed_batch_wait_ms=10)
    texts = [f"note {i}: the {word} sits on shelf {i * 13}" for i, word in
             enumerate(["lamp", "vase", "clock", "book", "plant", "mug", "radio", "globe"] * 3)]
    async with running_client(settings, headers={"X-API-Key": "test-admin-key"}) as client:
        answers = await asyncio.gather(*(post(client, tenant, text) for text in texts))
        ids = dict(zip(texts, answers, strict=True))
        for text in texts:
            found = await client.get(
                "/v1/memory/search",
                params={"tenant_id": tenant, "query": text, "mode": "vector", "top_k": 1},
            )
            (item,) = found.json()["items"]
            assert item["message_id"] == ids[text]
            assert item["similarity"] == pytest.approx(1.0, abs=1e-5)
        batcher = client.embedder
        assert isinstance(batcher, QueryCachingProvider)
        assert isinstance(batcher.inner, BatchingProvider)
        assert batcher.inner.texts_sent == len(texts)  # the writes' texts; queries skip the delay


async def post(client: AppClient, tenant: str, text: str) -> str:
    response = await client.post(
        "/v1/messages",
        json={"tenant_id": tenant, "conversation_id": "c1", "role": "user", "content": text},
    )
    assert response.status_code == 200, response.text
    assert response.json()["embedding_status"] == "ready"
    return str(response.json()["message_id"])


@pytest.mark.real_model
async def test_real_model_batched_vectors_match_each_text_alone() -> None:
    """The local model (onnx-int8) through the batcher: 48 concurrent callers each get the vector
    of their own text (its activations are quantized per call, so close to, not equal to, the
    vector of the text alone)."""
    from memory_layer.embeddings.providers.local import LocalEmbeddingProvider

    model = LocalEmbeddingProvider.load(backend=LocalBackend.onnx_int8, cache_dir=CACHE)
    texts = list(dict.fromkeys(sentences()))[:48]
    alone = np.asarray([model.embed_blocking([text])[0] for text in texts])
    batcher = BatchingProvider(model, wait_seconds=0.005, max_texts=16)
    try:
        async with asyncio.timeout(GUARD_SECONDS * 5):
            batched = np.asarray(
                [v[0] for v in await asyncio.gather(*(batcher.embed_documents([t]) for t in texts))]
            )
    finally:
        await batcher.close()
    cosines = batched @ alone.T
    assert (cosines.argmax(axis=1) == np.arange(len(texts))).all()
    assert cosines.diagonal().min() >= 0.99
    assert batcher.model_calls < len(texts)


async def test_a_batch_waits_for_no_caller_that_cannot_come() -> None:
    """With an hour's wait, a batch still goes as soon as it holds a call from every request the
    process is serving: a lone search is not held back, and three writes share one call."""
    model = ModelStandIn()
    in_flight = [1]
    batcher = BatchingProvider(model, wait_seconds=HOUR, max_texts=32, callers=lambda: in_flight[0])
    async with asyncio.timeout(GUARD_SECONDS):
        assert await batcher.embed_query("a lone search") == expected(["a lone search"])[0]
    in_flight[0] = 3
    texts = ["first write", "second write", "third write"]
    tasks = [asyncio.create_task(batcher.embed_documents([text])) for text in texts[:2]]
    await asyncio.sleep(0.01)
    assert len(model.calls) == 1  # two of three callers queued: the batch waits for the third
    tasks.append(asyncio.create_task(batcher.embed_documents([texts[2]])))
    async with asyncio.timeout(GUARD_SECONDS):
        answers = await asyncio.gather(*tasks)
    assert model.calls == [["a lone search"], texts]
    assert answers == [expected([text]) for text in texts]
