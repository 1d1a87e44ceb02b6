"""What a frontend hands the request core, and what it gets back: one type each, for every frontend.

A :class:`Request` is one query and its whole candidate list, with the options that may change its scores
(:class:`RequestOptions`). :class:`RunOptions` say how to compute (batch sizes, device) and never change a score.
The answer to a request is one :class:`Ranking`: a score per document in input order, and the documents best
first (:class:`RankedDocument`). Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from rerank_plugins.checks import check_documents, check_positive
from rerank_plugins.windows import Window


class ListRow(NamedTuple):
    """A listwise family's row: one query and its whole candidate list, scored together."""

    query: str
    documents: Sequence[str]


@dataclass(frozen=True)
class RequestOptions:
    """What a request asks of its scores; each of these can change them.

    Attributes:
        prompt: text the family puts where its authors put an instruction (a family without one refuses it).
        activation: applied to the raw scores instead of the model's own activation (``torch.nn.Identity()``
            gives the raw scores).
        apply_softmax: a model with several labels: softmax over them (sentence-transformers' option).
        window: split long documents into windows and aggregate their scores (pointwise families only).
        max_tokens_per_doc: cut each document to its first tokens before scoring (Cohere v2's option).
        mode: one of the family's inference modes (``FamilySpec.modes``), e.g. ListConRanker's ``"iterative"``.
    """

    prompt: str | None = None
    activation: Callable[..., Any] | None = None
    apply_softmax: bool = False
    window: Window | None = None
    max_tokens_per_doc: int | None = None
    mode: str | None = None

    def __post_init__(self) -> None:
        if self.prompt is not None and not isinstance(self.prompt, str):
            raise TypeError(f"prompt must be a str or None, got {type(self.prompt).__name__}.")
        if self.window is not None and not isinstance(self.window, Window):
            raise TypeError(f"window must be a rerank_plugins.windows.Window, got {type(self.window).__name__}.")
        check_positive("max_tokens_per_doc", self.max_tokens_per_doc, optional=True)


DEFAULT_OPTIONS = RequestOptions()


@dataclass(frozen=True)
class Request:
    """One query and its candidate documents, scored together (a listwise family sees exactly this list)."""

    query: str
    documents: tuple[str, ...]
    options: RequestOptions = field(default=DEFAULT_OPTIONS)

    def __post_init__(self) -> None:
        if not isinstance(self.query, str):
            raise TypeError(f"The query must be a str, got {type(self.query).__name__}.")
        object.__setattr__(self, "documents", tuple(check_documents(self.documents)))
        if not isinstance(self.options, RequestOptions):
            raise TypeError(f"options must be RequestOptions, got {type(self.options).__name__}.")


@dataclass(frozen=True)
class RunOptions:
    """How to compute a call's requests; none of these changes a score.

    Attributes:
        batch_size: rows per forward (a pair, or for a listwise family the texts per encoder forward); None lets
            the batching policy decide (``core.batching``: 32 on a CPU, a token budget on an accelerator).
        batch_tokens: the padded tokens per forward on an accelerator when ``batch_size`` is None.
        device: where to score (the model moves there, as in sentence-transformers); None: where it is.
        show_progress_bar: a progress bar over the batches.
        cancelled: asked before each forward batch; once it returns True the call stops with :class:`Cancelled`
            (the server's queue: every request of the call has been abandoned by its client).
    """

    batch_size: int | None = None
    batch_tokens: int = 32_768
    device: Any = None
    show_progress_bar: bool = False
    cancelled: Callable[[], bool] | None = None

    def __post_init__(self) -> None:
        check_positive("batch_size", self.batch_size, optional=True)
        check_positive("batch_tokens", self.batch_tokens)


class Cancelled(Exception):
    """A call stopped between two forward batches because its :attr:`RunOptions.cancelled` said so."""


@dataclass(frozen=True)
class RankedDocument:
    """One document of a ranking: its position in the request, its score, its text."""

    index: int
    score: float
    text: str


@dataclass(frozen=True)
class Ranking:
    """The answer to one :class:`Request`.

    ``scores`` are by document index; ``documents`` best first (ties keep the request's order, as
    ``CrossEncoder.rank``); ``tokens`` is how many tokens the model read for it in this call (template and special
    tokens included; cached documents count none).
    """

    scores: tuple[float, ...]
    documents: tuple[RankedDocument, ...]
    tokens: int = 0

    @classmethod
    def of(cls, request: Request, scores: Sequence[float], tokens: int = 0) -> Ranking:
        """The ranking of ``request`` from its scores by document index."""
        values = tuple(float(score) for score in scores)
        order = sorted(range(len(values)), key=lambda i: -values[i] if not math.isnan(values[i]) else math.inf)
        ranked = tuple(RankedDocument(i, values[i], request.documents[i]) for i in order)
        return cls(values, ranked, tokens)

    def top(self, n: int | None = None, threshold: float | None = None) -> list[RankedDocument]:
        """The best ``n`` documents (all when None) scoring at least ``threshold`` (the threshold applies first)."""
        kept = [d for d in self.documents if threshold is None or d.score >= threshold]
        return kept if n is None else kept[:n]
