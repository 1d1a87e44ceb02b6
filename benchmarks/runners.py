"""One runner per (family, side): load a model the way its users do, then score query groups one query at a time.

Sides: ``ours`` (``rerank_plugins.CrossEncoder.predict``, one call per query, as the LangChain / LlamaIndex adapters
call it), ``alternative`` (what a user would otherwise run, see ``ALTERNATIVES``), and ``ours-int8``
(``rerank_plugins.quantization.quantize_int8``). Every side returns the score its library returns by default:
sigmoid probabilities for monoT5, ListConRanker and the one-logit classifier, mean log-probabilities for query
likelihood.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable

import torch

from benchmarks.data import Group

Runner = Callable[[list[Group]], list[list[float]]]
"""Scores query groups; a runner may carry a ``mode`` attribute naming the precision it really runs in."""

ALTERNATIVES: dict[str, str] = {
    "sequence-classification": "sentence_transformers.CrossEncoder(path).predict",
    "monot5": "inranker.T5Ranker(path).get_scores",
    "query-likelihood": "RankingGPT card loop (batch 1, full-vocabulary logits)",
    "listconranker": "plain per-query ListConRanker (one BERT batch per list)",
    "qwen3-reranker": "Qwen3-Reranker card code (batch 32, left padding, full-vocabulary logits)",
}
DEFAULT_BATCH_SIZE = 32
"""sentence-transformers' and inranker's default batch size."""
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def make_runner(
    family: str, side: str, path: str, device: str, dtype: str, batch_size: int | None, max_length: int = 512
) -> Runner:
    """Load the model of ``side`` for ``family`` and return a function that scores groups.

    ``max_length`` (tokens per input; per text for ListConRanker) is given to every side that has the setting.
    ``batch_size=None``: ours calls ``predict`` without one (its own default), the alternatives use 32.
    """
    ours_batch = {} if batch_size is None else {"batch_size": batch_size}
    batch_size = batch_size or DEFAULT_BATCH_SIZE
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    torch_dtype = DTYPES[dtype]
    if side.startswith("bare-"):
        from benchmarks.backends import bare_runtime

        return bare_runtime(side.removeprefix("bare-"), path, max_length, batch_size)
    if side == "st-openvino":
        from benchmarks.backends import st_openvino

        return st_openvino(path, max_length, batch_size)
    if side in ("ours", "ours-int8") or side.startswith(("ours-onnx", "ours-openvino")):
        from rerank_plugins import CrossEncoder

        family_arg = None if family == "sequence-classification" else family  # a local BLOOM needs family=
        if side.startswith(("ours-onnx", "ours-openvino")):
            from benchmarks.backends import backend_kwargs

            kwargs = backend_kwargs(side)
        else:
            kwargs = {"model_kwargs": {"dtype": torch_dtype}}
        model = CrossEncoder(path, family=family_arg, device=device, max_length=max_length, **kwargs)
        if side == "ours-int8":
            from rerank_plugins.quantization import quantize_int8

            quantize_int8(model)

        def ours(groups: list[Group]) -> list[list[float]]:
            return [
                model.predict([(q, d) for d in docs], show_progress_bar=False, **ours_batch).tolist()
                for q, docs in groups
            ]

        return ours
    if side != "alternative":
        raise ValueError(f"unknown side {side!r}")
    if family == "sequence-classification":
        from sentence_transformers import CrossEncoder as PlainCrossEncoder

        plain = PlainCrossEncoder(path, device=device, max_length=max_length, model_kwargs={"dtype": torch_dtype})

        def sentence_transformers_predict(groups: list[Group]) -> list[list[float]]:
            return [
                plain.predict([(q, d) for d in docs], batch_size=batch_size, show_progress_bar=False).tolist()
                for q, docs in groups
            ]

        return sentence_transformers_predict
    if family == "monot5":
        return _inranker(path, device, dtype, batch_size, max_length)
    if family == "query-likelihood":
        from benchmarks.alternatives import RankingGPTCardLoop

        card = RankingGPTCardLoop(path, device=device, dtype=torch_dtype, max_length=max_length)
        return lambda groups: [card.get_scores(q, docs) for q, docs in groups]
    if family == "qwen3-reranker":
        from benchmarks.alternatives import Qwen3RerankerCard

        qwen3 = Qwen3RerankerCard(path, device=device, dtype=torch_dtype, max_length=max_length, batch_size=batch_size)
        return lambda groups: [qwen3.get_scores(q, docs) for q, docs in groups]
    if family == "listconranker":
        from benchmarks.alternatives import PlainListConRanker

        plain_list = PlainListConRanker(path, device=device, dtype=torch_dtype, max_length=max_length)
        return lambda groups: [plain_list.get_scores(q, docs) for q, docs in groups]
    raise ValueError(f"unknown family {family!r}")


def _inranker(path: str, device: str, dtype: str, batch_size: int, max_length: int) -> Runner:
    """``inranker.T5Ranker`` in its best working mode: ``bf16=True`` where it runs, else its ``fp16=True``."""
    sys.path.append(os.path.join(sys.prefix, "inranker"))  # where ./dev installs it, outside site-packages
    from inranker import T5Ranker

    where = "cuda" if device.startswith("cuda") else "cpu"
    modes = {"bf16": ["bf16", "fp16"], "fp16": ["fp16"]}.get(dtype, ["fp32"])
    ranker = None
    for mode in modes:
        precision = {mode: True} if mode != "fp32" else {}
        candidate = T5Ranker(path, batch_size=batch_size, device=where, **precision)
        try:  # a probe: inranker's bf16 path fails on some set-ups
            probe = candidate.get_scores("query", ["a passage", "another passage"], max_length=max_length)
        except (RuntimeError, TypeError) as error:
            warnings.warn(f"inranker {mode} failed ({error}); trying the next mode", stacklevel=2)
            continue
        if all(score == score for score in probe):  # no NaN
            ranker = candidate
            break
    if ranker is None:
        raise RuntimeError(f"inranker.T5Ranker runs in none of {modes} here")

    def inranker(groups: list[Group]) -> list[list[float]]:
        return [ranker.get_scores(q, docs, max_length=max_length) for q, docs in groups]

    inranker.mode = mode  # type: ignore[attr-defined]
    return inranker
