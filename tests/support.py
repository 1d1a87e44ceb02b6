"""What the test files share: repository paths, sample texts, the tiny-model kinds, and helpers.

Test files import this module (``import support`` / ``from support import ...``); fixtures live in conftest.py.
No test file imports another test file or conftest (tests/project/test_tests_layout.py checks that).
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from rerank_plugins.registry import RegistryEntry
from rerank_plugins.testing import tiny_models

ROOT = Path(__file__).resolve().parent.parent  # the repository root
DATA = ROOT / "tests" / "data"  # the TREC DL19 sample (see tests/data/README.md)


# -- sample texts and tiny models ---------------------------------------------------------------------------------
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

# Four queries with one relevant and one irrelevant passage each: the training tests' data.
TRAINING_QUERIES = ["what is the capital of france", "how do vaccines work", "who wrote the novel", "what causes rain"]
TRAINING_POSITIVES = [
    "Paris is the capital and largest city of France.",
    "Vaccines train the immune system to recognise a pathogen.",
    "Harper Lee wrote the novel in 1960; it won the Pulitzer Prize.",
    "Rain forms when water vapour condenses into droplets.",
]
TRAINING_NEGATIVES = [
    "The recipe needs flour, sugar, eggs and butter.",
    "The stock market fell sharply on Monday.",
    "Berlin had a population of 3,520,031 in 2019.",
    "The mitochondria is the powerhouse of the cell.",
]

# kind -> the family= that loads it (None: detected from the checkpoint itself), from the families' own tiny models
KIND_FAMILY: dict[str, str | None] = {
    kind: None if model.detected else spec.name for kind, (spec, model) in tiny_models().items()
}


def tiny_kind(hub_id: str, entry: RegistryEntry) -> str:
    """Which tiny model (see ``rerank_plugins.testing``) stands in for a published checkpoint."""
    if entry.family == "sequence-classification":
        return "deberta" if "deberta" in hub_id.lower() else "sequence-classification"
    if entry.family == "query-likelihood":
        return "llama" if "llama" in hub_id.lower() else "query-likelihood"
    return entry.family


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


REQUIRED_MODULES = os.environ.get("RERANK_PLUGINS_REQUIRED_MODULES", "").split()
"""Modules that ./dev installs in this environment: a test needing one fails without it instead of skipping."""


def require(module: str, reason: str | None = None) -> ModuleType:
    """``pytest.importorskip(module)``, except for a module ./dev installed here (``REQUIRED_MODULES``, or a
    submodule of one): then a failed import is an error, so that CI never skips what it set out to test."""
    if any(module == name or module.startswith(f"{name}.") for name in REQUIRED_MODULES):
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a server the test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- the code blocks of the README and docs pages -----------------------------------------------------------------
# Modules a block may need that are optional extras: without them the block is skipped, not failed.
OPTIONAL_MODULES = ("rerank_plugins.langchain", "rerank_plugins.llama_index", "langchain_classic", "llama_index")

FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
NOT_TESTED = re.compile(r"<!--\s*not-tested:(?P<reason>.*?)-->\s*$", re.DOTALL)


@dataclass(frozen=True)
class Block:
    path: str
    line: int
    lang: str
    code: str
    skip_reason: str | None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


def code_blocks(relative: str) -> Iterator[Block]:
    """The fenced code blocks of a Markdown file, each with the reason it is not tested, if marked so."""
    text = (ROOT / relative).read_text(encoding="utf-8")
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip()
        marker = NOT_TESTED.search(before[-300:])
        reason = marker.group("reason").strip() if marker else None
        if marker is not None and not reason:
            raise ValueError(f"{relative}: a not-tested marker must give its reason.")
        line = text.count("\n", 0, match.start()) + 1
        yield Block(relative, line, match.group("lang").lower(), match.group("code"), reason)


def imported_modules(code: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def skip_without_optional_modules(code: str) -> None:
    for module in sorted(imported_modules(code)):
        if module.startswith(OPTIONAL_MODULES):
            require(module, reason=f"needs {module}, which does not import here")


# -- the cases the adapter tests share (rerank_plugins.adapters, LangChain, LlamaIndex) ---------------------------
# Every family's tiny model, and ListConRanker's iterative inference too.
CASES: list[tuple[str, bool]] = [
    ("monot5", False),
    ("sequence-classification", False),
    ("sequence-classification-2", False),
    ("query-likelihood", False),
    ("listconranker", False),
    ("listconranker", True),
]
CASE_IDS = [f"{kind}{'-iterative' if iterative else ''}" for kind, iterative in CASES]

# 24 distinct texts, one empty: more than ListConRanker's 20, so that its iterative inference runs two rounds.
CORPUS: list[str] = DOCUMENTS + [f"Fact {i}: {text}" for i, text in enumerate(DOCUMENTS * 2)]
assert len(set(CORPUS)) == len(CORPUS) > 20

# (option, value, error): each must be refused with an error that names the option.
BAD_OPTIONS: list[tuple[str, Any, type[Exception]]] = [
    ("score_threshold", float("nan"), ValueError),  # no score is >= NaN: every document would be dropped
    ("score_threshold", True, TypeError),
    ("score_threshold", "0.5", TypeError),
    ("top_n", True, TypeError),  # a bool is an int in Python: True would keep one document
    ("top_n", False, TypeError),
    ("top_n", 0, ValueError),
    ("top_n", -1, ValueError),  # a slice [:-1] would drop the last document
    ("top_n", 2.5, TypeError),  # as rank(top_k=2.5)
    ("top_n", "3", TypeError),
    ("batch_size", True, TypeError),
    ("batch_size", 0, ValueError),
    ("batch_size", 2.5, TypeError),
]
BAD_IDS = [f"{name}={value!r}" for name, value, _ in BAD_OPTIONS]


class Client:
    """Stands for a database or HTTP client kept in metadata: it holds a lock, so it cannot be deep-copied."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


