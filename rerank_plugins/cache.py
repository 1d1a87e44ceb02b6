"""An opt-in, bounded score cache: repeated (query, document) pairs cost nothing the second time.

Keys hold the model's identity, the activation, the window settings and, for listwise models, the whole
candidate list (a ListConRanker score depends on it). Least recently used entries go first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable


class ScoreCache:
    """A thread-safe LRU map from score keys to floats, at most ``max_entries`` long.

    One cache may be shared by several models: the model's identity is part of every key.
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
