"""What the framework adapters share: loading a model, one request per query, the cut-off.

The adapters only turn framework objects into texts and back; everything about options and scoring happens
here, once, so that both frameworks rank exactly as ``CrossEncoder.rank`` does. They return copies: the document
or node and its metadata mapping are new objects, but the metadata values are the caller's own, never
deep-copied (a lock or a client cannot be). A listwise model's scores depend on the whole candidate list, so
each query's candidates are one request to the request core. Calls on one model may run at once: scoring keeps
no state between calls, and without a lock concurrent calls finished sooner (``docs/performance.md``). Async
callers score in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import numbers
import os
from collections.abc import Collection, Mapping, Sequence
from typing import Any, TypeAlias

from pydantic import BaseModel, Field, ValidationInfo, field_validator
from sentence_transformers import CrossEncoder as STCrossEncoder

from rerank_plugins.checks import check_positive
from rerank_plugins.core.requests import RankedDocument, Ranking, Request
from rerank_plugins.cross_encoder import CrossEncoder

ModelLike: TypeAlias = STCrossEncoder | str | os.PathLike[str]
"""A loaded cross-encoder (ours or plain sentence-transformers), or a hub id / local path to load."""

# Arguments the adapters set themselves; rank_kwargs may not override them.
RESERVED_RANK_KWARGS = frozenset({"query", "documents", "top_k", "return_documents", "batch_size", "iterative"})

THRESHOLD = "a number other than NaN (no score reaches NaN), or None"
"""What ``score_threshold`` accepts."""


class RerankOptions(BaseModel):
    """The options both adapters share, as pydantic fields (both frameworks' components are pydantic models).

    Both adapters take ``model`` first: a ``CrossEncoder`` (``rerank_plugins`` or plain sentence-transformers),
    or a hub id / local path that ``rerank_plugins.CrossEncoder`` loads, with any of its keyword arguments
    (``device=``, ``family=``, ``max_length=``, ...) passed alongside the fields below.
    """

    top_n: int | None = Field(default=None, ge=1, description="Keep the best top_n documents; None keeps all.")
    score_threshold: float | None = Field(
        default=None, description="Drop documents scoring below this, before top_n applies; None keeps all."
    )
    batch_size: int | None = Field(
        default=None,
        ge=1,
        description="Pairs (or list members) per forward pass; None: the model's default (32 pairs on a CPU, "
        "a token budget on an accelerator for rerank_plugins models).",
    )
    iterative: bool = Field(default=False, description="ListConRanker's iterative inference (listwise models only).")
    rank_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Further keyword arguments for CrossEncoder.rank, e.g. show_progress_bar."
    )

    @field_validator("top_n", "score_threshold", "batch_size", mode="before")
    @classmethod
    def _check_number(cls, value: Any, info: ValidationInfo) -> Any:
        check_number(str(info.field_name), value)
        return value

    @classmethod
    def load(cls, model: ModelLike, kwargs: dict[str, Any]) -> tuple[dict[str, Any], STCrossEncoder]:
        """An adapter's own fields among ``kwargs``, and ``model`` loaded with the rest (see :func:`load_model`)."""
        fields, model_kwargs = split_kwargs(cls.model_fields, kwargs)
        return fields, load_model(model, **model_kwargs)

    def check_model(self, model: STCrossEncoder) -> None:
        """Reject options that ``model`` cannot honour (see :func:`check_options`)."""
        check_options(model, self.iterative, self.rank_kwargs)

    def rank_options(self) -> dict[str, Any]:
        """These options as keyword arguments of :func:`rerank`."""
        return {
            "top_n": self.top_n,
            "score_threshold": self.score_threshold,
            "batch_size": self.batch_size,
            "iterative": self.iterative,
            "rank_kwargs": self.rank_kwargs,
        }

    def rank_texts(self, model: STCrossEncoder, query: str, texts: Sequence[str]) -> list[RankedDocument]:
        """:func:`rerank` with these options."""
        return rerank(model, query, texts, **self.rank_options())


def split_kwargs(field_names: Collection[str], kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split an adapter's keyword arguments into its own fields and the model's loading options."""
    fields = {key: value for key, value in kwargs.items() if key in field_names}
    return fields, {key: value for key, value in kwargs.items() if key not in field_names}


def load_model(model: ModelLike, **model_kwargs: Any) -> STCrossEncoder:
    """Return ``model`` if it is already a cross-encoder, else load it with ``rerank_plugins.CrossEncoder``.

    Loading happens here, in the adapter's constructor, on the caller's thread: never lazily in a worker.
    """
    if isinstance(model, STCrossEncoder):
        if model_kwargs:
            raise ValueError(
                f"Unknown option(s) {sorted(model_kwargs)}: loading options only apply when model= is an id or "
                "a path, and this model is already loaded."
            )
        return model
    if isinstance(model, (str, os.PathLike)):
        known = {*inspect.signature(CrossEncoder.__init__).parameters, *inspect.signature(STCrossEncoder).parameters}
        unknown = sorted(set(model_kwargs) - known - {"self", "kwargs", "model_name_or_path"})
        if unknown:
            raise TypeError(f"Unknown option(s) {unknown}: neither an adapter field nor a CrossEncoder argument.")
        return CrossEncoder(os.fspath(model), **model_kwargs)
    raise TypeError(f"model= must be a CrossEncoder, a model id or a path, got {type(model).__name__}.")


def model_name(model: STCrossEncoder, given: ModelLike | None = None) -> str:
    """A readable name for events and reprs: the id or path it was loaded from, when known."""
    if isinstance(given, (str, os.PathLike)):
        return os.fspath(given)
    base = getattr(getattr(model, "model_card_data", None), "base_model", None)
    if base:
        return str(base)
    inner = getattr(model[0], "model", None) if len(model) else None
    return str(getattr(inner, "name_or_path", None) or type(model).__name__)


def check_options(model: STCrossEncoder, iterative: bool, rank_kwargs: Mapping[str, Any]) -> None:
    """Reject options the model cannot honour, before any scoring."""
    if iterative and not getattr(model, "is_listwise", False):
        family = getattr(model, "family", f"a plain {type(model).__module__}.{type(model).__name__}")
        raise ValueError(f"iterative=True is ListConRanker's inference and needs a listwise model; this is {family}.")
    reserved = RESERVED_RANK_KWARGS & set(rank_kwargs)
    if reserved:
        raise ValueError(f"rank_kwargs may not set {sorted(reserved)}: use the adapter's own fields.")


def check_number(name: str, value: Any) -> None:
    """A TypeError or ValueError naming ``name`` unless ``value`` suits it (top_n, score_threshold, batch_size).

    ``top_n`` and ``batch_size`` get ``CrossEncoder.rank``'s own check (``checks.check_positive``): a bool or a
    non-int is a TypeError (``top_n=True`` would keep one document). A NaN threshold is refused, since no score
    reaches it; ``-inf`` and ``inf`` are thresholds like any other.
    """
    if value is None:
        return
    if name != "score_threshold":
        check_positive(name, value, optional=True)
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {THRESHOLD}; got {value!r} ({type(value).__name__}).")
    if math.isnan(value):
        raise ValueError(f"{name} must be {THRESHOLD}; got {value!r}.")


def check_texts(texts: Sequence[Any], what: str) -> None:
    """A TypeError naming the first input whose text is not a str (``what`` names the framework's object)."""
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{what} {index} has no str text (got {type(text).__name__}); only text can be reranked.")


def rerank(
    model: STCrossEncoder,
    query: str,
    texts: Sequence[str],
    *,
    top_n: int | None = None,
    score_threshold: float | None = None,
    batch_size: int | None = None,
    iterative: bool = False,
    rank_kwargs: Mapping[str, Any] | None = None,
) -> list[RankedDocument]:
    """The kept texts, best first, from ONE request with the whole list (see ``rerank_plugins.core``).

    ``score_threshold`` keeps scores ``>= score_threshold`` and applies before ``top_n``; ties keep the input
    order, as ``CrossEncoder.rank``. A plain sentence-transformers model is ranked by its own ``rank``.
    """
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a list of str, got a {type(texts).__name__}.")
    check_texts(texts, "Text")
    for name, value in (("top_n", top_n), ("score_threshold", score_threshold), ("batch_size", batch_size)):
        check_number(name, value)
    kwargs = dict(rank_kwargs or {})
    check_options(model, iterative, kwargs)
    if isinstance(model, CrossEncoder):
        request, run = model.make_request(query, texts, iterative=iterative, batch_size=batch_size, **kwargs)
        ranking = model.rank_request(request, run) if request.documents else Ranking.of(request, [])
    else:
        ranking = plain_ranking(model, query, texts, batch_size, kwargs)
    return ranking.top(top_n, score_threshold)


def plain_ranking(
    model: STCrossEncoder, query: str, texts: Sequence[str], batch_size: int | None, kwargs: Mapping[str, Any]
) -> Ranking:
    """A plain sentence-transformers model's ``rank`` as a :class:`~rerank_plugins.core.Ranking`."""
    request = Request(query, tuple(texts))
    if not request.documents:
        return Ranking.of(request, [])
    if batch_size is not None:  # else its own default (a plain sentence-transformers model takes no None)
        kwargs = {**kwargs, "batch_size": batch_size}
    scores = [0.0] * len(texts)
    for result in model.rank(query, list(texts), **kwargs):
        scores[int(result["corpus_id"])] = float(result["score"])
    return Ranking.of(request, scores)


async def arerank(model: STCrossEncoder, query: str, texts: Sequence[str], **options: Any) -> list[RankedDocument]:
    """:func:`rerank` in a worker thread, so that scoring never blocks the event loop."""
    return await asyncio.to_thread(rerank, model, query, texts, **options)
