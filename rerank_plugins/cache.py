"""An opt-in, bounded score cache: repeated (query, document) pairs cost nothing the second time.

Keys hold everything a score depends on (:func:`settings_key`: the model instance and its weights version, every
module's configuration, the activation with its parameters, the window, the other ``predict`` options) and, for
listwise models, the whole candidate list (a ListConRanker score depends on it). Least recently used entries go
first.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from torch import nn


class ScoreCache:
    """A thread-safe LRU map from score keys to floats, at most ``max_entries`` long.

    One cache may be shared by several models: the model instance is part of every key, so two models (or one
    model before and after training) never serve each other's scores.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be positive, got {max_entries}.")
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, float] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> float | None:
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: float) -> None:
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


def settings_key(model: Any, window: Any, options: Mapping[str, Any]) -> Hashable:
    """Everything about one ``predict`` call, besides the pairs, that a score depends on.

    The model instance and its weights version (bumped by training and quantization), family, dtype, device,
    length limit and every module's configuration (``family_options``: templates, answer tokens, truncation),
    the activation, the window, and every other ``predict`` option.
    """
    activation = options.get("activation_fn")
    modules = json.dumps([m.get_config_dict() for m in model if hasattr(m, "get_config_dict")], default=repr)
    other = tuple(sorted((k, repr(v)) for k, v in options.items() if k not in ("activation_fn", "show_progress_bar")))
    return (
        model.cache_identity,
        model.weights_version,
        model.family,
        str(model.dtype),
        str(model.device),
        model.max_seq_length,
        modules,
        activation_key(activation if activation is not None else model.activation_fn),
        window,
        other,
    )


def cached_scores(
    model: Any,
    cache: ScoreCache,
    pairs: list,
    window: Any,
    options: dict[str, Any],
    score: Callable[[list, Any, dict[str, Any]], Any],
) -> list[float]:
    """Every pair's score from ``cache``; only the misses go to ``score(pairs, window, options)``.

    A listwise model's key holds the list's documents, and a miss re-scores its whole list: a partial list
    would give other scores.
    """
    settings = settings_key(model, window, options)
    if model.is_listwise:
        lists: dict[str, list[str]] = {}
        for query, document in pairs:
            lists.setdefault(query, []).append(document)
        digests = {query: hash(tuple(sorted(documents))) for query, documents in lists.items()}
        keys: list[tuple] = [(settings, q, d, digests[q]) for q, d in pairs]
    else:
        keys = [(settings, q, d) for q, d in pairs]
    found = [cache.get(key) for key in keys]
    missing = [i for i, value in enumerate(found) if value is None]
    if missing and model.is_listwise:
        stale = {pairs[i][0] for i in missing}
        missing = [i for i, (query, _) in enumerate(pairs) if query in stale]
    if missing:
        fresh = score([pairs[i] for i in missing], window, options).float().cpu().tolist()
        for i, value in zip(missing, fresh, strict=True):
            cache.put(keys[i], value)
            found[i] = value
    assert all(value is not None for value in found)
    return [float(value) for value in found]  # type: ignore[arg-type]