def expected_ranking(model: Any, query: str, texts: list[str], iterative: bool = False) -> list[tuple[str, float]]:
    """``(text, score)`` best first, straight from ``model.rank`` on the whole list: what the adapters must give."""
    options = {"iterative": True} if iterative else {}
    return [(texts[r["corpus_id"]], r["score"]) for r in model.rank(query, texts, **options)]


def assert_same_ranking(got: list[tuple[str, float]], expected: list[tuple[str, float]]) -> None:
    assert [text for text, _ in got] == [text for text, _ in expected]
    assert [score for _, score in got] == pytest.approx([score for _, score in expected], abs=1e-6)
    assert all(type(score) is float for _, score in got)


def with_numpy_scores(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``model.rank`` return numpy scalars, as other cross-encoders may: the adapters must give floats."""
    original = model.rank

    def rank(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return [
            {"corpus_id": np.int64(r["corpus_id"]), "score": np.float32(r["score"])} for r in original(*args, **kwargs)
        ]

    monkeypatch.setattr(model, "rank", rank)


# -- what a documentation example printed or returned, against rank's scores -------------------------------------
NUMBER = re.compile(r"(?<![\w.])-?\d+\.\d+(?:e[-+]?\d+)?")
SCORED_LINE = re.compile(r"^\s*(?P<score>-?\d+\.\d+)\s{2,}(?P<text>.*\S)\s*$")


ADAPTER_OUTPUTS = [
    ("rerank_plugins.langchain", "RerankCompressor", "compress_documents"),
    ("rerank_plugins.llama_index", "RerankPostprocessor", "_postprocess_nodes"),
]


class ScoreLedger:
    """Records every ``rank`` and ``predict`` call a code block makes (on any sentence-transformers cross-encoder),
    then asks each model's own ``rank`` for the same query and documents: the scores an example shows must be
    those. Calls made inside another recorded call (``rank`` -> ``predict``, the adapters -> ``rank``) are not
    recorded again: what is compared is the example's outermost call."""

    RANK_OPTIONS = ("activation_fn", "iterative", "window", "batch_size")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from sentence_transformers import CrossEncoder as STCrossEncoder

        self.calls: list[tuple[Any, str, list[str], dict[str, Any]]] = []  # model, query, documents, options
        self.returned: list[tuple[str, float]] = []  # (text, score) of what the adapters returned
        self.local = threading.local()  # call depth per thread: the async examples score in worker threads
        for cls in {STCrossEncoder, *STCrossEncoder.__subclasses__()}:
            for name in ("rank", "predict", "rank_requests"):  # rank_requests: the request core (the adapters')
                if name in vars(cls):
                    monkeypatch.setattr(cls, name, self.spy(vars(cls)[name], name))
        for module, class_name, name in ADAPTER_OUTPUTS:
            try:
                adapter = getattr(importlib.import_module(module), class_name)
            except ImportError:
                continue
            monkeypatch.setattr(adapter, name, self.keep_returned(getattr(adapter, name)))

    def keep_returned(self, method: Any) -> Any:
        def returning(adapter: Any, *args: Any, **kwargs: Any) -> Any:
            result = method(adapter, *args, **kwargs)
            for item in result:
                if hasattr(item, "page_content"):  # a LangChain document: its score in the metadata
                    self.returned.append((item.page_content, item.metadata["relevance_score"]))
                else:  # a LlamaIndex NodeWithScore
                    self.returned.append((item.node.get_content(), item.score))
            return result

        return returning

    def spy(self, method: Any, name: str) -> Any:
        def recorded(model: Any, *args: Any, **kwargs: Any) -> Any:
            depth = getattr(self.local, "depth", 0)
            self.local.depth = depth + 1
            try:
                result = method(model, *args, **kwargs)
            finally:
                self.local.depth = depth
            if depth == 0:
                self.record(model, name, args, kwargs)
            return result

        return recorded

    def record(self, model: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        options = {key: kwargs[key] for key in self.RANK_OPTIONS if key in kwargs}
        if name == "rank_requests":
            for request in args[0] if args else kwargs["requests"]:
                wanted = request.options
                options = {"activation_fn": wanted.activation, "window": wanted.window, "prompt": wanted.prompt}
                options = {key: value for key, value in options.items() if value is not None}
                if wanted.mode == "iterative":
                    options["iterative"] = True
                self.calls.append((model, request.query, list(request.documents), options))
            return
        if name == "rank":
            query = args[0] if args else kwargs["query"]
            documents = args[1] if len(args) > 1 else kwargs["documents"]
            self.calls.append((model, query, list(documents), options))
            return
        inputs = args[0] if args else kwargs["inputs"]
        pairs = [tuple(inputs)] if isinstance(inputs, (tuple, list)) and isinstance(inputs[0], str) else inputs
        by_query: dict[str, list[str]] = {}
        for query, document in pairs:
            by_query.setdefault(query, []).append(document)
        options.pop("iterative", None)
        self.calls.extend((model, query, documents, options) for query, documents in by_query.items())

    def expected(self) -> list[tuple[str, float]]:
        """(document, score) of every recorded call, by each model's own ``rank`` on the same list."""
        scored = []
        self.local.depth = 1  # these calls are the test's, not the example's
        try:
            for model, query, documents, options in self.calls:
                for hit in model.rank(query, documents, **options):
                    scored.append((documents[hit["corpus_id"]], float(hit["score"])))
        finally:
            self.local.depth = 0
        return scored

    def check(self, printed: str) -> int:
        """Every score the example printed, and every document or node an adapter returned, is rank's score for
        that document. Returns how many values were compared."""
        expected = self.expected()
        compared = 0
        for line in printed.splitlines():
            match = SCORED_LINE.match(line)
            if match:  # "0.4494  the document's text": that document's score
                shown, text = match["score"], match["text"]
                scores = [score for document, score in expected if same_text(document, text)]
                assert any(close(shown, score) for score in scores), f"{line!r}: rank gives {scores}"
                compared += 1
                continue
            for shown in NUMBER.findall(line):  # any other score: one of the scores rank gives
                if len(shown.split(".")[1].split("e")[0]) >= 3:
                    assert any(close(shown, score) for _, score in expected), f"{shown} in {line!r} is no rank score"
                    compared += 1
        for text, score in self.returned:
            scores = [value for document, value in expected if same_text(document, text)]
            assert any(abs(score - value) <= 1e-6 for value in scores), (text, score, scores)
            compared += 1
        return compared


def same_text(document: str, shown: str) -> bool:
    """A scored document and the text an example shows for it (with its metadata, or within a longer line)."""
    document, shown = document.strip(), shown.strip()
    return document == shown or (bool(document and shown) and (document in shown or shown in document))


def close(shown: str, score: float) -> bool:
    """``shown`` is ``score`` at the precision it was printed with."""
    decimals = len(shown.split(".")[1].split("e")[0]) if "." in shown and "e" not in shown else 7
    return abs(float(shown) - score) <= 0.5 * 10**-decimals + 1e-6 * max(1.0, abs(score))
