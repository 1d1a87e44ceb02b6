"""Every family on ONNX Runtime and OpenVINO: the same fp32 scores as PyTorch, saved beside the model, reloaded.

Tiny offline models of each family that runs the backends (every built-in family but ``logit-score``, see
test_backend_refusal.py) score real TREC DL19 passages (tests/data) through ``backend="onnx"`` and
``"openvino"``; the scores must equal the torch model's raw scores. Each (kind, backend) is exported once per
module and saved; the reload must find the saved file (an export at reload fails the test).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from support import DATA, KIND_FAMILY

from rerank_plugins import CrossEncoder
from rerank_plugins.backends import runtime
from rerank_plugins.testing import tiny_models

BACKENDS = ["onnx", "openvino"]
EXPORTED_KINDS = [kind for kind, (spec, _) in tiny_models().items() if set(BACKENDS) <= set(spec.backends)]
"""The tiny-model kinds whose family runs both backends."""
TOLERANCE = {"onnx": 1e-5, "openvino": 1e-4}
"""fp32 against torch: OpenVINO 2024.4 (the floor) computes monoT5's raw margin to 9.7e-5 with the fp32 hint,
within the 1e-4 the backends promise; 2026.4 and ONNX Runtime stay below 1e-5."""
SAVED_FILES = {"onnx": ["onnx/model.onnx"], "openvino": ["openvino/openvino_model.xml", "openvino/openvino_model.bin"]}


@pytest.fixture(scope="module")
def dl19_pairs() -> list[tuple[str, str]]:
    """Two real DL19 queries with six BM25 passages each (long passages are cut as each family cuts them)."""
    sample = json.loads((DATA / "dl19-sample.json").read_text(encoding="utf-8"))
    return [(record["query"], hit["content"]) for record in sample[:2] for hit in record["hits"][:6]]


def raw_scores(model: CrossEncoder, pairs: list[tuple[str, str]]) -> np.ndarray:
    return np.asarray(model.predict(pairs, activation_fn=torch.nn.Identity(), batch_size=4), dtype=np.float64)


@pytest.fixture(scope="module")
def exported(tiny_paths, tmp_path_factory) -> Callable[[str, str], tuple[CrossEncoder, Path]]:
    """(kind, backend) -> the model loaded with that backend (exported at load) and the folder it was saved to."""
    cache: dict[tuple[str, str], tuple[CrossEncoder, Path]] = {}
    root = tmp_path_factory.mktemp("exported")

    def get(kind: str, backend: str) -> tuple[CrossEncoder, Path]:
        if (kind, backend) not in cache:
            model = CrossEncoder(tiny_paths[kind], family=KIND_FAMILY[kind], backend=backend, device="cpu")
            saved = root / f"{kind}-{backend}"
            model.save_pretrained(str(saved))
            cache[kind, backend] = model, saved
        return cache[kind, backend]

    return get


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", EXPORTED_KINDS)
def test_scores_equal_torch(exported, load_tiny, dl19_pairs, kind, backend) -> None:
    model, _ = exported(kind, backend)
    assert model.backend == backend and model[0].runtime.backend == backend
    expected = raw_scores(load_tiny(kind), dl19_pairs)
    assert np.ptp(expected) > 1e-2  # the scores differ between pairs: a wrong graph could not pass
    np.testing.assert_allclose(raw_scores(model, dl19_pairs), expected, rtol=0, atol=TOLERANCE[backend])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", EXPORTED_KINDS)
def test_saved_beside_the_model_and_reloaded_without_exporting(
    exported, load_tiny, dl19_pairs, monkeypatch, kind, backend
) -> None:
    model, saved = exported(kind, backend)
    for relative in SAVED_FILES[backend]:
        assert (saved / relative).is_file()

    def no_export(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the saved model was exported again")

    monkeypatch.setattr(runtime, "export_backend", no_export)
    reloaded = CrossEncoder(str(saved), backend=backend, device="cpu")
    assert reloaded.family == model.family and reloaded[0].runtime.exported.root == saved
    np.testing.assert_allclose(
        raw_scores(reloaded, dl19_pairs), raw_scores(load_tiny(kind), dl19_pairs), rtol=0, atol=TOLERANCE[backend]
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_threads_share_one_runtime(exported, dl19_pairs, backend) -> None:
    """Scoring holds no per-call state in the runtime: concurrent calls give the sequential scores."""
    from concurrent.futures import ThreadPoolExecutor

    model, _ = exported("monot5", backend)
    expected = raw_scores(model, dl19_pairs)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: raw_scores(model, dl19_pairs), range(8)))
    for result in results:
        np.testing.assert_allclose(result, expected, rtol=0, atol=1e-6)
