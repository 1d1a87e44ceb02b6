"""Haystack: ``RerankPluginsRanker``, a ranker component for Haystack pipelines.

Named as Haystack's integration rankers are, after what scores (``CohereRanker``, ``JinaRanker``,
``FastembedRanker``), and shaped like ``SentenceTransformersSimilarityRanker``: ``run(query, documents, top_k=None,
scale_score=None, score_threshold=None)`` returns ``{"documents": [...]}``, the model loads in ``warm_up()``, and
the component serialises to YAML with its model id and loading options. It returns copies of the documents with
``score`` a Python float; the caller's documents and their ``meta`` dicts are never changed. It needs only
``haystack-ai`` (``pip install "rerank-plugins[haystack]"``).

    >>> from rerank_plugins.haystack import RerankPluginsRanker
    >>> ranker = RerankPluginsRanker("unicamp-dl/InRanker-small", top_k=3)  # doctest: +SKIP
    >>> ranker.run(query="what is the capital of france", documents=documents)["documents"]  # doctest: +SKIP
"""

# No `from __future__ import annotations`: Haystack before 2.24 takes run()'s annotations as written, and a string
# "list[Document]" does not match the retriever's output type.
import asyncio
import copy
import dataclasses
import math
import os
import threading
from collections.abc import Sequence
from typing import Any

from sentence_transformers import CrossEncoder as STCrossEncoder
from torch import nn

from rerank_plugins.adapters import RESERVED_RANK_KWARGS, check_number, check_options, load_model, model_name, rerank

try:
    from haystack import Document, component, default_from_dict, default_to_dict
    from haystack.core.errors import SerializationError
    from haystack.utils import ComponentDevice, Secret, deserialize_secrets_inplace
    from haystack.utils.hf import deserialize_hf_model_kwargs, serialize_hf_model_kwargs
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError('RerankPluginsRanker needs haystack-ai: pip install "rerank-plugins[haystack]"') from error

__all__ = ["RerankPluginsRanker"]

# One model load at a time, whichever ranker asks: transformers' from_pretrained run in several threads at once
# can return half-initialised models, and warm_up may run in worker threads (run_async, warm_up_async).
_LOADING = threading.Lock()

DEFAULT_TOKEN = Secret.from_env_var(["HF_API_TOKEN", "HF_TOKEN"], strict=False)
"""As in Haystack's Hugging Face components: a token from the environment when there is one."""

# The loading options the ranker names itself (cross_encoder_kwargs may not repeat them, nor processor_kwargs,
# which is tokenizer_kwargs), and those whose default is not None.
LOADING_OPTIONS = (
    "family",
    "preset",
    "family_options",
    "device",
    "max_length",
    "token",
    "trust_remote_code",
    "model_kwargs",
    "tokenizer_kwargs",
    "config_kwargs",
    "backend",
)
LOADING_DEFAULTS: dict[str, Any] = {"token": DEFAULT_TOKEN, "trust_remote_code": False, "backend": "torch"}


