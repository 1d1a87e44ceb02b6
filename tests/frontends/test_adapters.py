"""The shared adapter layer (``rerank_plugins.adapters``).

Each framework adapter must import with the other framework missing: checked in a subprocess whose import
system refuses the other framework.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from support import BAD_IDS, BAD_OPTIONS, CORPUS, DOCUMENTS, with_numpy_scores

from rerank_plugins import CrossEncoder
from rerank_plugins.adapters import RerankOptions, arerank, check_options, load_model, rerank


def pairs_of(ranked: list[Any]) -> list[tuple[int, float]]:
    return [(hit.index, hit.score) for hit in ranked]


# -- rerank_plugins.adapters --------------------------------------------------------------------------------------
def test_rerank_is_rank_then_threshold_then_top_n(load_tiny: Callable[..., CrossEncoder]) -> None:
    model = load_tiny("monot5")
    query = "what is the capital of france"
    full = [(r["corpus_id"], r["score"]) for r in model.rank(query, CORPUS)]
    assert pairs_of(rerank(model, query, CORPUS)) == full
    threshold = full[6][1]
    assert pairs_of(rerank(model, query, CORPUS, score_threshold=threshold)) == [p for p in full if p[1] >= threshold]
    assert pairs_of(rerank(model, query, CORPUS, score_threshold=threshold, top_n=3)) == full[:3]
    assert pairs_of(rerank(model, query, CORPUS, score_threshold=threshold, top_n=20)) == full[:7]
    assert rerank(model, query, CORPUS, score_threshold=full[0][1] + 1) == []
    assert pairs_of(asyncio.run(arerank(model, query, CORPUS, top_n=2))) == full[:2]
    assert all(hit.text == CORPUS[hit.index] for hit in rerank(model, query, CORPUS))


def test_rerank_of_nothing_calls_no_model(
    load_tiny: Callable[..., CrossEncoder], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = load_tiny("monot5")
    monkeypatch.setattr(model, "rank", lambda *a, **k: pytest.fail("rank was called"))
    assert rerank(model, "q", []) == []


def test_rerank_returns_python_numbers(load_tiny: Callable[..., CrossEncoder], monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_tiny("monot5")
    with_numpy_scores(model, monkeypatch)
    ranked = rerank(model, "q", DOCUMENTS)
    assert all(type(hit.index) is int and type(hit.score) is float for hit in ranked)


def test_options_are_checked(load_tiny: Callable[..., CrossEncoder]) -> None:
    model = load_tiny("monot5")
    with pytest.raises(ValueError, match="listwise"):
        check_options(model, iterative=True, rank_kwargs={})
    with pytest.raises(ValueError, match="top_k"):
        check_options(model, iterative=False, rank_kwargs={"top_k": 2})
    check_options(load_tiny("listconranker"), iterative=True, rank_kwargs={"show_progress_bar": False})
    with pytest.raises(TypeError, match="query"):
        rerank(model, None, ["a"])  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "value", "error"), BAD_OPTIONS, ids=BAD_IDS)
def test_bad_options_are_refused_by_name(
    name: str, value: Any, error: type[Exception], load_tiny: Callable[..., CrossEncoder]
) -> None:
    model = load_tiny("monot5")
    with pytest.raises(error, match=name):  # a pydantic ValidationError is a ValueError that names the field
        RerankOptions(**{name: value})
    with pytest.raises(error, match=name):
        rerank(model, "q", ["a", "b"], **{name: value})
    options = RerankOptions()
    setattr(options, name, value)  # no validation on assignment: scoring checks again
    with pytest.raises(error, match=name):
        options.rank_texts(model, "q", ["a", "b"])


def test_good_options_keep_their_meaning(load_tiny: Callable[..., CrossEncoder]) -> None:
    model = load_tiny("monot5")
    full = rerank(model, "q", CORPUS)
    assert rerank(model, "q", CORPUS, score_threshold=float("-inf")) == full  # infinite thresholds are thresholds
    assert rerank(model, "q", CORPUS, score_threshold=float("inf")) == []
    assert RerankOptions(top_n=np.int64(3), score_threshold=np.float32(0.5), batch_size=np.int32(4)).top_n == 3
    assert RerankOptions(top_n=np.int64(3)).rank_texts(model, "q", CORPUS) == full[:3]


@pytest.mark.parametrize(
    "texts", ["a string", b"bytes", {"a": 1, "b": 2}, {"a", "b"}], ids=["str", "bytes", "dict", "set"]
)
def test_texts_must_be_a_list_not_a_str_or_mapping(texts: Any, load_tiny: Callable[..., CrossEncoder]) -> None:
    model = load_tiny("monot5")
    with pytest.raises(TypeError, match="texts must be a list of str"):
        rerank(model, "q", texts)
    with pytest.raises(TypeError, match="texts must be a list of str"):
        asyncio.run(arerank(model, "q", texts))
    with pytest.raises(TypeError, match="Text 1"):
        rerank(model, "q", ["a", 2])  # type: ignore[list-item]
    assert len(rerank(model, "q", ("a", "b"))) == 2  # any sequence of str


def test_load_model(load_tiny: Callable[..., CrossEncoder], tiny_paths: dict[str, str]) -> None:
    model = load_tiny("monot5")
    assert load_model(model) is model
    with pytest.raises(ValueError, match="device"):
        load_model(model, device="cpu")
    with pytest.raises(TypeError, match="top_k"):
        load_model(tiny_paths["monot5"], top_k=3)
    with pytest.raises(TypeError, match="model="):
        load_model(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["monot5", "listconranker"])
def test_concurrent_calls_on_one_model_equal_sequential(load_tiny: Callable[..., CrossEncoder], kind: str) -> None:
    """No lock: four threads and an event loop scoring with one model at once get the sequential rankings."""
    model = load_tiny(kind)
    jobs = [(f"{query} {i}", CORPUS[i:] + CORPUS[:i]) for i, query in enumerate(["q a", "q b", "q c", "q d"])]
    expected = [rerank(model, query, texts) for query, texts in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda job: rerank(model, *job), jobs * 2))

    async def gathered() -> list[list[Any]]:
        return list(await asyncio.gather(*(arerank(model, query, texts) for query, texts in jobs)))

    for got, want in zip([*threaded, *asyncio.run(gathered())], expected * 3, strict=True):
        assert [hit.index for hit in got] == [hit.index for hit in want]
        assert [hit.score for hit in got] == pytest.approx([hit.score for hit in want], abs=1e-6)


# -- each adapter imports without the other framework -------------------------------------------------------------
BLOCK = """import importlib, sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is hidden for this test", name=name)
        return None

sys.meta_path.insert(0, Refuse())
for blocked in BLOCKED:
    try:
        importlib.import_module(blocked)
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit(f"the block did not hide {blocked}")
module = importlib.import_module(MODULE)
getattr(module, CLASS)
loaded = sorted({name.split(".")[0] for name in sys.modules} & set(BLOCKED))
assert not loaded, loaded
print("ok")
"""


ISOLATION = [
    ("rerank_plugins.langchain", "RerankCompressor", ["llama_index", "llama_index_instrumentation"]),
    ("rerank_plugins.llama_index", "RerankPostprocessor", ["langchain_core", "langchain_classic", "langchain"]),
]


def test_each_adapter_imports_without_the_other_framework() -> None:
    processes = [  # both at once: each pays for importing torch and transformers
        subprocess.Popen(
            [sys.executable, "-c", f"MODULE, CLASS, BLOCKED = {module!r}, {cls!r}, {blocked!r}\n{BLOCK}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for module, cls, blocked in ISOLATION
    ]
    for (module, _, _), process in zip(ISOLATION, processes, strict=True):
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, f"{module}: {stderr[-2000:]}"
        assert stdout.strip().endswith("ok")
