"""Scores on a CUDA GPU against the CPU fp32 reference, for every family (skipped without CUDA).

fp32 on the GPU must give the CPU's scores to ``1e-5``. bf16 keeps 8 bits of mantissa, so its scores can only
agree within :data:`BF16_TOLERANCE` (see ``docs/performance.md``): an absolute ``2e-2`` on probabilities, and
``2e-2 x max(1, |score|)`` on query likelihood's mean log-probabilities, which are not bounded. The bf16 models are
drawn with fan-in weights (``build_model(..., std=None)``), whose activations stay of order one like a trained
model's; the tiny test models' wide weights (std 0.3) would overflow bf16's precision by design.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support import KIND_FAMILY

from rerank_plugins import CrossEncoder
from rerank_plugins.testing import build_model

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device: the GPU score checks need one (torch.cuda.is_available())"
)

FP32_TOLERANCE = 1e-5
BF16_TOLERANCE = 2e-2
"""Absolute, on the scores ``predict`` returns (relative to ``max(1, |score|)`` for query likelihood)."""


def scores(path: str, kind: str, device: str, dtype: torch.dtype, pairs: list[tuple[str, str]]) -> np.ndarray:
    model = CrossEncoder(path, family=KIND_FAMILY[kind], device=device, model_kwargs={"dtype": dtype})
    return np.asarray(model.predict(pairs, batch_size=8), dtype=np.float64)


def tolerance(kind: str, reference: np.ndarray, absolute: float) -> np.ndarray:
    if kind in ("query-likelihood", "llama"):  # mean log-probabilities
        return absolute * np.maximum(1.0, np.abs(reference))
    return np.full_like(reference, absolute)


@pytest.mark.parametrize("kind", sorted(KIND_FAMILY))
def test_cuda_fp32_equals_cpu_fp32(tiny_paths, pairs, kind):
    cpu = scores(tiny_paths[kind], kind, "cpu", torch.float32, pairs)
    cuda = scores(tiny_paths[kind], kind, "cuda", torch.float32, pairs)
    np.testing.assert_allclose(cuda, cpu, atol=FP32_TOLERANCE, rtol=0)


@pytest.fixture(scope="module")
def fan_in_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """kind -> a small model with fan-in weights (activations of order one, as in a trained model)."""
    root: Path = tmp_path_factory.mktemp("fan-in-models")
    sizes = {"monot5": {"num_layers": 4, "num_decoder_layers": 4}}
    return {kind: build_model(kind, root / kind, sizes=sizes.get(kind), std=None, seed=3) for kind in KIND_FAMILY}


@pytest.mark.parametrize("kind", sorted(KIND_FAMILY))
def test_cuda_bf16_agrees_with_cpu_fp32(fan_in_paths, pairs, kind):
    cpu = scores(fan_in_paths[kind], kind, "cpu", torch.float32, pairs)
    cuda = scores(fan_in_paths[kind], kind, "cuda", torch.bfloat16, pairs)
    assert np.all(np.isfinite(cuda))
    assert np.all(np.abs(cuda - cpu) <= tolerance(kind, cpu, BF16_TOLERANCE)), np.abs(cuda - cpu).max()
