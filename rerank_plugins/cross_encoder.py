"""``rerank_plugins.CrossEncoder``: a sentence-transformers ``CrossEncoder`` that scores as the authors do.

It only chooses the modules (which family, with which settings) and adds what pointwise batching cannot
express: input checks, one truncation warning per call, whole-list scoring for listwise models, and the
ListConRanker's iterative inference. Length-sorted batching, activation, devices, evaluators, save/load and
training are sentence-transformers' own.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from sentence_transformers import CrossEncoder as STCrossEncoder
from sentence_transformers.base.modules import Dense, Transformer
from sentence_transformers.util import batch_to_device, load_file_path
from torch import nn
from tqdm.autonotebook import tqdm
from transformers import AutoConfig

from rerank_plugins.cache import ScoreCache
from rerank_plugins.registry import RegistryEntry, check_family, check_preset, lookup
from rerank_plugins.scoring import SCORING_MODULES, ListConRankerScore, ScoringModule
from rerank_plugins.scoring.base import file_kwargs, single_texts, truncated_rows
from rerank_plugins.windows import Window, aggregate, as_window, first_tokens, split_document

logger = logging.getLogger(__name__)

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
    "log-sigmoid": nn.LogSigmoid,
}
FAMILY_ACTIVATION = {"monot5": "sigmoid", "listconranker": "sigmoid", "query-likelihood": "identity"}
ITERATIVE_KEEP = 20  # ListConRanker's iterative inference stops filtering at 20 passages


def detect_family(model_name_or_path: str, hub: dict[str, Any]) -> str | None:
    """The family a checkpoint's own files declare, or None for sentence-transformers' default."""
    for name in ("list_transformer.safetensors", "list_transformer.pt"):
        if load_file_path(model_name_or_path, name, **file_kwargs(hub)) is not None:
            return "listconranker"
    config = AutoConfig.from_pretrained(
        model_name_or_path,
        token=hub.get("token"),
        revision=hub.get("revision"),
        cache_dir=hub.get("cache_folder"),
        local_files_only=bool(hub.get("local_files_only")),
        trust_remote_code=bool(hub.get("trust_remote_code")),
    )
    if getattr(config, "is_encoder_decoder", False) or config.model_type in ("t5", "mt5", "umt5"):
        return "monot5"
    return None


def label_margin() -> Dense:
    """``logit[1] - logit[0]`` of a two-label classifier, as sentence-transformers' own ``Dense`` module.

    ``softmax(logits)[:, 1] == sigmoid(logit[1] - logit[0])`` exactly, so after this module ``predict`` (sigmoid)
    returns P(relevant) as one score per pair and ``rank`` works; plain sentence-transformers reloads it as is.
    """
    return Dense(
        2, 1, bias=False, activation_function=None, init_weight=torch.tensor([[-1.0, 1.0]]), module_input_name="scores"
    )


def _is_label_margin(module: nn.Module) -> bool:
    return (
        isinstance(module, Dense)
        and module.module_input_name == "scores"
        and module.in_features == 2
        and module.out_features == 1
        and torch.equal(module.linear.weight.detach().float().cpu(), torch.tensor([[-1.0, 1.0]]))
    )


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


class CrossEncoder(STCrossEncoder):
    """A drop-in ``sentence_transformers.CrossEncoder`` whose scores are the published rerankers' own.

    Args:
        model_name_or_path: a hub id or a local directory.
        family: force a scoring family (``"monot5"``, ``"sequence-classification"``, ``"query-likelihood"``,
            ``"listconranker"``).
        preset: a registry id whose settings to apply, e.g. to a local copy of ``"unicamp-dl/InRanker-base"``.
        family_options: options of the family's scoring module, over the registry's: e.g.
            ``{"true_token": "▁yes", "false_token": "▁no"}`` for an mT5 monoT5, ``{"template": ...}``,
            ``{"truncation": "only_second"}`` for a sequence classifier.
        score_cache: opt-in: a :class:`~rerank_plugins.cache.ScoreCache` (may be shared between models) or a
            maximum number of entries; repeated pairs are then not scored again. Off by default.
        **kwargs: every ``sentence_transformers.CrossEncoder`` argument (``device``, ``max_length``,
            ``activation_fn``, ``model_kwargs={"dtype": ...}``, ``trust_remote_code``, ...).

    The family is taken, in order, from ``family=``, ``preset=``, the registry (hub ids), the checkpoint
    itself (T5 -> monoT5; ListConRanker files -> listwise; a saved rerank-plugins model reloads as saved),
    and otherwise sentence-transformers' own default, so ordinary cross-encoders keep working.
    """

    # Our own saved modules load without trust_remote_code: they are this package's code, not the hub's.
    _module_classes: Mapping[str, type[nn.Module]] = MappingProxyType(
        {f"{cls.__module__}.{cls.__qualname__}": cls for cls in SCORING_MODULES.values()}
    )
    _registry_entry: RegistryEntry | None
    _requested_family: str | None
    _source: str | None
    _family_options: dict[str, Any]
    _truncated_pairs: int
    score_cache: ScoreCache | None

    def __init__(
        self,
        model_name_or_path: str | None = None,
        *,
        family: str | None = None,
        preset: str | None = None,
        family_options: dict[str, Any] | None = None,
        score_cache: ScoreCache | int | None = None,
        **kwargs: Any,
    ) -> None:
        entry = check_preset(preset) if preset is not None else None
        if family is not None:
            check_family(family)
        if entry is None and model_name_or_path is not None:
            entry = lookup(model_name_or_path)
            if entry is not None and family is not None and entry.family != family:
                entry = None  # an explicit family overrides the registry
        if entry is not None and entry.needs_remote_code and not kwargs.get("trust_remote_code"):
            raise ValueError(
                f"{model_name_or_path!r} only loads with its authors' remote code. Read that code, then pass "
                "trust_remote_code=True to load it."
            )
        # Plain attributes set before nn.Module.__init__: read while the modules load.
        object.__setattr__(self, "_registry_entry", entry)
        object.__setattr__(self, "_requested_family", family or (entry.family if entry else None))
        object.__setattr__(self, "_truncated_pairs", 0)
        object.__setattr__(self, "_source", model_name_or_path)
        object.__setattr__(self, "_family_options", {**(entry.options if entry else {}), **(family_options or {})})
        super().__init__(model_name_or_path, **kwargs)
        self.score_cache = ScoreCache(score_cache) if isinstance(score_cache, int) else score_cache
        margin = [f"{name}.linear" for name, module in self.named_children() if _is_label_margin(module)]
        if margin and not set(margin) <= set(self.keep_in_fp32_modules or []):
            # The margin of two bf16/fp16 logits would tie: compute it in fp32, as sentence-transformers can.
            self.set_keep_in_fp32_modules([*(self.keep_in_fp32_modules or []), *margin])

    # -- which modules --------------------------------------------------------------------------------------
    @property
    def family(self) -> str:
        """The scoring family of the loaded modules."""
        first = self[0]
        return first.family if isinstance(first, ScoringModule) else "sequence-classification"

    @property
    def is_listwise(self) -> bool:
        """True when a document's score depends on the other documents of its list."""
        return isinstance(self[0], ListConRankerScore)

    def _load_modules(self, model_name_or_path: str, **kwargs: Any) -> tuple[Any, dict[str, Any]]:  # type: ignore[override]
        if self._requested_family is not None:  # family=, preset= or the registry win over a saved modules.json
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
    ) -> tuple[list[nn.Module] | OrderedDict[str, nn.Module], dict[str, Any]]:
        hub: dict[str, Any] = {
            "token": token,
            "cache_folder": cache_folder,
            "revision": revision,
            "trust_remote_code": trust_remote_code,
            "local_files_only": local_files_only,
        }
        family = self._requested_family or detect_family(model_name_or_path, hub)
        entry: RegistryEntry | None = self._registry_entry
        options = dict(self._family_options)
        tokenizer = self._fallback_tokenizer(model_name_or_path, entry, hub)
        if family in SCORING_MODULES:
            module = SCORING_MODULES[family](
                model_name_or_path,
                **options,
                tokenizer_name_or_path=tokenizer,
                model_kwargs=model_kwargs,
                processor_kwargs=processor_kwargs,
                config_kwargs=config_kwargs,
                **hub,
            )
            return [module], {}
        if family is None:  # sentence-transformers' own choice (sequence classifier, or a causal LM yes/no)
            return super()._load_default_modules(
                model_name_or_path, token, cache_folder, revision, trust_remote_code, local_files_only,
                model_kwargs, processor_kwargs, config_kwargs,
            )  # fmt: skip
        shared = {"token": token, "revision": revision, "local_files_only": local_files_only,
                  "trust_remote_code": trust_remote_code}  # fmt: skip
        truncation = options.pop("truncation", None)
        if options:
            raise ValueError(f"Unknown family_options {sorted(options)} for sequence classification: use 'truncation'.")
        transformer = Transformer(
            model_name_or_path,
            transformer_task="sequence-classification",
            cache_dir=cache_folder,
            model_kwargs={**shared, **(model_kwargs or {})},
            processor_kwargs={**shared, **(processor_kwargs or {})},
            config_kwargs={**shared, **(config_kwargs or {})},
            backend=self.backend,
            tokenizer_name_or_path=tokenizer,
            processing_kwargs={"text": {"truncation": truncation}} if truncation else None,
        )
        modules: list[nn.Module] = [transformer]
        if transformer.model.config.num_labels == 2:
            modules.append(label_margin())
        return modules, {}

    @staticmethod
    def _fallback_tokenizer(path: str, entry: RegistryEntry | None, hub: dict[str, Any]) -> str | None:
        """The registry's tokenizer source when the checkpoint ships no tokenizer of its own."""
        if entry is None or entry.fallback_tokenizer is None:
            return None
        if load_file_path(path, "tokenizer_config.json", **file_kwargs(hub)) is not None:
            return None
        logger.info("%s ships no tokenizer; using %s as its authors do.", path, entry.fallback_tokenizer)
        return entry.fallback_tokenizer

    def get_default_activation_fn(self) -> Callable:
        entry: RegistryEntry | None = getattr(self, "_registry_entry", None)
        if entry is not None and entry.activation is not None:
            return ACTIVATIONS[entry.activation]()
        if self.family in FAMILY_ACTIVATION:
            return ACTIVATIONS[FAMILY_ACTIVATION[self.family]]()
        return super().get_default_activation_fn()

    @property
    def num_labels(self) -> int:
        if isinstance(self[-1], ScoringModule):
            return 1  # one relevance score per pair
        return super().num_labels

    # -- inference ----------------------------------------------------------------------------------------
    def preprocess(self, inputs: Any, prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        if single_texts(inputs):  # one dataset column (the model card's statistics): no pairs, nothing to count
            return super().preprocess(inputs, prompt=prompt, **kwargs)
        first, max_length = self[0], self.max_seq_length
        cuts_documents_first = (
            isinstance(first, Transformer)
            and first.processing_kwargs.get("text", {}).get("truncation") == "only_second"
        )
        cut: set[int] = set()
        if cuts_documents_first and max_length:  # xpmir: the document is cut first; a query keeps at most half
            limit = max_length // 2
            capped = [(first_tokens(self.tokenizer, query, limit), document) for query, document in inputs]
            cut = {i for i, (pair, new) in enumerate(zip(inputs, capped, strict=True)) if pair[0] != new[0]}
            inputs = capped
        features = super().preprocess(inputs, prompt=prompt, **kwargs)
        if isinstance(first, Transformer) and "attention_mask" in features and prompt is None and self.max_seq_length:
            pairs = [tuple(pair) for pair in inputs]
            cut.update(truncated_rows(first.tokenizer, pairs, features["attention_mask"], self.max_seq_length))
        self._truncated_pairs += len(cut)
        return features

    def _inference(self, inputs: list, **kwargs: Any) -> torch.Tensor:
        """sentence-transformers' scoring step, after input checks; ``window=`` and the cache wrap it."""
        window = as_window(kwargs.pop("window", None))
        validate_pairs(inputs)
        if self.score_cache is not None and self.num_labels == 1 and inputs:
            return self._cached_inference(inputs, window, **kwargs)
        return self._windowed_inference(inputs, window, **kwargs)

    def _windowed_inference(self, inputs: list, window: Window | None, **kwargs: Any) -> torch.Tensor:
        """Each document split into windows, every window scored, one aggregated score per pair."""
        if window is None:
            return self._score(inputs, **kwargs)
        if self.num_labels != 1:
            raise ValueError("window= needs one score per pair; this model has several labels.")
        flat, owners = [], []
        for index, (query, document) in enumerate(inputs):
            for piece in split_document(self.tokenizer, document, window):
                flat.append((query, piece))
                owners.append(index)
        scores = self._score(flat, **kwargs)
        return aggregate(scores.float(), owners, len(inputs), window.aggregate)

    def _score(self, inputs: list, **kwargs: Any) -> torch.Tensor:
        """Score pairs (listwise models: each query's pairs as one list), then warn once about truncation."""
        self._truncated_pairs = 0
        first = self[0]
        if isinstance(first, ScoringModule):
            first.truncated = 0
        if self.is_listwise:
            scores = self._listwise_inference(inputs, **kwargs)
        else:
            scores = super()._inference(inputs, **kwargs)
        truncated = self._truncated_pairs + (first.truncated if isinstance(first, ScoringModule) else 0)
        if truncated:
            logger.warning(
                "%d of %d inputs were longer than max_length=%d tokens and were truncated as the %s family "
                "does. Pass a larger max_length if the model allows it, or window= to score long documents "
                "in windows.",
                truncated, len(inputs), self.max_seq_length, self.family,
            )  # fmt: skip
        return scores

    def _cached_inference(self, inputs: list, window: Window | None, **kwargs: Any) -> torch.Tensor:
        """Look every pair up in the score cache; score only the misses (listwise: their whole lists)."""
        cache = self.score_cache
        assert cache is not None
        keys = self._cache_keys(inputs, window, kwargs.get("activation_fn"))
        found = [cache.get(key) for key in keys]
        missing = [i for i, value in enumerate(found) if value is None]
        if missing and self.is_listwise:  # a partial list would change the scores: re-score whole lists
            stale = {inputs[i][0] for i in missing}
            missing = [i for i, (query, _) in enumerate(inputs) if query in stale]
        if missing:
            fresh = self._windowed_inference([inputs[i] for i in missing], window, **kwargs).float().cpu().tolist()
            for i, value in zip(missing, fresh, strict=True):
                cache.put(keys[i], value)
                found[i] = value
        device = self._resolve_inference_device(kwargs.get("device"))
        return torch.tensor(found, dtype=torch.float32, device=device)

    def _cache_keys(self, inputs: list, window: Window | None, activation_fn: Callable | None) -> list[tuple]:
        activation = activation_fn if activation_fn is not None else self.activation_fn
        model = (self._source or id(self), self.family, str(self.dtype), self.max_seq_length)
        settings = (model, type(activation).__qualname__, window)
        if not self.is_listwise:
            return [(settings, query, document) for query, document in inputs]
        lists: dict[str, list[str]] = {}
        for query, document in inputs:
            lists.setdefault(query, []).append(document)
        digests = {query: hash(tuple(sorted(documents))) for query, documents in lists.items()}
        return [(settings, query, document, digests[query]) for query, document in inputs]

    @torch.inference_mode()
    def _listwise_inference(
        self,
        inputs: list,
        *,
        batch_size: int,
        show_progress_bar: bool,
        activation_fn: Callable | None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Score each query's list as a whole; ``batch_size`` bounds the texts per encoder forward only."""
        device = self._resolve_inference_device(device)
        self.eval()
        lists: dict[str, list[int]] = {}
        for index, (query, _) in enumerate(inputs):
            lists.setdefault(query, []).append(index)
        scores = torch.empty(len(inputs), dtype=torch.float32, device=device)
        for members in tqdm(lists.values(), desc="Lists", disable=not show_progress_bar):
            features = batch_to_device(self.preprocess([inputs[i] for i in members]), device)
            features["encode_batch_size"] = batch_size  # per call: the module itself is never mutated
            list_scores = self(features)["scores"].float()
            if activation_fn is not None:
                list_scores = activation_fn(list_scores)
            scores[torch.tensor(members, device=device)] = list_scores.reshape(-1)
        return scores

    def rank(  # type: ignore[override]
        self,
        query: str,
        documents: Sequence[str],
        top_k: int | None = None,
        return_documents: bool = False,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Callable | None = None,
        *,
        iterative: bool = False,
        window: Window | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """``sentence_transformers.CrossEncoder.rank``, plus ``window=`` for long documents and ``iterative=True``.

        ``window=Window(size, stride, aggregate)`` (or ``True``) scores long documents in overlapping windows.

        ``iterative=True`` runs the authors' iterative inference: while more than 20 passages remain, score
        them, drop the lowest ``max(ceil(0.2 n), 10)`` (and exact ties) with ``score + round``, and re-score
        the rest; the last 20 or fewer get ``score + final round``. Results are keyed by index, not by text.
        """
        if not isinstance(query, str):
            raise TypeError(f"The query must be a str, got {type(query).__name__}.")
        if iterative:
            if not self.is_listwise:
                raise ValueError(f"iterative=True is ListConRanker's inference; this model is {self.family!r}.")
            final = self.iterative_scores(
                query, documents, batch_size=batch_size, activation_fn=activation_fn, window=window
            )
        elif window is not None:
            final = self.predict(
                [(query, document) for document in documents], batch_size=batch_size,
                show_progress_bar=show_progress_bar, activation_fn=activation_fn, window=window, **kwargs,
            ).tolist()  # fmt: skip
        else:
            return super().rank(  # type: ignore[return-value]
                query, documents, top_k=top_k, return_documents=return_documents, batch_size=batch_size,
                show_progress_bar=show_progress_bar, activation_fn=activation_fn, **kwargs,
            )  # fmt: skip
        results: list[dict[str, Any]] = [{"corpus_id": i, "score": float(s)} for i, s in enumerate(final)]
        if return_documents:
            for result in results:
                result["text"] = documents[result["corpus_id"]]
        results.sort(key=lambda r: r["score"], reverse=True)
        return results[:top_k]

    def iterative_scores(
        self,
        query: str,
        documents: Sequence[str],
        batch_size: int = 32,
        activation_fn: Callable | None = None,
        window: Window | dict[str, Any] | bool | None = None,
    ) -> list[float]:
        """ListConRanker's iterative inference (see :meth:`rank`): one final score per document, by index."""
        remaining = list(range(len(documents)))
        final = [0.0] * len(documents)
        round_ = 0
        while len(remaining) > ITERATIVE_KEEP:
            scores = self._list_scores(query, documents, remaining, batch_size, activation_fn, window)
            order = np.argsort(scores, kind="stable")  # ascending: the lowest are dropped first
            cut = max(math.ceil(0.2 * len(remaining)), 10)
            while cut < len(order) and scores[order[cut - 1]] == scores[order[cut]]:
                cut += 1  # exact ties of the last dropped passage go with it
            for j in order[:cut]:
                final[remaining[j]] = float(scores[j]) + round_
            remaining = [remaining[j] for j in order[cut:]]  # survivors, in ascending score order as the authors
            round_ += 1
        if remaining:
            scores = self._list_scores(query, documents, remaining, batch_size, activation_fn, window)
            for j, index in enumerate(remaining):
                final[index] = float(scores[j]) + round_
        return final

    def _list_scores(
        self,
        query: str,
        documents: Sequence[str],
        indices: list[int],
        batch_size: int,
        activation_fn: Callable | None,
        window: Window | dict[str, Any] | bool | None,
    ) -> np.ndarray:
        pairs = [(query, documents[i]) for i in indices]
        return np.asarray(self.predict(pairs, batch_size=batch_size, activation_fn=activation_fn, window=window))
