"""Fine-tuning every family with sentence-transformers' ``CrossEncoderTrainer``: the authors' own losses.

sentence-transformers' losses (``BinaryCrossEntropyLoss``, ``MSELoss``, ``MarginMSELoss``, ``ListNetLoss``,
``LambdaLoss``, ...) train every family of ``rerank_plugins.CrossEncoder`` through its raw score. The losses here
add what those cannot express: the objectives the published models were trained with.

- :class:`InRankerDistillationLoss`: InRanker's distillation (MSE on the ``[false, true]`` logits), exactly.
- :class:`MonoT5CrossEntropyLoss`: castorini's monoT5 fine-tuning (cross-entropy on ``▁true``/``▁false``).
- :class:`QueryLikelihoodLoss`: RankingGPT's query likelihood with listed and/or in-batch negatives.
- :class:`CircleLoss`: ListConRanker's Circle loss over a whole list.
- :class:`AnswerTokenCrossEntropyLoss`: Qwen3-Reranker's SFT objective (full-vocabulary CE on ``yes``/``no``).
- :class:`GroupedSoftmaxLoss`: FlagEmbedding's reranker objective (bge-reranker-v2-gemma): a softmax over each
  query's positive and negatives.

:func:`check_dataset` checks a dataset against a loss (NaN labels, a label column under another name, strings
where lists belong, ...); ``rerank_plugins.CrossEncoder`` runs it by itself when a trainer is built around it.

Training needs ``accelerate`` and ``datasets``: ``pip install "rerank-plugins[train]"``.
"""

from __future__ import annotations

import importlib.util

_MISSING = [name for name in ("accelerate", "datasets") if importlib.util.find_spec(name) is None]
if _MISSING:
    raise ImportError(
        f"Training needs {' and '.join(_MISSING)}, which {'is' if len(_MISSING) == 1 else 'are'} not installed: "
        'pip install "rerank-plugins[train]"'
    )

from rerank_plugins.training.causal_lm import AnswerTokenCrossEntropyLoss, GroupedSoftmaxLoss  # noqa: E402
from rerank_plugins.training.checks import check_dataset  # noqa: E402
from rerank_plugins.training.data import load_distillation_file  # noqa: E402
from rerank_plugins.training.listconranker import CircleLoss  # noqa: E402
from rerank_plugins.training.monot5 import (  # noqa: E402
    InRankerDistillationLoss,
    MonoT5CrossEntropyLoss,
    inranker_features,
)
from rerank_plugins.training.query_likelihood import QueryLikelihoodLoss  # noqa: E402

__all__ = [
    "AnswerTokenCrossEntropyLoss",
    "CircleLoss",
    "GroupedSoftmaxLoss",
    "InRankerDistillationLoss",
    "MonoT5CrossEntropyLoss",
    "QueryLikelihoodLoss",
    "check_dataset",
    "inranker_features",
    "load_distillation_file",
]
