"""Parity with the authors' own packages: ``mxbai-rerank`` 0.1.6 and FlagEmbedding 1.4.2, run as their users run them.

Both pin pre-5 transformers, so ``./dev`` installs them with ``--no-deps`` into ``<venv>/llm-rerankers``, outside
site-packages (as inranker). What transformers 5 removed is shimmed here, in the test only:

- FlagEmbedding's ``__init__`` imports its layerwise model code, which imports
  ``transformers.modeling_attn_mask_utils`` (gone in 5.24): a stand-in module lets the import finish; the layerwise
  code is never run.
- ``MxbaiRerankV2.prepare_inputs`` calls ``tokenizer.prepare_for_model`` (gone in transformers 5): it is given
  FlagEmbedding's own re-implementation of it (``FlagEmbedding.utils.tokenizer_compat.prepare_for_model_compat``),
  so no code of ours stands in for the authors'.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import DOCUMENTS, QUERIES

from rerank_plugins import CrossEncoder

LONG_DOCUMENT = " ".join(["Paris is the capital and largest city of France, known for its museums."] * 30)
LONG_QUERY = " ".join(["what is the capital and the largest city of france"] * 12)
PAIRS = [(q, d) for q in QUERIES for d in DOCUMENTS] + [(QUERIES[0], LONG_DOCUMENT), (LONG_QUERY, DOCUMENTS[0])]


def import_authors(name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The authors' package from ``<venv>/llm-rerankers`` (skipped where it is not installed, unless ``./dev``
    requires it with ``RERANK_PLUGINS_REQUIRE_LLM_RERANKERS=1``)."""
    where = str(Path(sys.prefix) / "llm-rerankers")
    if Path(where).is_dir():
        monkeypatch.syspath_prepend(where)
    try:
        importlib.import_module("transformers.modeling_attn_mask_utils")
    except ImportError:  # transformers >= 5.24: a stand-in for the names FlagEmbedding's layerwise code imports
        stand_in = types.ModuleType("transformers.modeling_attn_mask_utils")

        def missing(attribute: str) -> Any:
            if attribute.startswith("__"):
                raise AttributeError(attribute)
            return type(attribute, (), {})

        stand_in.__getattr__ = missing  # type: ignore[method-assign]
        monkeypatch.setitem(sys.modules, "transformers.modeling_attn_mask_utils", stand_in)
    if os.environ.get("RERANK_PLUGINS_REQUIRE_LLM_RERANKERS") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name)


@pytest.mark.parametrize("max_length", [None, 40])
@pytest.mark.parametrize("prompt", [None, "Is the passage about the question?"])
def test_bge_gemma_equals_flag_llm_reranker(tiny_paths, monkeypatch, max_length, prompt):
    flag_embedding = import_authors("FlagEmbedding", monkeypatch)
    path = tiny_paths["bge-llm-reranker"]
    ranker = flag_embedding.FlagLLMReranker(path, use_fp16=False, devices="cpu", batch_size=8)
    lengths = {} if max_length is None else {"max_length": max_length}
    expected = ranker.compute_score([list(pair) for pair in PAIRS], prompt=prompt, **lengths)
    model = CrossEncoder(path, preset="BAAI/bge-reranker-v2-gemma", device="cpu", **lengths)
    np.testing.assert_allclose(model.predict(PAIRS, prompt=prompt), expected, atol=1e-5, rtol=0)
    normalized = ranker.compute_score([list(pair) for pair in PAIRS], prompt=prompt, normalize=True, **lengths)
    sigmoid = CrossEncoder(path, family="bge-llm-reranker", family_options={"normalize": True}, **lengths)
    np.testing.assert_allclose(sigmoid.predict(PAIRS, prompt=prompt), normalized, atol=1e-5, rtol=0)


@pytest.mark.parametrize("max_length", [None, 60])
@pytest.mark.parametrize("instruction", [None, "Find the passage that answers the question"])
def test_mxbai_v2_equals_the_mxbai_rerank_package(tiny_paths, monkeypatch, max_length, instruction):
    flag_embedding = import_authors("FlagEmbedding", monkeypatch)
    mxbai_rerank = import_authors("mxbai_rerank", monkeypatch)
    compat = importlib.import_module("FlagEmbedding.utils.tokenizer_compat")
    assert flag_embedding
    path = tiny_paths["mxbai-rerank-v2"]
    lengths = {} if max_length is None else {"max_length": max_length}
    ranker = mxbai_rerank.MxbaiRerankV2(path, device="cpu", **lengths)
    tokenizer = ranker.tokenizer
    if not hasattr(type(tokenizer), "prepare_for_model"):  # removed in transformers 5
        view = types.SimpleNamespace(truncation_side=tokenizer.truncation_side, model_input_names=["input_ids"])
        tokenizer.prepare_for_model = lambda *args, **kwargs: compat.prepare_for_model_compat(view, *args, **kwargs)
    queries, documents = [q for q, _ in PAIRS], [d for _, d in PAIRS]
    expected = ranker.predict(queries, documents, instruction=instruction).numpy()
    model = CrossEncoder(path, preset="mixedbread-ai/mxbai-rerank-large-v2", device="cpu", **lengths)
    # The package pads on the left to a multiple of 8 and lets the model count positions from the first pad: the
    # real tokens' RoPE angles shift with the padding, which moves the long rows' margins by up to 1.5e-5 on these
    # tiny weights (also for one pair alone); unpadded, the authors' computation (tests/reference.py) agrees with
    # ours to 1e-5 (test_llm_scores.py).
    np.testing.assert_allclose(model.predict(PAIRS, prompt=instruction), expected, atol=5e-5, rtol=0)
    normalized = ranker.predict(queries, documents, instruction=instruction, normalize=True).numpy()
    options = {"normalize": True, "estimated_max": ranker.estimated_max}
    same = CrossEncoder(path, family="mxbai-rerank-v2", family_options=options, device="cpu", **lengths)
    np.testing.assert_allclose(same.predict(PAIRS, prompt=instruction), normalized, atol=1e-5, rtol=0)
