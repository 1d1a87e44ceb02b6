"""Input checks shared by ``predict``, ``rank`` and the adapters: a clear error naming the offending item."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np


class InputError(ValueError):
    """A ``ValueError`` about one part of a request (``field``: ``"query"``, ``"documents"``...), so that a frontend
    can say which part is at fault (the server: a 4xx naming the field)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def validate_pairs(inputs: Sequence[Any]) -> None:
    """Reject what would otherwise be scored silently wrong, naming the offending pair."""
    for index, pair in enumerate(inputs):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(
                f"Input {index} is not a (query, document) pair: {pair!r:.100}. Pass pairs as 2-tuples or 2-lists."
            )
        for role, text in zip(("query", "document"), pair, strict=True):
            if not isinstance(text, str):
                raise TypeError(f"Input {index}: the {role} must be a str, got {type(text).__name__} ({text!r:.60}).")


def check_documents(documents: Any) -> list[str]:
    """``rank``'s documents as a list, refusing what only looks like a sequence of documents (a str, a dict)."""
    if isinstance(documents, (str, bytes)):
        raise TypeError("documents must be a list of str, got one str: wrap it in a list ([document]).")
    if isinstance(documents, (Mapping, set, frozenset)) or not isinstance(documents, Iterable):
        raise TypeError(f"documents must be a list of str, got {type(documents).__name__}.")
    documents = list(documents)
    for index, document in enumerate(documents):
        if not isinstance(document, str):
            raise TypeError(
                f"Input {index}: the document must be a str, got {type(document).__name__} ({document!r:.60})."
            )
    return documents


def check_positive(name: str, value: Any, *, optional: bool = False) -> None:
    """A ``TypeError``/``ValueError`` naming the argument unless it is a positive int (or None if optional)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive int{' or None' if optional else ''}, got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if optional else ''}, got {value}.")
