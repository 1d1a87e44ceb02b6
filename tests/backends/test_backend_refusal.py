"""A backend a family cannot run is an error when the model loads: never PyTorch running under another name.

Before this check, ``CrossEncoder(monoT5, backend="onnx")`` loaded and scored with PyTorch while ``model.backend``
said ``"onnx"``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from transformers import AutoModelForCausalLM

from rerank_plugins import CrossEncoder
from rerank_plugins.families import FamilySpec, register_family, unregister_family
from rerank_plugins.scoring.base import ScoringModule


class TorchOnlyScore(ScoringModule):
    """A family of a user's own that declares no backend but PyTorch (``FamilySpec.backends`` left out)."""

    family = "torch-only-test"
    auto_class = AutoModelForCausalLM
    config_keys: list[str] = []


@pytest.fixture
def torch_only() -> Iterator[str]:
    register_family(FamilySpec("torch-only-test", module=TorchOnlyScore))
    yield "torch-only-test"
    unregister_family("torch-only-test")


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_a_family_without_the_backend_is_refused_at_load(tiny_paths, torch_only, backend) -> None:
    with pytest.raises(ValueError, match=rf"torch-only-test family cannot run on backend='{backend}'"):
        CrossEncoder(tiny_paths["query-likelihood"], family=torch_only, backend=backend)


@pytest.mark.parametrize("backend", ["tensorrt", "ONNX", None])
def test_an_unknown_backend_is_refused(tiny_paths, backend) -> None:
    with pytest.raises(ValueError, match="Unknown backend"):
        CrossEncoder(tiny_paths["monot5"], backend=backend)


def test_a_family_must_declare_torch() -> None:
    with pytest.raises(ValueError, match="backends must include 'torch'"):
        FamilySpec("no-torch-test", module=TorchOnlyScore, backends=("onnx",))


TORCH_ONLY_BUILT_IN = {"logit-score"}


def test_every_built_in_family_runs_both_backends() -> None:
    """The built-in families export their score graph (tests/backends/test_backend_parity.py checks the scores),
    all but ``logit-score``, which runs on PyTorch only.

    ``logit-score`` is sentence-transformers' own ``Transformer`` + ``LogitScore`` for a causal LM no family
    recognises, kept so that the drop-in scores such a model exactly as sentence-transformers does: its
    tokenization (left padding, the chat template) and its forward are the library's, not a score graph of ours,
    and sentence-transformers' own ONNX/OpenVINO path for it is Optimum's full-vocabulary causal LM (Optimum is no
    dependency here). A published causal-LM reranker runs on the backends through its own family (``family=`` or
    ``preset=``); test_llm_backends.py checks that ``logit-score`` is refused at load.
    """
    from rerank_plugins.families import all_families
    from rerank_plugins.registry import BUILTIN_FAMILIES

    assert set(BUILTIN_FAMILIES) >= TORCH_ONLY_BUILT_IN
    for spec in all_families():
        if spec.name in TORCH_ONLY_BUILT_IN:
            assert spec.backends == ("torch",), spec.name
        elif spec.name in BUILTIN_FAMILIES:
            assert set(spec.backends) == {"torch", "onnx", "openvino"}, spec.name
