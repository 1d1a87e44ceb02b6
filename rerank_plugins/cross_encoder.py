"""``rerank_plugins.CrossEncoder``: a sentence-transformers ``CrossEncoder`` that scores as the authors do.

It chooses the modules (``resolution.resolve_family``: which family, with which settings) and wraps the public
``predict`` with what pointwise batching cannot express: input checks, one truncation warning per call, windows for
long documents, the opt-in score cache, and whole-list scoring for listwise families. Pointwise scoring itself,
activation, devices, evaluators, save/load and training are sentence-transformers' own.

How a score travels: ``rank`` -> ``predict`` -> (cache) -> (windows) -> ``_score_pairs`` -> either
sentence-transformers' ``predict`` (pointwise: ``preprocess`` + ``forward`` of the family's module per batch) or
``_score_lists`` (listwise: one ``preprocess`` + ``forward`` per query's list) -> the module's tensor maths.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from sentence_transformers import CrossEncoder as STCrossEncoder
from sentence_transformers.util import batch_to_device
from torch import nn
from tqdm.autonotebook import tqdm

from rerank_plugins.cache import ScoreCache, cached_scores
from rerank_plugins.checks import check_documents, check_positive, validate_pairs
from rerank_plugins.families import (
    FamilySpec,
    LoadRequest,
    family_of_modules,
    get_family,
    make_activation,
    module_classes,
)
from rerank_plugins.hub import HubOptions, reachable_hub_kwargs
from rerank_plugins.model_card import CheckedModelCardData
from rerank_plugins.quantization import refuse_to_save_quantized
from rerank_plugins.quiet import quiet_loading
from rerank_plugins.resolution import FamilyMismatchError, Resolution, fallback_tokenizer, resolve_family
from rerank_plugins.scoring.listconranker import iterative_scores
from rerank_plugins.scoring.sequence_classification import LabelMargin
from rerank_plugins.scoring.token_budget import ACCELERATOR_BATCH_TOKENS, CPU_BATCH_SIZE, MAX_ROWS, token_budget_groups
from rerank_plugins.scoring.truncation import truncation_report, untruncated
from rerank_plugins.windows import Window, aggregate, as_window, split_document

logger = logging.getLogger(__name__)


class CrossEncoder(STCrossEncoder):
    """A drop-in ``sentence_transformers.CrossEncoder`` whose scores are the published rerankers' own.

    Args:
        model_name_or_path: a hub id or a local directory.
        family: force a scoring family (``"monot5"``, ``"sequence-classification"``, ``"query-likelihood"``,
            ``"listconranker"``, or one registered with ``rerank_plugins.families.register_family``).
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
    itself (a saved model reloads as saved; ListConRanker files -> listwise; T5 -> monoT5; a causal LM -> query
    likelihood; a trained classification head -> sequence classification). A checkpoint with no head that any
    family recognises is refused with an error naming ``family=``: it never gets a random head.
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
            # Plain attributes set before nn.Module.__init__: read while the modules load.
            object.__setattr__(self, "_resolution", resolution)
            object.__setattr__(self, "_family_options", {**(entry.options if entry else {}), **(family_options or {})})
            object.__setattr__(self, "_extra_module_classes", {})
            try:
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

    # -- inference ----------------------------------------------------------------------------------------
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

        ``window=Window(size, stride, aggregate)`` (or ``True``) scores long documents in overlapping windows.
        ``batch_size`` is pairs per forward, as in sentence-transformers; left out, it is 32 on a CPU and, on an
        accelerator, as many length-sorted pairs as fit in ``batch_tokens`` padded tokens. A listwise model
        scores each query's pairs as one list, whatever ``batch_size`` (which then bounds only the texts per
        encoder forward), and refuses ``pool=`` / a list of devices, which would cut lists apart.
        """
        check_positive("batch_size", batch_size, optional=True)
        check_positive("batch_tokens", batch_tokens)
        singular = self.is_singular_input(inputs)
        pairs = [inputs] if singular else (inputs.tolist() if isinstance(inputs, np.ndarray) else list(inputs))
        pairs = [list(pair) if isinstance(pair, np.ndarray) else pair for pair in pairs]
        validate_pairs(pairs)
        chosen = as_window(window)
        options = {"prompt_name": prompt_name, "prompt": prompt, "batch_size": batch_size,
                   "show_progress_bar": show_progress_bar, "activation_fn": activation_fn,
                   "apply_softmax": apply_softmax, "device": device, **kwargs}  # fmt: skip
        if pool is not None or isinstance(device, list):
            if self.is_listwise:
                raise ValueError(
                    "A listwise model scores each query's list whole; pool= / a list of devices would split lists "
                    "across workers. Score in one process (device='cuda:0'), or one list per worker with "
                    "rerank_plugins.ray."
                )
            if chosen is not None or self.score_cache is not None:
                raise ValueError("window= and score_cache are not supported with pool= or a list of devices.")
            return super().predict(
                inputs, convert_to_numpy=convert_to_numpy, convert_to_tensor=convert_to_tensor, pool=pool,
                chunk_size=chunk_size, **{**options, "batch_size": batch_size or CPU_BATCH_SIZE},
            )  # fmt: skip
        options["batch_tokens"] = batch_tokens
        self.eval()  # inference (as sentence-transformers' own predict does), before any cache key is made
        with truncation_report() as report:
            scores = self._cached_scores(pairs, chosen, options)
        if report.count:
            logger.warning(
                "%d of %d inputs were longer than max_length=%d tokens and were truncated as the %s family "
                "does. Pass a larger max_length if the model allows it, or window= to score long documents "
                "in windows.",
                report.count, len(pairs), self.max_seq_length, self.family,
            )  # fmt: skip
        if convert_to_tensor:
            result: Any = scores
        elif convert_to_numpy:
            result = scores.float().cpu().numpy() if len(scores) else np.array([])
        else:
            result = list(scores)
        return result[0] if singular else result

    def _cached_scores(self, pairs: list, window: Window | None, options: dict[str, Any]) -> torch.Tensor:
        """Through the score cache when there is one (see ``cache.cached_scores``), else straight to scoring."""
        if self.score_cache is None or self.num_labels != 1 or not pairs:
            return self._windowed_scores(pairs, window, options)
        found = cached_scores(self, self.score_cache, pairs, window, options, self._windowed_scores)
        return torch.tensor(found, dtype=torch.float32, device=self._device_of(options.get("device")))

    def _windowed_scores(self, pairs: list, window: Window | None, options: dict[str, Any]) -> torch.Tensor:
        """Each document split into windows, every window scored, one aggregated score per pair."""
        if window is None:
            return self._score_pairs(pairs, options)
        if self.num_labels != 1:
            raise ValueError("window= needs one score per pair; this model has several labels.")
        tokenizer = untruncated(self.tokenizer)
        flat, owners = [], []
        for index, (query, document) in enumerate(pairs):
            for piece in split_document(tokenizer, document, window):
                flat.append((query, piece))
                owners.append(index)
        return aggregate(self._score_pairs(flat, options).float(), owners, len(pairs), window.aggregate)

    def _score_pairs(self, pairs: list, options: dict[str, Any]) -> torch.Tensor:
        """Pointwise: sentence-transformers' own ``predict``; listwise: each query's pairs as one list.

        With no ``batch_size``: 32 pairs per forward on a CPU; on an accelerator, groups of length-sorted pairs
        of at most ``batch_tokens`` padded tokens (``scoring.token_budget``), one sentence-transformers batch each.
        """
        options = dict(options)
        batch_tokens = options.pop("batch_tokens", ACCELERATOR_BATCH_TOKENS)
        on_accelerator = self._uses_token_budget(options.get("device"))
        if self.is_listwise:
            return self._score_lists(pairs, batch_tokens=batch_tokens if on_accelerator else None, **options)
        if options["batch_size"] is not None or not on_accelerator or not pairs:
            options["batch_size"] = options["batch_size"] or CPU_BATCH_SIZE
            return super().predict(pairs, convert_to_tensor=True, **options)
        scores: list[torch.Tensor | None] = [None] * len(pairs)
        for group in token_budget_groups(pairs, self.max_seq_length, batch_tokens):
            options["batch_size"] = len(group)
            group_scores = super().predict([pairs[i] for i in group], convert_to_tensor=True, **options)
            for i, score in zip(group, group_scores, strict=True):
                scores[i] = score
        return torch.stack(scores)  # type: ignore[arg-type]

    def _uses_token_budget(self, device: Any) -> bool:
        """Whether batches without ``batch_size`` are cut by tokens: on any accelerator, not on a CPU."""
        return self._device_of(device).type != "cpu"

    def _device_of(self, device: Any) -> torch.device:
        return torch.device(device) if device is not None else self.device

    @torch.inference_mode()
    def _score_lists(
        self,
        pairs: list,
        *,
        batch_size: int | None,
        batch_tokens: int | None,
        show_progress_bar: bool | None,
        activation_fn: Callable | None,
        device: Any = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        apply_softmax: bool | None = False,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Score each query's pairs as one list; ``batch_size`` (or ``batch_tokens``) bounds the texts per encoder
        forward only."""
        if prompt_name is not None or prompt is not None:
            raise ValueError("prompts are not supported by listwise models.")
        target = self._device_of(device)
        if target != self.device:
            self.to(target)
        self.eval()
        activation = activation_fn if activation_fn is not None else self.activation_fn
        lists: dict[str, list[int]] = {}
        for index, (query, _) in enumerate(pairs):
            lists.setdefault(query, []).append(index)
        scores = torch.empty(len(pairs), dtype=torch.float32, device=target)
        first: Any = self[0]
        rest = list(self)[1:]
        for members in tqdm(lists.values(), desc="Lists", disable=not show_progress_bar):
            features = batch_to_device(first.preprocess([pairs[i] for i in members]), target)
            # Per call: the module itself is never changed. No batch_size on an accelerator: chunks by tokens only.
            chunk = batch_size or (MAX_ROWS if batch_tokens else CPU_BATCH_SIZE)
            features = first(features, batch_size=chunk, batch_tokens=batch_tokens)
            for module in rest:
                features = module(features)
            list_scores = features["scores"].float()
            if activation is not None:
                list_scores = activation(list_scores)
            scores[torch.tensor(members, device=target)] = list_scores.reshape(-1)
        return scores

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
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """``sentence_transformers.CrossEncoder.rank``, plus ``window=`` for long documents and ``iterative=True``.

        ``iterative=True`` runs the authors' iterative inference (listwise models): while more than 20 passages
        remain, score them, drop the lowest ``max(ceil(0.2 n), 10)`` (and exact ties) with ``score + round``,
        and re-score the rest; the last 20 or fewer get ``score + final round``, so scores can exceed 1.
        Every other keyword argument goes to :meth:`predict`. Ties keep the input order.
        """
        if not isinstance(query, str):
            raise TypeError(f"The query must be a str, got {type(query).__name__}.")
        documents = check_documents(documents)
        check_positive("top_k", top_k, optional=True)
        if self.num_labels != 1:
            raise ValueError("CrossEncoder.rank() needs one score per pair; this model has several labels.")
        options = {"prompt_name": prompt_name, "prompt": prompt, "batch_size": batch_size,
                   "show_progress_bar": show_progress_bar, "activation_fn": activation_fn, "device": device,
                   "pool": pool, "chunk_size": chunk_size, "window": window, **kwargs}  # fmt: skip
        if iterative:
            if not self.is_listwise:
                raise ValueError(f"iterative=True is ListConRanker's inference; this model is {self.family!r}.")
            final = self.iterative_scores(query, documents, **options)
        else:
            pairs = [(query, document) for document in documents]
            final = self.predict(pairs, convert_to_numpy=True, **options).tolist() if pairs else []
        results: list[dict[str, Any]] = [{"corpus_id": i, "score": float(s)} for i, s in enumerate(final)]
        if return_documents:
            for result in results:
                result["text"] = documents[result["corpus_id"]]
        results.sort(key=lambda r: r["score"], reverse=True)
        return results[:top_k]

    def iterative_scores(self, query: str, documents: Sequence[str], **predict_kwargs: Any) -> list[float]:
        """ListConRanker's iterative inference (see :meth:`rank`): one final score per document, by index."""

        def score_list(indices: list[int]) -> Sequence[float]:
            return self.predict([(query, documents[i]) for i in indices], **predict_kwargs).tolist()

        return iterative_scores(score_list, len(documents))
