"""The local model's engines (ONNX fp32 and int8, torch in bfloat16) against torch's fp32 vectors
on the evaluation sentences.

Each backend's vector must stay within cosine 0.99 of torch's for every sentence, and ranking each
question's conversation by cosine must find the evidence (Recall@10) within 0.01 of torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from memory_layer.config import LocalBackend, Settings
from memory_layer.embeddings.providers.base import EmbeddingError
from memory_layer.embeddings.providers.local import LocalEmbeddingProvider, bundled_model_path
from memory_layer.embeddings.providers.onnx_export import onnx_model_file
from tests.fixtures.app import TEST_DATA_DIR

pytestmark = pytest.mark.real_model

DATASET = Path(__file__).resolve().parents[2] / "scripts" / "data" / "eval_conversations.json"
CACHE = TEST_DATA_DIR / "models"
# The texts per model call the service uses (MEMORY_EMBEDDING_BATCH_SIZE): int8's activations are
# quantized per call, so the call's texts are part of what is checked.
MODEL_BATCH = int(Settings.model_fields["embedding_batch_size"].default)


def dataset() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DATASET.read_text())
    return data


def sentences() -> list[str]:
    data = dataset()
    turns = [str(t["text"]) for c in data["conversations"] for t in c["turns"]]
    return turns + [str(q["question"]) for q in data["questions"]]


@pytest.fixture(scope="module")
def vectors() -> dict[LocalBackend, NDArray[np.float64]]:
    texts = sentences()
    result = {}
    for backend in LocalBackend:
        provider = LocalEmbeddingProvider.load(backend=backend, cache_dir=CACHE, batch_size=MODEL_BATCH)
        assert provider.backend is backend
        result[backend] = np.asarray(provider.embed_blocking(texts))
    return result


def recall_at_10(matrix: NDArray[np.float64]) -> float:
    data = dataset()
    turn_ids = [(str(c["conversation_id"]), str(t["turn_id"]))
                for c in data["conversations"] for t in c["turns"]]
    questions = data["questions"]
    turn_vectors, question_vectors = matrix[: len(turn_ids)], matrix[len(turn_ids):]
    recalls = []
    for question, query in zip(questions, question_vectors, strict=True):
        rows = [i for i, (conversation, _) in enumerate(turn_ids)
                if conversation == question["conversation_id"]]
        scores = turn_vectors[rows] @ query
        top = {turn_ids[rows[i]][1] for i in np.argsort(-scores)[:10]}
        evidence = set(question["evidence"])
        recalls.append(len(evidence & top) / len(evidence))
    return float(np.mean(recalls))


# Every engine but the reference, so a new engine is held to the same check.
CANDIDATES = [b for b in LocalBackend if b is not LocalBackend.torch]


@pytest.mark.parametrize("backend", CANDIDATES)
def test_engine_vectors_match_torch(
    vectors: dict[LocalBackend, NDArray[np.float64]], backend: LocalBackend
) -> None:
    reference, candidate = vectors[LocalBackend.torch], vectors[backend]
    assert candidate.shape == reference.shape == (len(sentences()), 384)
    assert np.allclose(np.linalg.norm(candidate, axis=1), 1.0, atol=1e-5)
    cosines = (reference * candidate).sum(axis=1)
    assert cosines.min() >= 0.99, f"worst sentence: {sentences()[int(cosines.argmin())]!r}"


@pytest.mark.parametrize("backend", CANDIDATES)
def test_engine_recall_matches_torch(
    vectors: dict[LocalBackend, NDArray[np.float64]], backend: LocalBackend
) -> None:
    reference = recall_at_10(vectors[LocalBackend.torch])
    assert reference > 0.5  # the ranking is meaningful, not a comparison of two failures
    # Rounded: one evidence turn more or less among the 100 questions is 0.01 exactly, which
    # floating point would otherwise see as a hair above it.
    assert round(abs(recall_at_10(vectors[backend]) - reference), 9) <= 0.01


def test_long_text_windows_agree_across_backends() -> None:
    long_text = "The quarterly report covers revenue and costs. " * 40 + "The cat is named Pixel."
    torch_v, onnx_v = (
        np.asarray(LocalEmbeddingProvider.load(backend=b, cache_dir=CACHE).embed_blocking([long_text])[0])
        for b in (LocalBackend.torch, LocalBackend.onnx)
    )
    assert float(torch_v @ onnx_v) >= 0.99


def test_concurrent_first_use_exports_once(tmp_path: Path) -> None:
    model = bundled_model_path()
    results: list[Path] = []
    errors: list[BaseException] = []

    def export() -> None:
        try:
            results.append(onnx_model_file(model, tmp_path, int8=False, model_name="m"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=export) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 2
    assert results[0] == results[1]
    # No half-written file was left behind, and the one file loads.
    (folder,) = tmp_path.iterdir()
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["model.onnx"]
    stamp = results[0].stat().st_mtime_ns
    assert onnx_model_file(model, tmp_path, int8=False, model_name="m") == results[0]
    assert results[0].stat().st_mtime_ns == stamp


async def test_model_thread_runs_at_the_configured_niceness() -> None:
    """The model's thread yields the CPU to the event loop: MEMORY_LOCAL_MODEL_NICE applies to
    that thread alone, the calling thread keeps its priority."""
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    before = {t.native_id for t in threading.enumerate()}
    provider = LocalEmbeddingProvider.load(backend=LocalBackend.onnx, cache_dir=CACHE, nice=7)
    try:
        await provider.embed_documents(["the thread starts with the first call"])
        [model_thread] = [
            t.native_id for t in threading.enumerate()
            if t.name.startswith("embed-local") and t.native_id not in before
        ]
        assert model_thread is not None
        assert os.getpriority(os.PRIO_PROCESS, model_thread) == 7
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own
        comm = Path(f"/proc/self/task/{model_thread}/comm").read_text().strip()
        assert comm == "embed-local"
    finally:
        await provider.close()


# Loads the provider on ONNX in a fresh interpreter, embeds a short and a long text (the long one
# goes through the tokenizer's windows), and prints which heavy modules that interpreter holds.
SERVING_PROCESS = """
import json, sys
from pathlib import Path
from memory_layer.config import LocalBackend
from memory_layer.embeddings.providers.local import LocalEmbeddingProvider
provider = LocalEmbeddingProvider.load(backend=LocalBackend.onnx_int8, cache_dir=Path(sys.argv[1]))
vectors = provider.embed_blocking(["a short line", "the quarterly report covers revenue. " * 60])
heavy = sorted(m for m in ("torch", "transformers", "sentence_transformers", "onnx") if m in sys.modules)
print(json.dumps({"heavy": heavy, "vectors": len(vectors), "dimensions": len(vectors[0])}))
"""


@pytest.mark.parametrize("first_use", [True, False], ids=["exporting", "exported"])
def test_onnx_serving_process_never_loads_torch(tmp_path: Path, first_use: bool) -> None:
    """The export runs in a child process: the process that serves on ONNX holds neither torch nor
    transformers, whether it exported the files itself or found them (#27)."""
    cache = tmp_path if first_use else CACHE
    finished = subprocess.run(
        [sys.executable, "-c", SERVING_PROCESS, str(cache)],
        capture_output=True, text=True, check=False, timeout=900,
    )
    assert finished.returncode == 0, finished.stderr
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    assert report == {"heavy": [], "vectors": 2, "dimensions": 384}
    if first_use:
        (folder,) = tmp_path.iterdir()
        names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        assert names == ["model-int8.onnx", "model.onnx"]


def test_failed_export_reports_the_child_error(tmp_path: Path) -> None:
    """A child that cannot export fails the load with its own message, and leaves no file."""
    broken = tmp_path / "model"
    broken.mkdir()
    for name in ("config.json", "model.safetensors"):
        (broken / name).write_text("not a model")
    with pytest.raises(EmbeddingError, match="could not export the local model to ONNX"):
        onnx_model_file(broken, tmp_path / "cache", int8=True, model_name="m")
    (folder,) = (tmp_path / "cache").iterdir()
    assert [p.name for p in folder.iterdir() if not p.name.startswith(".")] == []
