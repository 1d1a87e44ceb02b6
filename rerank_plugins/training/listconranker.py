"""ListConRanker's listwise training: Circle loss over a whole list of passages, scored together."""

from __future__ import annotations

from typing import Any

import torch
from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder
from sentence_transformers.util import batch_to_device
from torch import nn
from torch.nn import functional as F

from rerank_plugins.scoring.listconranker import ListConRankerScore
from rerank_plugins.training._common import family_module
from rerank_plugins.training.checks import check_batch_labels


def circle_loss(scores: torch.Tensor, relevant: torch.Tensor, scale: float, margin: float) -> torch.Tensor:
    """Circle loss (Sun et al., CVPR 2020) of one list: similarities ``scores`` in [0, 1], ``relevant`` a bool mask.

    ``log(1 + sum_n exp(scale * a_n * (s_n - m)) * sum_p exp(-scale * a_p * (s_p - (1 - m))))`` with the
    self-paced weights ``a_p = [1 + m - s_p]+`` and ``a_n = [s_n + m]+`` held constant (no gradient through them),
    as the paper's reference implementation. A list without a positive or without a negative gives 0.
    """
    positives, negatives = scores[relevant], scores[~relevant]
    if positives.numel() == 0 or negatives.numel() == 0:
        return scores.sum() * 0.0  # keeps the graph (and the device) for lists with nothing to contrast
    weight_p = (1 + margin - positives).clamp(min=0).detach()
    weight_n = (negatives + margin).clamp(min=0).detach()
    logits_p = -scale * weight_p * (positives - (1 - margin))
    logits_n = scale * weight_n * (negatives - margin)
    return F.softplus(torch.logsumexp(logits_n, dim=0) + torch.logsumexp(logits_p, dim=0))


class CircleLoss(nn.Module):
    """ListConRanker's training objective: Circle loss on each query's whole list, scored by the ListTransformer.

    Each list of the batch is scored together in one forward pass (a passage's score depends on the rest of its
    list), the similarities are the model's scores after ``sigmoid`` (the authors' ``P(relevant)``), and the loss
    is the mean of :func:`circle_loss` over the lists. The ListConRanker paper trains with Circle loss; its
    authors' released code has no training branch, so ``scale`` and ``margin`` (Circle loss's defaults for
    pair similarities, 32 and 0.25 here) and the use of the sigmoid scores are unconfirmed.

    Dataset columns: ``query``, ``documents`` (a list per query), ``labels`` (a list of 1/0, or graded: above
    0 counts as positive), as sentence-transformers' ``ListNetLoss``.
    """

    needs_labels = True  # read by training.checks.check_dataset
    document_lists = True

    def __init__(self, model: STCrossEncoder, scale: float = 32.0, margin: float = 0.25) -> None:
        super().__init__()
        self.model = model
        self.module = family_module(model, ListConRankerScore, type(self).__name__)
        self.scale, self.margin = float(scale), float(margin)

    def forward(
        self, inputs: list[Any], labels: list[torch.Tensor], prompt: str | None = None, task: str | None = None
    ) -> torch.Tensor:
        if len(inputs) != 2:
            raise ValueError(f"{type(self).__name__} expects (query, documents) columns, got {len(inputs)}.")
        queries, lists = inputs
        if isinstance(labels, torch.Tensor) or len(labels) != len(queries):
            raise ValueError(f"{type(self).__name__} expects one list of labels per query.")
        for index, documents in enumerate(lists):
            if isinstance(documents, str) or not isinstance(documents, (list, tuple)):
                raise TypeError(
                    f"{type(self).__name__} expects a list of documents per query; row {index} has "
                    f"{type(documents).__name__} {documents!r:.60}."
                )
        check_batch_labels(labels, type(self).__name__)
        sizes = [len(documents) for documents in lists]
        for index, (size, row) in enumerate(zip(sizes, labels, strict=True)):
            if len(row) != size:
                raise ValueError(f"List {index} has {size} documents but {len(row)} labels.")
        if len(set(queries)) != len(queries):
            raise ValueError("Two lists of one batch share a query text: ListConRanker would score them as one list.")
        pairs = [(query, document) for query, documents in zip(queries, lists, strict=True) for document in documents]
        features = batch_to_device(self.model.preprocess(pairs), self.model.device)
        scores = torch.sigmoid(self.model(features)["scores"].reshape(-1).float())
        losses = [
            circle_loss(part, torch.as_tensor(row, device=scores.device) > 0, self.scale, self.margin)
            for part, row in zip(scores.split(sizes), labels, strict=True)
        ]
        return torch.stack(losses).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "margin": self.margin}
