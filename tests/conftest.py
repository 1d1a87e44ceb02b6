"""Fixtures and environment: nothing reaches a hub, and tiny offline models of every family are built once.

Shared constants and helpers live in support.py; test files import that, never this module.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in the tests may reach a hub
os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"  # nor Haystack's usage telemetry
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import DOCUMENTS, KIND_FAMILY, QUERIES, tiny_kind
from transformers.utils import logging as hf_logging

from rerank_plugins import CrossEncoder
from rerank_plugins.registry import lookup
from rerank_plugins.testing import build_tiny_model

hf_logging.disable_progress_bar()


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one torch thread is much faster than contended threads."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """kind -> directory of a tiny random model of that kind (see ``rerank_plugins.testing``)."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {kind: build_tiny_model(kind, root / kind) for kind in KIND_FAMILY}


@pytest.fixture(scope="session")
def load_tiny(tiny_paths: dict[str, str]) -> Callable[..., CrossEncoder]:
    """Load a tiny model of ``kind`` as a ``rerank_plugins.CrossEncoder`` (loaded once, then shared)."""
    cache: dict[str, CrossEncoder] = {}

    def load(kind: str, **kwargs: object) -> CrossEncoder:
        if kwargs:
            return CrossEncoder(tiny_paths[kind], family=KIND_FAMILY[kind], device="cpu", **kwargs)
        if kind not in cache:
            cache[kind] = CrossEncoder(tiny_paths[kind], family=KIND_FAMILY[kind], device="cpu")
        return cache[kind]

    return load


@pytest.fixture
def pairs() -> list[tuple[str, str]]:
    """24 (query, document) pairs: every query with every document, one empty document included."""
    return [(q, d) for q in QUERIES for d in DOCUMENTS]


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, tiny_paths: dict[str, str], tmp_path: Path) -> None:
    """Hub ids load tiny local models with their registry entry; the working directory is empty."""
    original = CrossEncoder.__init__

    @functools.wraps(original)
    def init(
        self: CrossEncoder, model_name_or_path: Any = None, *, family: Any = None, preset: Any = None, **kw: Any
    ) -> None:
        entry = lookup(model_name_or_path) if isinstance(model_name_or_path, str) else None
        if entry is not None:
            if preset is None and family is None:
                preset = model_name_or_path
            model_name_or_path = tiny_paths[tiny_kind(model_name_or_path, entry)]
        original(self, model_name_or_path, family=family, preset=preset, **kw)

    monkeypatch.setattr(CrossEncoder, "__init__", init)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def llama_index_settings() -> Iterator[None]:
    """LlamaIndex's ``Settings`` is global: a block that sets it must not leak into other tests."""
    try:
        from llama_index.core import Settings
    except ImportError:
        yield
        return
    saved = dict(vars(Settings))
    yield
    vars(Settings).update(saved)
