"""Shared fixtures: tiny offline models of every family, built once per test session."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in the tests may reach a hub
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import importlib
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from transformers.utils import logging as hf_logging

from rerank_plugins import CrossEncoder
from rerank_plugins.testing import FAMILY_BUILDERS, build_tiny_model

hf_logging.disable_progress_bar()

DATA = Path(__file__).parent / "data"

# kind -> the family= that loads it (None: detected from the checkpoint itself)
KIND_FAMILY: dict[str, str | None] = {
    "monot5": None,
    "sequence-classification": None,
    "sequence-classification-2": "sequence-classification",
    "deberta": "sequence-classification",
    "query-likelihood": "query-likelihood",
    "llama": "query-likelihood",
    "listconranker": None,
    "qwen3-reranker": "qwen3-reranker",  # a bare causal LM without family= is logit-score (sentence-transformers')
    "mxbai-rerank-v2": "mxbai-rerank-v2",
    "bge-llm-reranker": "bge-llm-reranker",
}
assert set(KIND_FAMILY) == set(FAMILY_BUILDERS)


def import_inranker() -> ModuleType:
    """The authors' ``inranker`` package, for the parity test.

    ``./dev`` installs it into ``<venv>/inranker``, outside site-packages: its pinned dependencies (torch 2.1,
    transformers 4.27) would make pip report the environment broken. ``./dev test`` sets
    ``RERANK_PLUGINS_REQUIRE_INRANKER=1``, so there a missing package fails instead of skipping.
    """
    where = str(Path(sys.prefix) / "inranker")
    if Path(where).is_dir() and where not in sys.path:
        sys.path.append(where)
    if os.environ.get("RERANK_PLUGINS_REQUIRE_INRANKER") == "1":
        module = importlib.import_module("inranker")
    else:
        module = pytest.importorskip("inranker")
    import transformers
    from packaging.version import Version

    if Version(transformers.__version__) < Version("5.3"):
        # inranker's greedy_decode calls prepare_inputs_for_generation(use_cache=True) without cache_position,
        # which transformers 5.0-5.2 index (generation/utils.py, _cache_dependant_input_preparation; gone in 5.3).
        pytest.skip(f"inranker 1.1.0 cannot run on transformers {transformers.__version__} (needs >= 5.3)")
    return module


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a server the test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


QUERIES = ["what is the capital of france", "how do vaccines work", "who wrote to kill a mockingbird"]
DOCUMENTS = [
    "Paris is the capital and largest city of France.",
    "The stock market fell sharply on Monday.",
    "Vaccines train the immune system to recognise a pathogen.",
    "Harper Lee wrote the novel in 1960; it won the Pulitzer Prize for Fiction.",
    "Rain forms when water vapour condenses into droplets heavy enough to fall.",
    "",
    "The recipe needs flour, sugar, eggs, butter and a pinch of salt.",
    "Berlin had a population of 3,520,031 in 2019 and is known for its museums.",
]


@pytest.fixture
def pairs() -> list[tuple[str, str]]:
    """24 (query, document) pairs: every query with every document, one empty document included."""
    return [(q, d) for q in QUERIES for d in DOCUMENTS]
