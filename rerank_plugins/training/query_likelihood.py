"""Query likelihood (RankingGPT) as a training objective: rank by log p(query | document), with negatives."""

from __future__ import annotations

from typing import Any

import torch
from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder
from sentence_transformers.util import batch_to_device
from torch import nn
from torch.nn import functional as F

from rerank_plugins.scoring.query_likelihood import QueryLikelihoodScore
from rerank_plugins.training._common import family_module


class QueryLikelihoodLoss(nn.Module):
    """RankingGPT's supervised fine-tuning objective on the model's score ``s(q, d)`` = mean log p(q tokens | d).

    ``loss = CE(exp(s(q, d_j)) / temperature over the candidates, the positive) + generation_weight * -s(q, d+)``

    The candidates of a query are its positive, its listed negatives (dataset columns after the positive) and,
    with ``in_batch_negatives=True``, the positives of the other queries of the batch. As the authors'
    ``sft.py``: the ranking term is a softmax over ``exp(mean log-prob) / temperature`` (their default
    temperature 1.0) with the positive first; the generation term keeps the model a query generator. Not
    reproduced: their generation term also covers the document's tokens, and their KL term to a frozen copy of
    the initial model (a second model in memory); here the generation term is the query likelihood itself.

    Dataset columns: ``query``, ``positive``, then zero or more ``negative_*`` columns; no label: a dataset with
    a label column is refused (a label-0 row would train as a positive).
    """

    needs_labels = False  # read by training.checks.check_dataset: a label column is refused

    def __init__(
        self,
        model: STCrossEncoder,
        temperature: float = 1.0,
        generation_weight: float = 1.0,
        in_batch_negatives: bool = False,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        self.model = model
        self.module = family_module(model, QueryLikelihoodScore, type(self).__name__)
        self.temperature, self.generation_weight = float(temperature), float(generation_weight)
        self.in_batch_negatives = in_batch_negatives

    def scores(self, queries: list[str], documents: list[str]) -> torch.Tensor:
        """``s(q_i, d_i)`` for each row, with gradients."""
        features = batch_to_device(self.model.preprocess(list(zip(queries, documents, strict=True))), self.model.device)
        return self.model(features)["scores"].reshape(-1).float()

    def forward(
        self, inputs: list[list[str]], labels: Any = None, prompt: str | None = None, task: str | None = None
    ) -> torch.Tensor:
        if labels is not None:
            raise ValueError(
                f"{type(self).__name__} does not use labels: every row's first document is its positive. Give it "
                "(query, positive, *negatives) columns without a label column (and without irrelevant pairs)."
            )
        if len(inputs) < 2:
            raise ValueError(f"{type(self).__name__} expects (query, positive, *negatives) columns, got {len(inputs)}.")
        queries, columns = list(inputs[0]), [list(column) for column in inputs[1:]]
        rows = len(queries)
        if not self.in_batch_negatives and len(columns) == 1:  # no negative at all: the likelihood objective alone
            return -self.generation_weight * self.scores(queries, columns[0]).mean()
        if self.in_batch_negatives:  # row i's candidates also hold every other row's positive
            columns += [[columns[0][(i + shift) % rows] for i in range(rows)] for shift in range(1, rows)]
        flat = self.scores(queries * len(columns), [document for column in columns for document in column])
        candidates = flat.reshape(len(columns), rows).T  # (rows, candidates), the positive first
        ranking = F.cross_entropy(
            candidates.exp() / self.temperature, torch.zeros(rows, dtype=torch.long, device=flat.device)
        )
        return ranking - self.generation_weight * candidates[:, 0].mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "generation_weight": self.generation_weight,
            "in_batch_negatives": self.in_batch_negatives,
        }
