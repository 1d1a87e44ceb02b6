"""``rerank_plugins.CrossEncoder``: a sentence-transformers ``CrossEncoder`` that scores as the authors do.

It chooses the modules (``resolution.resolve_family``: which family, with which settings); ``predict`` and ``rank``
keep sentence-transformers' signatures and meaning, normalise their arguments once into the request core's
typed options, and hand whole requests to it (``rerank_plugins.core``): checks, cache, windows, batching, the
batch loop and the activation all happen there. Evaluators, save/load, devices and training are
sentence-transformers' own.

How a score travels: ``rank`` -> one ``Request`` (``predict``: one per query) -> ``core.score_requests`` ->
the family module's ``encode`` / ``collate`` / ``forward`` -> the tensor maths.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from sentence_transformers import CrossEncoder as STCrossEncoder
from torch import nn

from rerank_plugins.cache import ScoreCache
from rerank_plugins.checks import check_positive, validate_pairs
from rerank_plugins.core.batching import ACCELERATOR_BATCH_TOKENS, CPU_BATCH_SIZE
from rerank_plugins.core.ranking import rank_requests, score_requests
from rerank_plugins.core.requests import Ranking, Request, RequestOptions, RunOptions
from rerank_plugins.evaluation import evaluator_lists
from rerank_plugins.families import FamilySpec, LoadRequest, get_family, make_activation
from rerank_plugins.hub import HubOptions, reachable_hub_kwargs
from rerank_plugins.model_card import CheckedModelCardData
from rerank_plugins.pair_requests import gather, requests_of_lists, requests_of_pairs, sorted_by_index
from rerank_plugins.quantization import refuse_to_save_quantized
from rerank_plugins.quiet import quiet_loading
from rerank_plugins.resolution import (
    FamilyMismatchError,
    Resolution,
    check_backend,
    fallback_tokenizer,
    family_of_modules,
    module_classes,
    resolve_family,
)
from rerank_plugins.scoring.sequence_classification import LabelMargin
from rerank_plugins.windows import Window, as_window

logger = logging.getLogger(__name__)

LOADING = threading.RLock()
"""Held while a model's modules load. transformers' ``from_pretrained`` swaps process-wide functions while it loads
(``no_init_weights`` replaces torch's init functions and ``PreTrainedModel.init_weights``, which ties weights, and
puts them back afterwards): two loads in two threads can put back each other's stand-ins, and every later load in
the process then lacks its tied weights. Our loads take turns."""


class CrossEncoder(STCrossEncoder):
    """A drop-in ``sentence_transformers.CrossEncoder`` whose scores are the published rerankers' own.

    Args:
        model_name_or_path: a hub id or a local directory.
        family: force a scoring family (``"monot5"``, ``"sequence-classification"``, ``"query-likelihood"``,
            ``"listconranker"``, ``"qwen3-reranker"``, ``"mxbai-rerank-v2"``, ``"bge-llm-reranker"``,
            ``"logit-score"``, or one registered with ``rerank_plugins.families.register_family``).
        preset: a registry id whose settings to apply, e.g. to a local copy of ``"unicamp-dl/InRanker-base"``.
        family_options: options of the family's scoring module, over the registry's: e.g.
            ``{"true_token": "▁yes", "false_token": "▁no"}`` for an mT5 monoT5, ``{"template": ...}``,
            ``{"truncation": "only_second"}`` for a sequence classifier.
        score_cache: opt-in: a :class:`~rerank_plugins.cache.ScoreCache` (may be shared between models) or a
            maximum number of entries; repeated pairs are then not scored again. Off by default.
        verbose: show the libraries' output while loading and saving (progress bars, load reports); quiet by
            default (``rerank_plugins.quiet``).
        **kwargs: every ``sentence_transformers.CrossEncoder`` argument (``device``, ``max_length``,
            ``activation_fn``, ``model_kwargs={"dtype": ...}``, ``trust_remote_code``, ...).

    The family is taken, in order, from ``family=``, ``preset=``, the registry (hub ids), and the checkpoint
    itself (a saved model reloads as saved; ListConRanker files -> listwise; T5 -> monoT5; a trained
    classification head -> sequence classification; any other causal LM -> ``logit-score``, as
    sentence-transformers scores it, with a warning). A checkpoint with no head that any family recognises is
    refused with an error naming ``family=``: it never gets a random head.
    """

    model_card_data_class = CheckedModelCardData  # checks the training data when a trainer is built (model_card.py)
    _resolution: Resolution
    _family_options: dict[str, Any]
    _extra_module_classes: Mapping[str, type[nn.Module]]
    score_cache: ScoreCache | None

    def __init__(
        self,
        model_name_or_path: str | None = None,
        *,
        family: str | None = None,
        preset: str | None = None,
        family_options: dict[str, Any] | None = None,
        score_cache: ScoreCache | int | None = None,
        verbose: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs = reachable_hub_kwargs(model_name_or_path, kwargs)  # one probe, not minutes of hub retries
        with quiet_loading(verbose):
            resolution = resolve_family(
                model_name_or_path, family=family, preset=preset, hub=HubOptions.from_kwargs(kwargs)
            )
            entry = resolution.entry
            check_backend(resolution, kwargs.get("backend", "torch"))
            if resolution.note is not None:  # recognition alone chose a catch-all family: say so, and how to choose
                logger.warning(resolution.note)
            # Plain attributes set before nn.Module.__init__: read while the modules load.
            object.__setattr__(self, "_resolution", resolution)
            object.__setattr__(self, "_family_options", {**(entry.options if entry else {}), **(family_options or {})})
            object.__setattr__(self, "_extra_module_classes", {})
            try:
                with LOADING:
                    super().__init__(model_name_or_path, **kwargs)
            except FamilyMismatchError as error:
                raise error.chosen(resolution) from None
        self.verbose = verbose  # loads and saves show the libraries' progress bars and load reports
        # Once, not on every call: for a saved model it walks every family's classes (entry points included).
        object.__setattr__(self, "_family", self.family)
        self.score_cache = ScoreCache(score_cache) if isinstance(score_cache, int) else score_cache
        self.cache_identity = uuid.uuid4().hex  # cache keys: this instance, never another with the same path
        self.weights_version = 0  # bumped whenever the weights may have changed (training, quantization)

    # -- which modules --------------------------------------------------------------------------------------
    @property
    def _module_classes(self) -> Mapping[str, type[nn.Module]]:  # type: ignore[override]
        # Saved modules of every family load without trust_remote_code: they are registered code, not the hub's.
        return {**module_classes(), **self._extra_module_classes}

    @_module_classes.setter
    def _module_classes(self, value: Mapping[str, type[nn.Module]]) -> None:
        object.__setattr__(self, "_extra_module_classes", dict(value))

    @property
    def family(self) -> str:
        """The scoring family: the one resolved, or for a saved model the one its modules belong to."""
        known = self.__dict__.get("_family")
        if known is not None:  # decided once the modules are loaded (they do not change afterwards)
            return known
        resolution = self._resolution
        if resolution.family is not None and resolution.source != "saved":
            return resolution.family  # the modules were built from this family's spec
        return family_of_modules(list(self)) or resolution.family or "sequence-classification"

    @property
    def family_spec(self) -> FamilySpec:
        """The :class:`~rerank_plugins.families.FamilySpec` of :attr:`family`."""
        return get_family(self.family)

    @property
    def is_listwise(self) -> bool:
        """True when a document's score depends on the other documents of its list."""
        return self.family_spec.listwise

    def _load_modules(self, model_name_or_path: str, **kwargs: Any) -> tuple[Any, dict[str, Any]]:  # type: ignore[override]
        if self._resolution.source != "saved":  # family=, preset= or the registry win over a saved modules.json
            return self._load_default_modules(model_name_or_path, **kwargs)
        return super()._load_modules(model_name_or_path, **kwargs)

    def _load_default_modules(  # type: ignore[override]
        self,
        model_name_or_path: str,
        token: bool | str | None,
        cache_folder: str | None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        local_files_only: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        hub = HubOptions(token, revision, cache_folder, local_files_only, trust_remote_code)
        spec = self._resolution.spec
        assert spec is not None  # every resolution but "saved" (loaded by _load_modules) names a family
        request = LoadRequest(
            model_name_or_path,
            hub=hub,
            options=dict(self._family_options),
            tokenizer_name_or_path=fallback_tokenizer(model_name_or_path, self._resolution.entry, hub),
            model_kwargs=model_kwargs,
            processor_kwargs=processor_kwargs,
            config_kwargs=config_kwargs,
            backend=self.backend,
        )
        return spec.build_modules(request), {}

    def get_default_activation_fn(self) -> Callable:
        entry = self._resolution.entry
        if entry is not None and entry.activation is not None:
            return make_activation(entry.activation)
        own = getattr(self[0], "default_activation", None) if len(self) else None
        if callable(own):  # a module whose options choose it (e.g. normalize=True of mxbai-rerank-v2)
            return own()
        return self.family_spec.make_activation() or super().get_default_activation_fn()

    @property
    def num_labels(self) -> int:
        if self.family != "sequence-classification" or isinstance(self[-1], LabelMargin):
            return 1  # one relevance score per pair
        return super().num_labels

    # -- weights versions (the score cache must never serve scores of other weights) -----------------------
    def weights_changed(self) -> None:
        """Mark the weights as changed (done by training and ``quantize_int8``; call it after editing by hand)."""
        self.weights_version = getattr(self, "weights_version", 0) + 1

    def train(self, mode: bool = True) -> CrossEncoder:
        if mode != self.training:  # into or out of training: the weights may change or have changed
            self.weights_changed()
        return super().train(mode)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self.weights_changed()
        return super().load_state_dict(*args, **kwargs)

    def save(self, path: str, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        refuse_to_save_quantized(self)  # before sentence-transformers writes its first file
        with quiet_loading(getattr(self, "verbose", False)):
            super().save(path, *args, **kwargs)

    # -- inference: sentence-transformers' signatures, normalised once, then the request core ---------------
    def predict(  # type: ignore[override]
        self,
        inputs: Any,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        activation_fn: Callable | None = None,
        apply_softmax: bool | None = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: Any = None,
        pool: Any = None,
        chunk_size: int | None = None,
        *,
        window: Window | dict[str, Any] | bool | None = None,
        batch_tokens: int = ACCELERATOR_BATCH_TOKENS,
        **kwargs: Any,
    ) -> Any:
        """``sentence_transformers.CrossEncoder.predict``, plus input checks, ``window=`` and whole lists.

        The pairs that share a query are one request to the request core (``rerank_plugins.core``); for a
        listwise model they are one list. ``window=Window(size, stride, aggregate)`` (or ``True``) scores long
        documents in overlapping windows. ``batch_size`` is rows per forward, as in sentence-transformers; left
        out, it is 32 on a CPU and, on an accelerator, as many length-sorted pairs as fit in ``batch_tokens``
        padded tokens. A listwise model refuses ``pool=`` / a list of devices, which would cut lists apart.
        """
        _refuse_unknown(kwargs, "predict")
        singular = self.is_singular_input(inputs)
        pairs = [inputs] if singular else (inputs.tolist() if isinstance(inputs, np.ndarray) else list(inputs))
        pairs = [list(pair) if isinstance(pair, np.ndarray) else pair for pair in pairs]
        validate_pairs(pairs)
        options = self.request_options(prompt_name, prompt, activation_fn, apply_softmax, window)
        if pool is not None or isinstance(device, list):
            scores = self._score_in_pool(pairs, options, batch_size, show_progress_bar, device, pool, chunk_size)
        else:
            run = self.run_options(batch_size, show_progress_bar, device, batch_tokens)
            samples = evaluator_lists(pairs) if self.is_listwise else None  # the evaluator's own lists, if it calls
            requests, places = (
                requests_of_pairs(pairs, options) if samples is None else requests_of_lists(pairs, samples, options)
            )
            scored = score_requests(self, requests, run)
            scores = gather(scored, places, self.device)
        if convert_to_tensor:
            result: Any = scores
        elif convert_to_numpy:
            result = scores.float().cpu().numpy() if len(scores) else np.array([])
        else:
            result = list(scores)
        return result[0] if singular else result

    def rank(  # type: ignore[override]
        self,
        query: str,
        documents: Sequence[str],
        top_k: int | None = None,
        return_documents: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        activation_fn: Callable | None = None,
        device: Any = None,
        pool: Any = None,
        chunk_size: int | None = None,
        *,
        iterative: bool = False,
        window: Window | dict[str, Any] | bool | None = None,
        batch_tokens: int = ACCELERATOR_BATCH_TOKENS,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """``sentence_transformers.CrossEncoder.rank``, plus ``window=`` for long documents and ``iterative=True``.

        ``iterative=True`` runs the authors' iterative inference (ListConRanker): while more than 20 passages
        remain, score them, drop the lowest ``max(ceil(0.2 n), 10)`` (and exact ties) with ``score + round``,
        and re-score the rest; the last 20 or fewer get ``score + final round``, so scores can exceed 1.
        Ties keep the input order.
        """
        _refuse_unknown(kwargs, "rank")
        check_positive("top_k", top_k, optional=True)
        if pool is not None or isinstance(device, list):
            if iterative:
                raise ValueError("iterative=True scores a list in rounds in one process; leave out pool= / devices.")
            request, _ = self.make_request(query, documents, prompt_name=prompt_name, prompt=prompt, window=window)
            scores = self.predict(
                [(query, document) for document in request.documents], prompt_name=prompt_name, prompt=prompt,
                batch_size=batch_size, show_progress_bar=show_progress_bar, activation_fn=activation_fn,
                device=device, pool=pool, chunk_size=chunk_size, window=window,
            )  # fmt: skip
            ranking = Ranking.of(request, [float(score) for score in scores])
        else:
            request, run = self.make_request(
                query, documents, prompt_name=prompt_name, prompt=prompt, activation_fn=activation_fn, window=window,
                iterative=iterative, batch_size=batch_size, show_progress_bar=show_progress_bar, device=device,
                batch_tokens=batch_tokens,
            )  # fmt: skip
            ranking = self.rank_request(request, run)
        results: list[dict[str, Any]] = []
        for document in ranking.top(top_k):
            result: dict[str, Any] = {"corpus_id": document.index, "score": document.score}
            if return_documents:
                result["text"] = document.text
            results.append(result)
        return results

    def rank_requests(self, requests: Sequence[Request], run: RunOptions | None = None) -> list[Ranking]:
        """Whole :class:`~rerank_plugins.core.Request` s ranked together by the request core: what every frontend
        calls (their rows share batches; a listwise request is scored as exactly its own list)."""
        return rank_requests(self, requests, run or RunOptions())

    def rank_request(self, request: Request, run: RunOptions | None = None) -> Ranking:
        """One :class:`~rerank_plugins.core.Request` ranked by the request core."""
        (ranking,) = self.rank_requests([request], run)
        return ranking

    def make_request(
        self,
        query: str,
        documents: Sequence[str],
        *,
        prompt_name: str | None = None,
        prompt: str | None = None,
        activation_fn: Callable | None = None,
        window: Window | dict[str, Any] | bool | None = None,
        iterative: bool = False,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        device: Any = None,
        batch_tokens: int = ACCELERATOR_BATCH_TOKENS,
    ) -> tuple[Request, RunOptions]:
        """``rank``'s arguments as the request core's :class:`~rerank_plugins.core.Request` and run options."""
        options = self.request_options(prompt_name, prompt, activation_fn, False, window, iterative=iterative)
        request = Request(query, documents, options)  # type: ignore[arg-type]
        return request, self.run_options(batch_size, show_progress_bar, device, batch_tokens)

    def iterative_scores(self, query: str, documents: Sequence[str], **rank_kwargs: Any) -> list[float]:
        """ListConRanker's iterative inference (see :meth:`rank`): one final score per document, by index."""
        kwargs = {"top_k": None, **rank_kwargs, "iterative": True}
        return sorted_by_index(self.rank(query, documents, **kwargs), len(documents))

    # -- arguments normalised once ----------------------------------------------------------------------------
    def request_options(
        self,
        prompt_name: str | None = None,
        prompt: str | None = None,
        activation_fn: Callable | None = None,
        apply_softmax: bool | None = False,
        window: Window | dict[str, Any] | bool | None = None,
        *,
        iterative: bool = False,
    ) -> RequestOptions:
        """sentence-transformers' per-call arguments as the core's :class:`~rerank_plugins.core.RequestOptions`.

        The prompt is resolved as sentence-transformers does: ``prompt``, else ``prompts[prompt_name]``, else the
        model's ``default_prompt_name``; the family decides what a prompt means (or refuses it).
        """
        return RequestOptions(
            prompt=self.resolve_prompt(prompt, prompt_name),
            activation=activation_fn,
            apply_softmax=bool(apply_softmax),
            window=as_window(window),
            mode="iterative" if iterative else None,
        )

    def run_options(
        self,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        device: Any = None,
        batch_tokens: int = ACCELERATOR_BATCH_TOKENS,
    ) -> RunOptions:
        """sentence-transformers' execution arguments as the core's :class:`~rerank_plugins.core.RunOptions`."""
        if show_progress_bar is None:  # sentence-transformers' default: a bar when its logger shows INFO
            show_progress_bar = logging.getLogger("sentence_transformers").getEffectiveLevel() <= logging.INFO
        return RunOptions(batch_size, batch_tokens, device, bool(show_progress_bar))

    def resolve_prompt(self, prompt: str | None, prompt_name: str | None) -> str | None:
        """``prompt``, else the named prompt, else the default prompt (sentence-transformers' order)."""
        if prompt is not None:
            if prompt_name is not None:
                logger.warning("Both prompt and prompt_name given: prompt_name %r is ignored.", prompt_name)
            return prompt
        name = prompt_name if prompt_name is not None else self.default_prompt_name
        if name is None:
            return None
        if name not in self.prompts:
            raise ValueError(f"Prompt name {name!r} is not one of this model's prompts: {sorted(self.prompts)}.")
        return self.prompts[name] or None

    def _score_in_pool(
        self,
        pairs: list,
        options: RequestOptions,
        batch_size: int | None,
        show_progress_bar: bool | None,
        device: Any,
        pool: Any,
        chunk_size: int | None,
    ) -> torch.Tensor:
        """sentence-transformers' multi-process predict (its workers call this ``predict`` on their share)."""
        if self.is_listwise:
            raise ValueError(
                "A listwise model scores each query's list whole; pool= / a list of devices would split lists "
                "across workers. Score in one process (device='cuda:0'), or one list per worker with "
                "rerank_plugins.ray."
            )
        if options.window is not None or self.score_cache is not None:
            raise ValueError("window= and score_cache are not supported with pool= or a list of devices.")
        return super().predict(
            pairs, prompt=options.prompt, batch_size=batch_size or CPU_BATCH_SIZE,
            show_progress_bar=show_progress_bar, activation_fn=options.activation, apply_softmax=options.apply_softmax,
            convert_to_tensor=True, device=device, pool=pool, chunk_size=chunk_size,
        )  # fmt: skip


def _refuse_unknown(kwargs: Mapping[str, Any], method: str) -> None:
    """An argument that this model would not honour is an error, never silently dropped."""
    if kwargs:
        raise TypeError(f"{method}() got unexpected keyword argument(s) {sorted(kwargs)}.")
