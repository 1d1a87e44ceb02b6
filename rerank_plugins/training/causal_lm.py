"""The LLM rerankers' training objectives: Qwen3-Reranker's answer-token SFT and FlagEmbedding's grouped softmax.

Both read the scoring module of an answer-token family (``scoring.answer_tokens``); scoring is unchanged, so a model
trained here ranks through ``predict``, ``rank``, the adapters and the CLI as before. sentence-transformers' own
losses (``BinaryCrossEntropyLoss`` on the raw score, ...) train these families too.
"""

from __future__ import annotations

from typing import Any

import torch
from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder
from sentence_transformers.util import batch_to_device
from torch import nn
from torch.nn import functional as F

from rerank_plugins.scoring.answer_tokens import AnswerTokenScore
from rerank_plugins.training._common import family_module, label_rows


class AnswerTokenCrossEntropyLoss(nn.Module):
    """Qwen3-Reranker's objective: cross-entropy over the whole vocabulary on the label's answer token.

    The Qwen3 Embedding report trains its rerankers with the SFT loss ``-log p(l | P(q, d))``, ``l`` being ``yes``
    for a relevant pair and ``no`` otherwise, at the last token of the model's prompt. Here ``p`` is the full
    softmax of the LM head at that token (the training signal is not the two-token margin the score reads). For
    mxbai-rerank-v2 the answer tokens are ``1``/``0``; bge-reranker-v2-gemma reads one token and is trained with
    :class:`GroupedSoftmaxLoss` instead.

    Dataset columns: ``query``, ``document``, ``label`` (1 = relevant, 0 = not; above 0.5 counts as relevant).
    """

    def __init__(self, model: STCrossEncoder) -> None:
        super().__init__()
        self.model = model
        self.module = family_module(model, AnswerTokenScore, type(self).__name__)
        if len(self.module.answer_ids) != 2:
            raise ValueError(
                f"{type(self).__name__} needs a family that reads a positive and a negative answer token; "
                f"{self.module.family!r} reads one. Use GroupedSoftmaxLoss or BinaryCrossEntropyLoss."
            )

    def forward(
        self, inputs: list[list[str]], labels: torch.Tensor, prompt: str | None = None, task: str | None = None
    ) -> torch.Tensor:
        if len(inputs) != 2:
            raise ValueError(f"{type(self).__name__} expects two text columns (query, document), got {len(inputs)}.")
        module = self.module
        features = batch_to_device(
            module.preprocess(list(zip(inputs[0], inputs[1], strict=True)), prompt), self.model.device
        )
        relevant = label_rows(labels, 1, type(self).__name__)[:, 0].to(self.model.device) > 0.5
        positive, negative = module.answer_ids
        targets = torch.where(relevant, positive, negative)
        last = module.last_hidden(features["input_ids"], features["attention_mask"])
        logits = module.model.get_output_embeddings()(last).float()  # (rows, vocab): one position per row
        cap = getattr(module.model.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return F.cross_entropy(logits, targets)


class GroupedSoftmaxLoss(nn.Module):
    """FlagEmbedding's reranker objective: a softmax over each query's group, the positive first, as the target.

    As ``AbsRerankerModel.forward`` / ``compute_loss`` (FlagEmbedding 1.4.2): the raw scores of ``[positive,
    negative_1, ..., negative_k]`` (for bge-reranker-v2-gemma the logit of ``Yes``) go through a cross-entropy
    whose target is the first; with teacher scores (a ``label`` column of ``k + 1`` values per row), FlagEmbedding
    adds ``-sum(softmax(teacher) * log_softmax(scores))``. Any pointwise family's raw score trains this way.

    Dataset columns: ``query``, ``positive``, ``negative_1`` ... ``negative_k`` (and optionally ``label``).
    """

    def __init__(self, model: STCrossEncoder) -> None:
        super().__init__()
        if not isinstance(model, STCrossEncoder):
            raise TypeError(f"{type(self).__name__} expects a sentence-transformers CrossEncoder.")
        self.model = model

    def forward(
        self, inputs: list[list[str]], labels: Any = None, prompt: str | None = None, task: str | None = None
    ) -> torch.Tensor:
        if len(inputs) < 3:
            raise ValueError(
                f"{type(self).__name__} expects a query column, a positive and at least one negative, got "
                f"{len(inputs)} column(s)."
            )
        queries, candidates = inputs[0], inputs[1:]
        pairs = [(query, column[i]) for column in candidates for i, query in enumerate(queries)]
        features = batch_to_device(self.model[0].preprocess(pairs, prompt), self.model.device)
        scores = self.model(features)["scores"].float().reshape(len(candidates), len(queries)).T  # (queries, group)
        target = torch.zeros(len(queries), dtype=torch.long, device=scores.device)
        loss = F.cross_entropy(scores, target)
        if labels is not None:
            teacher = label_rows(labels, len(candidates), type(self).__name__).to(scores.device)
            loss = loss - (F.softmax(teacher, dim=-1) * F.log_softmax(scores, dim=-1)).sum(dim=-1).mean()
        return loss
