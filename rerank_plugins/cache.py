"""An opt-in, bounded score cache: repeated (query, document) pairs cost nothing the second time.

Keys hold everything a score depends on (:func:`request_key`: the model instance and its weights version, every
module's configuration, the request's activation with its parameters, prompt, window and other options, its
query) and, for listwise models, the whole candidate list of the request (a ListConRanker score depends on it).
The request core (``rerank_plugins.core.ranking``) looks scores up and stores them. Least recently used entries
go first.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from torch import nn


class ScoreCache:
    """A thread-safe LRU map from score keys to scores (a float, or a listwise list's tuple), at most
    ``max_entries`` long.

    One cache may be shared by several models: the model instance is part of every key, so two models (or one
    model before and after training) never serve each other's scores.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be positive, got {max_entries}.")
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, documents: int = 1) -> Any:
        """The entry of ``key`` or None; ``hits``/``misses`` count ``documents`` (a listwise list counts all its)."""
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += documents
                return None
            self._entries.move_to_end(key)
            self.hits += documents
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"ScoreCache(entries={len(self)}/{self.max_entries}, hits={self.hits}, misses={self.misses})"


def activation_key(activation: Callable[..., Any] | None) -> Hashable:
    """A key that changes whenever the activation would change a score.

    A module is keyed by its class, its repr (e.g. ``Softplus(beta=2.0)``), its public attributes and its
    parameters; any other callable by itself (identity: two lambdas never share entries). A callable that cannot
    be hashed cannot be keyed, so it is refused rather than risking another configuration's scores.
    """
    if activation is None:
        return None
    if isinstance(activation, nn.Module):
        attributes = tuple(sorted((k, repr(v)) for k, v in vars(activation).items() if not k.startswith("_")))
        tensors = tuple((k, v.detach().cpu().numpy().tobytes()) for k, v in activation.state_dict().items())
        return (
            "module",
            type(activation).__module__,
            type(activation).__qualname__,
            repr(activation),
            attributes,
            tensors,
        )
    try:
        hash(activation)
    except TypeError as error:
        raise ValueError(
            f"score_cache cannot key activation_fn={activation!r} (it is not hashable); pass an nn.Module or a "
            "function, or use a model without score_cache."
        ) from error
    return ("callable", activation)


def request_key(model: Any, request: Any) -> Hashable:
    """Everything about a request, besides its query and documents, that its scores depend on.

    The model instance and its weights version (bumped by training and quantization), family, dtype, device,
    length limit and every module's configuration (``family_options``: templates, answer tokens, truncation),
    then the request's options: its activation (or the model's), prompt, window, document cut and mode. The
    request core keys a pointwise document by ``(this, query, document)`` and a listwise list by
    ``(this, query, documents)``: the whole list, since every score in it depends on the others.
    """
    options = request.options
    activation = options.activation if options.activation is not None else model.activation_fn
    modules = json.dumps([m.get_config_dict() for m in model if hasattr(m, "get_config_dict")], default=repr)
    return (
        model.cache_identity,
        model.weights_version,
        model.family,
        str(model.dtype),
        str(model.device),
        model.max_seq_length,
        modules,
        activation_key(activation),
        options.prompt,
        options.apply_softmax,
        options.window,
        options.max_tokens_per_doc,
        options.mode,
        request.query,
    )
