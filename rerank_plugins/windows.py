"""Long documents: split into overlapping token windows, score each, aggregate (MaxP by default).

Windows are cut in the document's TEXT (the tokenizer's character offsets, snapped to whole words), so each
window is an ordinary document for every family: no template, special token or truncation rule changes. A word
longer than a window (text without spaces: Chinese, Japanese, a long URL) is cut between two of its tokens
instead, so a window never grows to the whole document and the work stays linear in the document's length.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

Aggregate = Literal["max", "first", "mean"]


@dataclass(frozen=True)
class Window:
    """How to split long documents.

    Args:
        size: tokens of the document per window (the model's tokenizer counts them). Choose it so that
            the query, the template and ``size`` tokens fit the model's ``max_length``. A window's edges snap
            to whole words, which can add the rest of a word at either end; a word longer than ``size`` tokens
            is cut between tokens.
        stride: tokens between the starts of two windows; ``size // 2`` (half overlap) by default.
        aggregate: ``"max"`` (MaxP, the default), ``"first"`` (FirstP) or ``"mean"`` over the window scores.
    """

    size: int = 256
    stride: int | None = None
    aggregate: Aggregate = "max"

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"Window size must be positive, got {self.size}.")
        if self.stride is not None and not 1 <= self.stride <= self.size:
            raise ValueError(f"Window stride must be between 1 and size={self.size}, got {self.stride}.")
        if self.aggregate not in ("max", "first", "mean"):
            raise ValueError(f"Unknown aggregate {self.aggregate!r}: use 'max', 'first' or 'mean'.")

    @property
    def step(self) -> int:
        return self.stride or max(self.size // 2, 1)


def as_window(window: Window | dict[str, Any] | bool | None) -> Window | None:
    """Accept ``Window(...)``, a dict of its fields, ``True`` (defaults) or ``None``/``False`` (off)."""
    if window is None or window is False:
        return None
    if window is True:
        return Window()
    if isinstance(window, dict):
        return Window(**window)
    if isinstance(window, Window):
        return window
    raise TypeError(f"window must be a Window, a dict, a bool or None, got {type(window).__name__}.")


def split_document(tokenizer: Any, document: str, window: Window) -> list[str]:
    """The document's windows, as text; a document that fits in one window is returned whole.

    A window's edges snap outwards to whole words, unless that word is longer than the window itself.
    """
    spans = _token_spans(tokenizer, document)
    if len(spans) <= window.size:
        return [document]
    words = _Words(document, spans)
    pieces = []
    for start in range(0, len(spans), window.step):
        end = min(start + window.size, len(spans))
        begin, finish = spans[start][0], spans[end - 1][1]
        if begin > 0 and not document[begin - 1].isspace() and (word := words.around(begin - 1, window.size)):
            begin = word[0]
        if finish < len(document) and not document[finish].isspace() and (word := words.around(finish, window.size)):
            finish = word[1]
        pieces.append(document[begin:finish])
        if end == len(spans):
            break
    return pieces


class _Words:
    """The whitespace-separated words of a text, and how many of its tokens each spans (found by bisection)."""

    def __init__(self, text: str, spans: list[tuple[int, int]]) -> None:
        self.words = [match.span() for match in re.finditer(r"\S+", text)]
        self.starts = [start for start, _ in self.words]
        self.token_starts = [start for start, _ in spans]
        self.token_ends = [end for _, end in spans]

    def around(self, position: int, limit: int) -> tuple[int, int] | None:
        """The span of the word holding character ``position``, or None if it has more than ``limit`` tokens."""
        start, end = self.words[bisect_right(self.starts, position) - 1]
        tokens = bisect_left(self.token_starts, end) - bisect_right(self.token_ends, start)
        return (start, end) if tokens <= limit else None


def first_tokens(tokenizer: Any, text: str, limit: int) -> str:
    """The text of the first ``limit`` tokens of ``text`` (all of it when it is that short)."""
    spans = _token_spans(tokenizer, text)
    return text if len(spans) <= limit else text[: spans[limit - 1][1]]


def _token_spans(tokenizer: Any, text: str) -> list[tuple[int, int]]:
    """Character span of every token; whitespace-separated words if the tokenizer gives no offsets."""
    try:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)[
            "offset_mapping"
        ]
        return [(int(a), int(b)) for a, b in offsets if b > a]
    except (NotImplementedError, TypeError, ValueError, KeyError):
        spans, position = [], 0
        for word in text.split():
            start = text.index(word, position)
            spans.append((start, start + len(word)))
            position = start + len(word)
        return spans


def aggregate(scores: torch.Tensor, owners: list[int], count: int, how: Aggregate) -> torch.Tensor:
    """One score per document from its windows' scores (``owners[i]`` = the document of window ``i``)."""
    import torch

    index = torch.tensor(owners, device=scores.device)
    if how == "max":
        out = torch.full((count,), float("-inf"), dtype=scores.dtype, device=scores.device)
        return out.scatter_reduce(0, index, scores, reduce="amax")
    if how == "mean":
        out = torch.zeros(count, dtype=scores.dtype, device=scores.device)
        return out.scatter_reduce(0, index, scores, reduce="mean", include_self=False)
    first = torch.empty(count, dtype=scores.dtype, device=scores.device)
    seen = set()
    for i, owner in enumerate(owners):
        if owner not in seen:
            first[owner] = scores[i]
            seen.add(owner)
    return first