@component
class RerankPluginsRanker:
    """Rank Haystack documents with a reranker of this package (or any sentence-transformers ``CrossEncoder``).

    Each query's documents are scored in one ``CrossEncoder.rank`` call, so a listwise model (ListConRanker)
    sees the whole candidate list. Documents with the same ``id`` are scored once, keeping the one with the
    highest incoming score, as Haystack's own rankers do.

    Args:
        model: a hub id or a local path, loaded by ``rerank_plugins.CrossEncoder`` in :meth:`warm_up`; or an
            already loaded ``CrossEncoder`` (such a ranker cannot be serialised).
        top_k: keep the best ``top_k`` documents; ``None`` keeps them all.
        score_threshold: drop documents scoring below it (``score >= score_threshold`` stays), before ``top_k``.
        scale_score: ``True`` gives the model's own score, as ``CrossEncoder.rank`` does (P(true) for monoT5,
            a sigmoid for ListConRanker and R*, the raw logit for DistillRankNET, a mean log-probability for
            RankingGPT); ``False`` gives the raw score before the model's activation.
        query_prefix, query_suffix: added around the query before scoring.
        document_prefix, document_suffix: added around each document's text before scoring.
        meta_fields_to_embed: meta fields whose values (``str()``) go before the content, joined by
            ``embedding_separator``; missing or ``None`` values are left out.
        embedding_separator: joins the meta values and the content.
        batch_size: pairs per forward pass (ListConRanker: texts per encoder pass); ``None``: the model's default.
        iterative: ListConRanker's iterative inference (listwise models only).
        family, preset, family_options, max_length: ``rerank_plugins.CrossEncoder``'s loading options.
        device: where to load the model (a ``ComponentDevice`` or a string such as ``"cpu"``); ``None``: the
            model's default, decided on the machine that loads it.
        token: the Hugging Face token for private models (read from ``HF_API_TOKEN`` or ``HF_TOKEN`` by default).
        trust_remote_code: run a checkpoint's own code (off by default).
        model_kwargs, tokenizer_kwargs, config_kwargs, backend: sentence-transformers' loading options
            (``tokenizer_kwargs`` is its ``processor_kwargs``).
        cross_encoder_kwargs: any further ``rerank_plugins.CrossEncoder`` argument (``revision=``, ...).
        rank_kwargs: further keyword arguments for ``CrossEncoder.rank``, e.g. ``{"show_progress_bar": False}``.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | STCrossEncoder,
        *,
        top_k: int | None = 10,
        score_threshold: float | None = None,
        scale_score: bool = True,
        query_prefix: str = "",
        query_suffix: str = "",
        document_prefix: str = "",
        document_suffix: str = "",
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        batch_size: int | None = None,
        iterative: bool = False,
        family: str | None = None,
        preset: str | None = None,
        family_options: dict[str, Any] | None = None,
        device: ComponentDevice | str | None = None,
        max_length: int | None = None,
        token: Secret | None = DEFAULT_TOKEN,
        trust_remote_code: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        backend: str = "torch",
        cross_encoder_kwargs: dict[str, Any] | None = None,
        rank_kwargs: dict[str, Any] | None = None,
    ) -> None:
        for name, value in (("top_k", top_k), ("score_threshold", score_threshold), ("batch_size", batch_size)):
            check_number(name, value)
        for name, text in (("query_prefix", query_prefix), ("query_suffix", query_suffix),
                           ("document_prefix", document_prefix), ("document_suffix", document_suffix),
                           ("embedding_separator", embedding_separator)):  # fmt: skip
            if not isinstance(text, str):
                raise TypeError(f"{name} must be a str, got {type(text).__name__}.")
        fields = list(meta_fields_to_embed or [])
        if not all(isinstance(field, str) for field in fields):
            raise TypeError(f"meta_fields_to_embed must be a list of str, got {meta_fields_to_embed!r}.")
        check_scale(scale_score, iterative)
        self.rank_kwargs = dict(rank_kwargs or {})
        reserved = (RESERVED_RANK_KWARGS | {"activation_fn"}) & set(self.rank_kwargs)
        if reserved:
            raise ValueError(f"rank_kwargs may not set {sorted(reserved)}: use the ranker's own arguments.")
        self.cross_encoder_kwargs = dict(cross_encoder_kwargs or {})
        repeated = {*LOADING_OPTIONS, "processor_kwargs"} & set(self.cross_encoder_kwargs)
        if repeated:
            raise ValueError(f"cross_encoder_kwargs may not set {sorted(repeated)}: use the ranker's own arguments.")

        self.top_k, self.score_threshold, self.scale_score = top_k, score_threshold, scale_score
        self.query_prefix, self.query_suffix = query_prefix, query_suffix
        self.document_prefix, self.document_suffix = document_prefix, document_suffix
        self.meta_fields_to_embed, self.embedding_separator = fields, embedding_separator
        self.batch_size, self.iterative = batch_size, iterative
        self.family, self.preset, self.family_options = family, preset, family_options
        if not isinstance(device, (ComponentDevice, str, type(None))):
            raise TypeError(f"device must be a ComponentDevice, a str such as 'cuda:0', or None; got {device!r}.")
        self.device = ComponentDevice.from_str(device) if isinstance(device, str) else device
        self.max_length, self.token, self.trust_remote_code = max_length, token, trust_remote_code
        self.model_kwargs, self.tokenizer_kwargs, self.config_kwargs = model_kwargs, tokenizer_kwargs, config_kwargs
        self.backend = backend

        self._cross_encoder: STCrossEncoder | None = None
        if isinstance(model, STCrossEncoder):
            changed = self._changed_loading_options()
            if changed:
                raise ValueError(f"Loading options {changed} only apply when model= is an id or a path: it is loaded.")
            check_options(model, iterative, self.rank_kwargs)
            self.model, self._cross_encoder, self._given = model_name(model), model, True
        elif isinstance(model, (str, os.PathLike)):
            self.model, self._given = os.fspath(model), False
        else:
            raise TypeError(f"model must be a model id, a path or a CrossEncoder, got {type(model).__name__}.")

    @property
    def cross_encoder(self) -> STCrossEncoder | None:
        """The loaded cross-encoder, or ``None`` before :meth:`warm_up`."""
        return self._cross_encoder

    # -- loading ------------------------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load the model, once: later calls (and calls from other threads meanwhile) reuse it."""
        if self._cross_encoder is not None:
            return
        with _LOADING:
            if self._cross_encoder is None:
                loaded = load_model(self.model, **self._loading_options())
                check_options(loaded, self.iterative, self.rank_kwargs)
                self._cross_encoder = loaded

    async def warm_up_async(self) -> None:
        """:meth:`warm_up` in a worker thread, so that loading never blocks the event loop."""
        if self._cross_encoder is None:
            await asyncio.to_thread(self.warm_up)

    def _loading_options(self) -> dict[str, Any]:
        """``rerank_plugins.CrossEncoder``'s keyword arguments, those left at None (the model's default) left out."""
        token = self.token.resolve_value() if self.token is not None else None
        options = {
            "family": self.family,
            "preset": self.preset,
            "family_options": self.family_options,
            "device": self.device.to_torch_str() if self.device is not None else None,
            "max_length": self.max_length,
            "token": token,
            "trust_remote_code": self.trust_remote_code or None,
            "model_kwargs": self.model_kwargs,
            "processor_kwargs": self.tokenizer_kwargs,
            "config_kwargs": self.config_kwargs,
            "backend": self.backend,
            **self.cross_encoder_kwargs,
        }
        return {key: value for key, value in options.items() if value is not None}

    def _changed_loading_options(self) -> list[str]:
        """The names of the loading options not at their defaults."""
        changed = [name for name in LOADING_OPTIONS if getattr(self, name) != LOADING_DEFAULTS.get(name)]
        return changed + sorted(self.cross_encoder_kwargs)

    # -- serialisation ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The component as a dictionary (what ``Pipeline.dumps`` writes): the model id and every option."""
        if self._given:
            raise SerializationError(
                "This RerankPluginsRanker was given a loaded model, which cannot be serialised: build it with the "
                "model's id or path (and its loading options) to save the pipeline."
            )
        model_kwargs = copy.deepcopy(self.model_kwargs)
        if model_kwargs is not None:
            serialize_hf_model_kwargs(model_kwargs)  # torch dtypes as strings
        return default_to_dict(
            self,
            model=self.model,
            top_k=self.top_k,
            score_threshold=self.score_threshold,
            scale_score=self.scale_score,
            query_prefix=self.query_prefix,
            query_suffix=self.query_suffix,
            document_prefix=self.document_prefix,
            document_suffix=self.document_suffix,
            meta_fields_to_embed=self.meta_fields_to_embed,
            embedding_separator=self.embedding_separator,
            batch_size=self.batch_size,
            iterative=self.iterative,
            family=self.family,
            preset=self.preset,
            family_options=self.family_options,
            device=self.device.to_dict() if self.device is not None else None,
            max_length=self.max_length,
            token=self.token.to_dict() if self.token is not None else None,
            trust_remote_code=self.trust_remote_code,
            model_kwargs=model_kwargs,
            tokenizer_kwargs=self.tokenizer_kwargs,
            config_kwargs=self.config_kwargs,
            backend=self.backend,
            cross_encoder_kwargs=self.cross_encoder_kwargs,
            rank_kwargs=self.rank_kwargs,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RerankPluginsRanker":
        """The component :meth:`to_dict` described (``data`` itself is left as it was)."""
        parameters = copy.deepcopy(data.get("init_parameters", {}))
        deserialize_secrets_inplace(parameters, keys=["token"])
        if isinstance(parameters.get("device"), dict):
            parameters["device"] = ComponentDevice.from_dict(parameters["device"])
        if parameters.get("model_kwargs") is not None:
            deserialize_hf_model_kwargs(parameters["model_kwargs"])
        return default_from_dict(cls, {**data, "init_parameters": parameters})

    # -- ranking ------------------------------------------------------------------------------------------------
    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        scale_score: bool | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """Score ``documents`` against ``query``; the kept ones come back as scored copies, best first.

        ``top_k``, ``scale_score`` and ``score_threshold`` override the ranker's own for this call.
        """
        top_k = self.top_k if top_k is None else top_k
        scale_score = self.scale_score if scale_score is None else scale_score
        score_threshold = self.score_threshold if score_threshold is None else score_threshold
        check_number("top_k", top_k)
        check_scale(scale_score, self.iterative)
        if not isinstance(query, str):
            raise TypeError(f"The query must be a str, got {type(query).__name__}.")
        candidates = unique_by_id(checked_documents(documents))
        texts = [self._text(document) for document in candidates]
        self.warm_up()
        assert self._cross_encoder is not None
        rank_kwargs = self.rank_kwargs if scale_score else {**self.rank_kwargs, "activation_fn": nn.Identity()}
        ranked = rerank(
            self._cross_encoder,
            self.query_prefix + query + self.query_suffix,
            texts,
            top_n=top_k,
            score_threshold=score_threshold,
            batch_size=self.batch_size,
            iterative=self.iterative,
            rank_kwargs=rank_kwargs,
        )
        return {"documents": [scored_copy(candidates[hit.index], hit.score) for hit in ranked]}

    @component.output_types(documents=list[Document])
    async def run_async(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        scale_score: bool | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """:meth:`run` in a worker thread (loading too, if needed), so that the event loop stays free."""
        await self.warm_up_async()
        return await asyncio.to_thread(self.run, query, documents, top_k, scale_score, score_threshold)

    def _text(self, document: Document) -> str:
        """What the model reads for ``document``: the prefix, the chosen meta values, the content, the suffix."""
        assert document.content is not None  # checked_documents refused None
        meta = [str(document.meta[key]) for key in self.meta_fields_to_embed if document.meta.get(key) is not None]
        body = self.embedding_separator.join([*meta, document.content])
        return self.document_prefix + body + self.document_suffix


def check_scale(scale_score: Any, iterative: bool) -> None:
    """``scale_score`` must be a bool, and ``True`` for iterative inference, whose rounds add to sigmoid scores."""
    if not isinstance(scale_score, bool):
        raise TypeError(f"scale_score must be a bool, got {scale_score!r}.")
    if iterative and not scale_score:
        raise ValueError(
            "scale_score=False cannot be honoured with iterative=True: ListConRanker's iterative scores add each "
            "passage's round to its sigmoid score, which raw logits would not keep in order."
        )


def checked_documents(documents: Any) -> list[Document]:
    """``documents`` as a list, or a TypeError/ValueError naming the first one that cannot be reranked."""
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
        raise TypeError(f"documents must be a list of haystack Documents, got a {type(documents).__name__}.")
    for index, document in enumerate(documents):
        if not isinstance(document, Document):
            raise TypeError(f"Document {index} is a {type(document).__name__}, not a haystack Document.")
        if document.content is None:
            raise ValueError(
                f"Document {index} (id {document.id!r}) has no text content (content is None); only text can be "
                "reranked: drop it or give it content."
            )
        if not isinstance(document.content, str):
            raise TypeError(f"Document {index} (id {document.id!r}) has content of type {type(document.content)}.")
    return list(documents)


def unique_by_id(documents: list[Document]) -> list[Document]:
    """One document per ``id``, in order of first appearance: the one with the highest score (unscored: lowest)."""
    kept: dict[str, Document] = {}
    for document in documents:
        best = kept.get(document.id)
        if best is None or incoming_score(document) > incoming_score(best):
            kept[document.id] = document
    return list(kept.values())


def incoming_score(document: Document) -> float:
    return -math.inf if document.score is None else document.score


def scored_copy(document: Document, score: float) -> Document:
    """A copy of ``document`` with ``score`` and a new meta dict; the meta values and embedding are shared."""
    return dataclasses.replace(document, meta=dict(document.meta), score=score)
