"""A family's score graph, its export, and the runtime that runs it in place of PyTorch.

A family module that supports ``backend="onnx" | "openvino"`` mixes in
:class:`~rerank_plugins.backends.runtime.CompiledScoring` and returns its :class:`ScoreGraph` (``score_graph()``):
a torch module from the collated tensors to raw scores, holding only what the score needs (monoT5: the encoder and
one decoder step with the two answer rows; a classifier: the Hugging Face model). :func:`export_onnx` exports it
with ``torch.onnx.export``; a :class:`Runtime` (ONNX Runtime or OpenVINO) runs the exported file in place of the
torch graph, fed in length chunks (:func:`run_length_chunks`). Tokenization, batching and the request core do not
change.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rerank_plugins.backends.options import (
    BackendOptions,
    companion_files,
)

logger = logging.getLogger(__name__)

ONNX_OPSET = 17
EXAMPLE_PAIRS = [
    ("what is the capital of france", "Paris is the capital and largest city of France, on the Seine."),
    ("how do vaccines work", "Vaccines train the immune system."),
]
"""Rows of two lengths (one padded) that trace a graph; the exported graph takes any batch and length."""


@dataclass(frozen=True)
class ScoreGraph:
    """A family's score computation as a module of named tensors: what is exported and run by a backend.

    ``module(*[features[name] for name in inputs])`` returns the raw scores (one output, named ``output``);
    ``dynamic`` names the axes of each input that vary (batch, length), as ``torch.onnx.export`` takes them.
    """

    module: nn.Module
    inputs: tuple[str, ...]
    output: str = "scores"
    dynamic: Mapping[str, Mapping[int, str]] = field(default_factory=dict)


@dataclass
class ExportedFile:
    """An exported model: its main file relative to a root folder, plus its companion files there.

    ``keep`` holds the temporary folder of a model exported at load (the folder lives as long as the runtime).
    """

    root: Path
    relative: str
    keep: Any = None

    @property
    def path(self) -> Path:
        return self.root / self.relative

    def files(self, backend: str) -> list[str]:
        """The main file and the companions that exist, relative to ``root``."""
        return [self.relative] + [c for c in companion_files(backend, self.relative) if (self.root / c).is_file()]

    def copy_to(self, output_path: str | Path, backend: str) -> None:
        """Copy the files to the same relative places under ``output_path`` (``save`` beside the model)."""
        for relative in self.files(backend):
            source, target = self.root / relative, Path(output_path) / relative
            if source.resolve() == target.resolve():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)


class Runtime:
    """A backend session over one exported score graph: named CPU tensors in, the graph's output out."""

    backend: str = ""
    input_names: tuple[str, ...] = ()
    chunk_overhead: float = 16.0
    """The cost of one more call, in padded token slots, for ``padding.length_chunks``: a quarter of a PyTorch
    forward's (``CPU_CHUNK_OVERHEAD``), so a batch is cut into more, tighter chunks (docs/performance.md)."""

    def __init__(self, exported: ExportedFile, options: BackendOptions) -> None:
        self.exported, self.options = exported, options

    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def save(self, output_path: str | Path) -> None:
        """Write the exported files beside a saved model, at the path they were loaded from."""
        self.exported.copy_to(output_path, self.backend)

    def feeds(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """The graph's inputs as contiguous numpy arrays (int64 ids and masks; no copy for CPU tensors)."""
        return {name: inputs[name].detach().cpu().contiguous().numpy() for name in self.input_names}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.exported.relative!r})"


