"""What the family losses share: finding the family's module and stacking per-row labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import torch
from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder

from rerank_plugins.scoring.base import ScoringModule
from rerank_plugins.training.checks import check_batch_labels

ModuleT = TypeVar("ModuleT", bound=ScoringModule)


def family_module(model: STCrossEncoder, cls: type[ModuleT], loss: str) -> ModuleT:
    """The model's first module, checked to be ``cls``: a loss of one family cannot train another."""
    if not isinstance(model, STCrossEncoder):
        raise TypeError(f"{loss} expects a sentence-transformers CrossEncoder, got {type(model).__name__}.")
    first = model[0]
    if not isinstance(first, cls):
        family = getattr(first, "family", "sequence-classification")
        raise ValueError(f"{loss} trains the {cls.family!r} family; this model is {family!r} ({type(first).__name__}).")
    return first


def label_rows(labels: torch.Tensor | Sequence[torch.Tensor] | None, width: int, loss: str) -> torch.Tensor:
    """Per-row labels of ``width`` values as one ``(rows, width)`` float tensor."""
    if labels is None:
        raise ValueError(f"{loss} needs a label column (label, labels, score or scores) in the dataset.")
    rows = torch.stack([torch.as_tensor(row) for row in labels]) if not isinstance(labels, torch.Tensor) else labels
    rows = rows.float().reshape(len(rows), -1)
    if rows.shape[1] != width:
        raise ValueError(f"{loss} expects {width} label values per row, got shape {tuple(rows.shape)}.")
    check_batch_labels(rows, loss)
    return rows
