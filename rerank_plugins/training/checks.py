"""Training data checked before the first step: bad rows are an error naming the row, never a silent 0.0 loss.

sentence-transformers' trainer reads a dataset's columns by position and its labels from a column named
``label``, ``labels``, ``score`` or ``scores``; a NaN label, a label column under another name or a list
given as a string would otherwise train on nonsense (NaN weights while the logged loss reads 0.0, or every
character of a string taken as a document). :func:`check_dataset` looks at the whole dataset at once (with
Arrow, not row by row); ``rerank_plugins.CrossEncoder`` runs it by itself when a ``CrossEncoderTrainer`` is
built around it, for every loss, sentence-transformers' own included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset, DatasetDict
from sentence_transformers.cross_encoder.losses import ADRMSELoss, LambdaLoss, ListNetLoss, PListMLELoss
from torch import nn

LABEL_COLUMNS = ("label", "labels", "score", "scores")
"""The columns sentence-transformers' ``CrossEncoderDataCollator`` reads as labels, the first one present."""

RESERVED_COLUMNS = ("dataset_name",)  # added by the trainer for multi-dataset training, never a text

LIST_LOSSES = (ADRMSELoss, LambdaLoss, ListNetLoss, PListMLELoss)
"""sentence-transformers' list losses: a query, a list of documents and one label per document a row."""


def check_dataset(
    dataset: Dataset | DatasetDict, loss: nn.Module | Mapping[str, nn.Module], name: str = "train"
) -> None:
    """Raise a ``ValueError`` naming the column and row of what ``loss`` cannot train on in ``dataset``.

    Checked: the dataset has rows; its labels (the first of :data:`LABEL_COLUMNS`) are finite numbers; every other
    column holds texts (a column of numbers under another name is a label the trainer would not see); a loss
    that needs labels has them and :class:`~rerank_plugins.training.QueryLikelihoodLoss`, which has no use for
    them, gets none; list losses get a list of documents per row, not a string. On a listwise model (ListConRanker)
    a list loss must score each row's list whole (``mini_batch_size=-1``) and no two rows may share a query
    text: the model scores every pair of one query text in a forward pass as one list.
    """
    if isinstance(dataset, DatasetDict):
        for split, part in dataset.items():
            check_rows(part, loss[split] if isinstance(loss, Mapping) else loss, f"{name} dataset {split!r}")
    elif isinstance(loss, Mapping):
        raise ValueError("A dict of losses trains a DatasetDict (one loss per dataset), not a single dataset.")
    else:
        check_rows(dataset, loss, f"{name} dataset")


def check_rows(dataset: Dataset, loss: nn.Module, where: str) -> None:
    """:func:`check_dataset` on one dataset; ``where`` names it in messages ("train dataset")."""
    loss_name = type(loss).__name__
    if len(dataset) == 0:
        raise ValueError(f"The {where} is empty: {loss_name} needs at least one row.")
    table = dataset.with_format("arrow")[:]  # the rows as selected or shuffled, not the underlying file
    label = next((column for column in LABEL_COLUMNS if column in table.column_names), None)
    texts = [column for column in table.column_names if column != label and column not in RESERVED_COLUMNS]
    for column in texts:
        check_text_column(table[column], column, where)
    if label is not None:
        check_label_column(table[label], label, where)
    wants_labels = getattr(loss, "needs_labels", None)
    if wants_labels is False and label is not None:
        raise ValueError(
            f"{loss_name} does not use labels, but the {where} has a {label!r} column: give it only (query, "
            "positive, *negatives) columns (drop the column, and the rows of irrelevant pairs)."
        )
    if wants_labels and label is None:
        raise ValueError(f"{loss_name} needs a label column ({', '.join(LABEL_COLUMNS)}); the {where} has none.")
    if isinstance(loss, LIST_LOSSES) or getattr(loss, "document_lists", False):
        check_lists(table, texts, where, loss)