def export_onnx(graph: ScoreGraph, example: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """``torch.onnx.export`` of ``graph`` traced on ``example``, with dynamic batch and length axes, in fp32.

    The TorchScript exporter: it traces our small score graphs in seconds where the ``torch.export`` one takes
    ten times as long, and ONNX Runtime fuses its attention patterns.
    """
    module = graph.module
    states = {submodule: submodule.training for submodule in module.modules()}
    module.eval()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad(), warnings.catch_warnings(), exact_position_buckets(), eager_attention(module):
            warnings.simplefilter("ignore")  # tracer warnings on shape arithmetic, the exporter's deprecation note
            torch.onnx.export(
                module,
                tuple(example[name] for name in graph.inputs),
                str(path),
                input_names=list(graph.inputs),
                output_names=[graph.output],
                dynamic_axes={name: dict(axes) for name, axes in graph.dynamic.items()},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
    finally:
        for submodule, training in states.items():
            submodule.training = training
    gather_external_data(Path(path))


def gather_external_data(path: Path) -> None:
    """An exported graph over 2 GB with its weights in one ``<file>_data`` beside it (sentence-transformers' and
    Optimum's layout, which :func:`~rerank_plugins.backends.options.companion_files` saves and fetches).

    ``torch.onnx.export`` writes such a graph's weights one file per tensor, named after the tensor; a saved model
    would lose them (an LLM reranker of 0.6B parameters is 2.4 GB in fp32). Smaller graphs are left as they are.
    """
    import onnx
    from onnx.external_data_helper import uses_external_data

    header = onnx.load(str(path), load_external_data=False)
    written = {
        entry.value
        for tensor in header.graph.initializer
        if uses_external_data(tensor)
        for entry in tensor.external_data
        if entry.key == "location"
    }
    if not written:
        return
    model = onnx.load(str(path))  # the weights, read back from their files
    (path.parent / f"{path.name}_data").unlink(missing_ok=True)  # onnx appends to an existing data file
    onnx.save_model(
        model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=f"{path.name}_data"
    )
    for name in written - {f"{path.name}_data"}:
        (path.parent / name).unlink(missing_ok=True)


def run_length_chunks(runtime: Runtime, features: Mapping[str, Any], *, max_tokens: int | None = None) -> torch.Tensor:
    """The runtime's output for a padded batch of ``(rows, length)`` inputs, run in chunks of similar length.

    Each chunk is trimmed to its longest row (``scoring.padding.length_chunks``): no work on pad tokens, and a row's
    output does not depend on the other rows. ``max_tokens`` caps ``rows x width`` of a chunk (as the family's torch
    path caps its body's activations).
    """
    from rerank_plugins.scoring.padding import length_chunks, run_chunks

    mask = features["attention_mask"]
    chunks = length_chunks(mask, max_tokens=max_tokens, overhead=runtime.chunk_overhead)
    output = run_chunks(
        chunks, lambda rows, width: runtime({name: features[name][rows, :width] for name in runtime.input_names})
    )
    return output.to(mask.device)


@contextlib.contextmanager
def eager_attention(module: nn.Module) -> Iterator[None]:
    """While exporting, Hugging Face models that run ``sdpa`` attention run their ``eager`` one (the same maths).

    The exporter writes ``scaled_dot_product_attention`` with a boolean mask as a ``Where`` plus an ``IsNaN`` guard
    over every score (docs/performance.md measures what they cost); eager attention adds a float mask instead, which
    ONNX Runtime fuses with its matmuls. Gemma 2's attention logit soft-cap is not the same maths in both
    (transformers 5.0's ``sdpa`` leaves it out), so a model with one keeps the implementation it was loaded with.
    """
    from transformers import PreTrainedModel

    switched = [
        submodule
        for submodule in module.modules()
        if isinstance(submodule, PreTrainedModel)
        and getattr(submodule.config, "_attn_implementation", None) == "sdpa"
        and getattr(submodule.config, "attn_logit_softcapping", None) is None
    ]
    for model in switched:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        for model in switched:
            model.set_attn_implementation("sdpa")


@contextlib.contextmanager
def exact_position_buckets(limit: int = 4096) -> Iterator[None]:
    """While exporting, DeBERTa-v2/v3's relative positions in a form every runtime computes exactly.

    transformers computes each log bucket as ``ceil(log(|i - j| / mid) / log(...) * (mid - 1))``: OpenVINO's ``log``
    differs from PyTorch's in the last bit, which moves some distances across a ``ceil`` boundary into the next
    bucket (scores of long passages then differ by 1e-2). The exported graph looks each distance up in a table made
    by transformers' own function instead. transformers 5.0 also compiles two helpers with ``torch.jit.script``,
    which exports as an ``If`` of dynamic rank that OpenVINO's CPU plugin refuses; during the export they are plain
    Python (the same arithmetic: self-attention keys and queries always have the same length).
    """
    try:
        from transformers.models.deberta_v2 import modeling_deberta_v2 as deberta
    except ImportError:  # pragma: no cover - every supported transformers has DeBERTa-v2
        yield
        return
    original = {name: getattr(deberta, name) for name in ("make_log_bucket_position", "build_rpos", "scaled_size_sqrt")
                if hasattr(deberta, name)}  # fmt: skip
    buckets = original["make_log_bucket_position"]

    def looked_up(relative_pos: torch.Tensor, bucket_size: int, max_position: int) -> torch.Tensor:
        distances = torch.arange(-limit, limit + 1, dtype=torch.long)
        table = buckets(distances, bucket_size, max_position)
        return table[relative_pos.long() + limit]

    def relative_positions(query: torch.Tensor, key: torch.Tensor, relative_pos: torch.Tensor, buckets: int,
                           max_relative: int) -> torch.Tensor:  # fmt: skip
        if key.size(-2) != query.size(-2):
            return deberta.build_relative_position(key, key, bucket_size=buckets, max_position=max_relative)
        return relative_pos

    def scaled_sqrt(query: torch.Tensor, scale_factor: int) -> torch.Tensor:
        return torch.sqrt(torch.tensor(query.size(-1), dtype=torch.float) * scale_factor)

    deberta.make_log_bucket_position = looked_up
    if isinstance(original.get("build_rpos"), torch.jit.ScriptFunction):
        setattr(deberta, "build_rpos", relative_positions)  # noqa: B010 (transformers types it loosely)
    if isinstance(original.get("scaled_size_sqrt"), torch.jit.ScriptFunction):
        setattr(deberta, "scaled_size_sqrt", scaled_sqrt)  # noqa: B010
    try:
        yield
    finally:
        for name, value in original.items():
            setattr(deberta, name, value)