def check_text_column(values: pa.ChunkedArray, column: str, where: str) -> None:
    """Texts, or lists of texts: a column of numbers here is a label under a name the trainer does not read."""
    kind = values.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        kind = kind.value_type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        raise ValueError(
            f"Column {column!r} of the {where} holds numbers, not texts: labels are read only from a column named "
            f"{', '.join(LABEL_COLUMNS)} (rename it, e.g. dataset.rename_column({column!r}, 'label'))."
        )
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise ValueError(f"Column {column!r} of the {where} holds {kind}, not texts.")
    first_null = first_true(pc.is_null(values))
    if first_null is not None:
        raise ValueError(f"Row {first_null} of the {where} has no {column!r} (None).")


def check_label_column(values: pa.ChunkedArray, column: str, where: str) -> None:
    """Finite numbers (one per row, or a list per row): a NaN label trains as nonsense without a word."""
    nested = pa.types.is_list(values.type) or pa.types.is_large_list(values.type)
    kind = values.type.value_type if nested else values.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        raise ValueError(f"The {where}'s {column!r} column holds {kind}, not numbers.")
    first_null = first_true(pc.is_null(values))
    if first_null is not None:
        raise ValueError(f"Row {first_null} of the {where} has no {column!r} (None).")
    numbers = pc.list_flatten(values) if nested else values
    bad = pc.or_(pc.invert(pc.is_finite(numbers.cast(pa.float64()))), pc.is_null(numbers))
    index = first_true(bad)
    if index is not None:
        row = int(pc.list_parent_indices(values)[index].as_py()) if nested else index
        raise ValueError(
            f"Row {row} of the {where} has the label {numbers[index].as_py()!r} in column {column!r}: "
            "labels must be finite numbers."
        )


def check_lists(table: pa.Table, texts: list[str], where: str, loss: nn.Module) -> None:
    """A list loss: (query, documents) with a list of documents per row, whole lists on a listwise model."""
    loss_name = type(loss).__name__
    if len(texts) != 2:
        raise ValueError(f"{loss_name} expects (query, documents) columns; the {where} has {texts}.")
    query, documents = texts
    if not (pa.types.is_list(table[documents].type) or pa.types.is_large_list(table[documents].type)):
        raise ValueError(
            f"{loss_name} expects a list of documents per row, but column {documents!r} of the {where} holds "
            "strings (each would be read as a list of its characters): give ['a document', ...] per row."
        )
    model = getattr(loss, "model", None)
    if not getattr(model, "is_listwise", False):
        return
    batch = getattr(loss, "mini_batch_size", -1)
    if batch is None or batch > 0:
        raise ValueError(
            f"{loss_name}(mini_batch_size={batch}) scores a batch's pairs in chunks, which cuts a list apart; "
            f"a listwise model scores each list whole: pass {loss_name}(model, mini_batch_size=-1)."
        )
    seen: dict[str, int] = {}
    for row, text in enumerate(table[query].to_pylist()):
        if text in seen:
            raise ValueError(
                f"Rows {seen[text]} and {row} of the {where} share the query text {text!r}: a listwise model "
                "would score both lists as one when they meet in a batch; merge them into one row."
            )
        seen[text] = row


def first_true(mask: pa.ChunkedArray | pa.Array) -> int | None:
    """Index of the first true value of a boolean array, or None."""
    index = pc.index(mask, True).as_py()
    return None if index < 0 else int(index)


def check_batch_labels(labels: Any, loss: str) -> None:
    """A family loss's labels of one batch: finite numbers (the dataset check names the row; this is the guard)."""
    rows = labels if isinstance(labels, torch.Tensor) else [torch.as_tensor(row) for row in labels]
    for index, row in enumerate(rows):
        if not torch.isfinite(torch.as_tensor(row, dtype=torch.float64)).all():
            raise ValueError(f"{loss}: row {index} of the batch has a label that is not a finite number: {row}.")
