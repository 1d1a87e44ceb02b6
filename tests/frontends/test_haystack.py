"""``RerankPluginsRanker`` in real Haystack pipelines (BM25 retriever -> ranker), for every tiny model kind.

The ranker's output must be ``CrossEncoder.rank`` on the texts the retriever returned: same order, same scores,
computed here by a separately loaded model. Pipelines must survive YAML, and ``run_async`` must equal ``run``.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
import sentence_transformers
import torch
from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.core.errors import SerializationError
from haystack.document_stores.in_memory import InMemoryDocumentStore
from haystack.utils import ComponentDevice, Secret
from support import (
    BAD_OPTIONS,
    CORPUS,
    KIND_FAMILY,
    QUERIES,
    Client,
    assert_same_ranking,
    expected_ranking,
    with_numpy_scores,
)

import rerank_plugins.haystack as haystack_module
from rerank_plugins import CrossEncoder
from rerank_plugins.haystack import RerankPluginsRanker

# Every passage holds the word "passage" and every query asks for it, so BM25 returns all 24 (more than
# ListConRanker's 20: its iterative inference runs two rounds).
PASSAGES = [f"Passage {i}: {text}" for i, text in enumerate(CORPUS)]
SEARCHES = [f"{query} passage" for query in QUERIES]
# Every kind of tiny model (each family, several architectures), and ListConRanker's iterative inference.
KINDS = [(kind, False) for kind in KIND_FAMILY] + [("listconranker", True)]
KIND_IDS = [f"{kind}{'-iterative' if iterative else ''}" for kind, iterative in KINDS]
MODULE = "rerank_plugins.haystack"


def corpus_documents() -> list[Document]:
    return [
        Document(content=text, meta={"source": i, "title": f"Title {i}", "tags": ["tiny"]})
        for i, text in enumerate(PASSAGES)
    ]


def scored(documents: list[Document]) -> list[tuple[str, float]]:
    return [(document.content or "", document.score) for document in documents]  # type: ignore[misc]


def tiny_ranker(tiny_paths: dict[str, str], kind: str, **options: Any) -> RerankPluginsRanker:
    """A ranker that loads the tiny model of ``kind`` from its path, as a pipeline file would."""
    return RerankPluginsRanker(tiny_paths[kind], family=KIND_FAMILY[kind], device="cpu", **options)


@pytest.fixture(scope="module")
def store() -> InMemoryDocumentStore:
    document_store = InMemoryDocumentStore()
    document_store.write_documents(corpus_documents())
    return document_store


def retrieve_then_rank(store: InMemoryDocumentStore, ranker: RerankPluginsRanker) -> Pipeline:
    pipeline = Pipeline()
    pipeline.add_component("retriever", InMemoryBM25Retriever(store, top_k=len(PASSAGES)))
    pipeline.add_component("ranker", ranker)
    pipeline.connect("retriever.documents", "ranker.documents")
    return pipeline


def run(pipeline: Pipeline, query: str) -> tuple[list[Document], list[Document]]:
    """The retriever's documents and the ranker's, for one query."""
    inputs = {"retriever": {"query": query}, "ranker": {"query": query}}
    outputs = pipeline.run(inputs, include_outputs_from={"retriever"})
    return outputs["retriever"]["documents"], outputs["ranker"]["documents"]


def run_async(pipeline: Pipeline, query: str) -> list[Document]:
    """The ranker's documents from the pipeline's async run (Haystack 2's ``AsyncPipeline`` where there is one)."""
    inputs = {"retriever": {"query": query}, "ranker": {"query": query}}
    if not hasattr(pipeline, "run_async"):  # Haystack 2: a separate AsyncPipeline class
        from haystack import AsyncPipeline

        pipeline = AsyncPipeline.from_dict(pipeline.to_dict())
    return asyncio.run(pipeline.run_async(inputs))["ranker"]["documents"]


def loads(text: str) -> Pipeline:
    """``Pipeline.loads``, trusting this package's module where Haystack keeps an allowlist (Haystack 3)."""
    if "allowed_modules" in inspect.signature(Pipeline.loads).parameters:
        return Pipeline.loads(text, allowed_modules=[MODULE])
    return Pipeline.loads(text)


@pytest.mark.parametrize(("kind", "iterative"), KINDS, ids=KIND_IDS)
def test_pipeline_ranks_as_cross_encoder_and_survives_yaml(
    kind: str,
    iterative: bool,
    tiny_paths: dict[str, str],
    load_tiny: Callable[..., CrossEncoder],
    store: InMemoryDocumentStore,
) -> None:
    reference = load_tiny(kind)  # another instance than the ranker's own, loaded from the same files
    pipeline = retrieve_then_rank(store, tiny_ranker(tiny_paths, kind, top_k=5, iterative=iterative))
    yaml = pipeline.dumps()
    reloaded = loads(yaml)
    assert reloaded.dumps() == yaml

    for query in SEARCHES:
        retrieved, ranked = run(pipeline, query)
        assert len(retrieved) == len(PASSAGES)
        texts = [document.content or "" for document in retrieved]
        expected = expected_ranking(reference, query, texts, iterative)[:5]
        if iterative:  # the option reached rank: two rounds, so the survivors' scores are shifted by one
            assert expected != expected_ranking(reference, query, texts)[:5]
        assert_same_ranking(scored(ranked), expected)
        _, ranked_after_yaml = run(reloaded, query)
        assert_same_ranking(scored(ranked_after_yaml), expected)
        assert_same_ranking(scored(run_async(reloaded, query)), expected)


def test_listwise_model_scores_the_whole_list(load_tiny: Callable[..., CrossEncoder]) -> None:
    model = load_tiny("listconranker")
    query, documents = SEARCHES[0], corpus_documents()
    got = RerankPluginsRanker(model, top_k=None).run(query=query, documents=documents)["documents"]
    assert_same_ranking(scored(got), expected_ranking(model, query, PASSAGES))
    # One document at a time would score differently, so the parity above does check whole-list scoring.
    alone = model.rank(query, [got[0].content])[0]["score"]
    assert alone != pytest.approx(got[0].score, abs=1e-6)


def test_run_async_equals_run(load_tiny: Callable[..., CrossEncoder]) -> None:
    ranker = RerankPluginsRanker(load_tiny("monot5"), top_k=6)
    documents = corpus_documents()
    calls = [query for query in SEARCHES for _ in range(2)]
    sequential = [scored(ranker.run(query=query, documents=documents)["documents"]) for query in calls]

    async def concurrently() -> list[dict[str, list[Document]]]:
        return await asyncio.gather(*(ranker.run_async(query=query, documents=documents) for query in calls))

    for got, expected in zip(asyncio.run(concurrently()), sequential, strict=True):
        assert_same_ranking(scored(got["documents"]), expected)


def test_documents_are_copied_never_mutated(load_tiny: Callable[..., CrossEncoder]) -> None:
    documents = corpus_documents()
    documents[3] = Document(id="three", content=PASSAGES[3], meta={"source": 3, "tags": ["x"]}, score=0.25)
    documents[4] = Document(content=PASSAGES[4], meta={"source": 4}, embedding=[0.5, 0.25])
    before = copy.deepcopy(documents)
    got = RerankPluginsRanker(load_tiny("monot5"), top_k=None).run(query=SEARCHES[1], documents=documents)
    assert documents == before
    assert len(got["documents"]) == len(documents)
    for document in got["documents"]:
        original = documents[document.meta["source"]]
        assert document is not original and document.meta is not original.meta
        assert document.id == original.id and document.content == original.content
        assert document.meta == original.meta and type(document.score) is float
        assert document.embedding is original.embedding  # values are shared, never deep-copied
        if "tags" in original.meta:
            assert document.meta["tags"] is original.meta["tags"]
        document.meta["added downstream"] = True
    assert documents == before


def test_metadata_that_cannot_be_deep_copied(load_tiny: Callable[..., CrossEncoder]) -> None:
    lock, client = threading.Lock(), Client()
    documents = [Document(content=text, meta={"lock": lock, "client": client, "i": i}) for i, text in enumerate(CORPUS)]
    with pytest.raises(TypeError, match="pickle"):
        copy.deepcopy(documents[0])  # what the copies must not need
    ranker = RerankPluginsRanker(load_tiny("monot5"), top_k=3)
    sync = ranker.run(query=QUERIES[0], documents=documents)["documents"]
    for got in (sync, asyncio.run(ranker.run_async(query=QUERIES[0], documents=documents))["documents"]):
        assert len(got) == 3
        for document in got:
            assert document.meta["lock"] is lock and document.meta["client"] is client
            assert type(document.score) is float
    assert [d.content for d in sync] == [CORPUS[d.meta["i"]] for d in sync]
    assert all(document.score is None for document in documents)


def test_scores_are_python_floats(load_tiny: Callable[..., CrossEncoder], monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_tiny("sequence-classification")
    with_numpy_scores(model, monkeypatch)
    got = RerankPluginsRanker(model, top_k=None).run(query=QUERIES[0], documents=corpus_documents())["documents"]
    assert len(got) == len(PASSAGES) and all(type(document.score) is float for document in got)


def test_top_k_and_threshold(load_tiny: Callable[..., CrossEncoder]) -> None:
    model = load_tiny("query-likelihood")
    query, documents = SEARCHES[2], corpus_documents()
    full = expected_ranking(model, query, PASSAGES)
    threshold = full[5][1]

    def ranked(options: dict[str, Any], **run_options: Any) -> list[tuple[str, float]]:
        ranker = RerankPluginsRanker(model, **options)
        return scored(ranker.run(query=query, documents=documents, **run_options)["documents"])

    assert_same_ranking(ranked({}), full[:10])  # Haystack's rankers keep 10 by default
    assert_same_ranking(ranked({"top_k": None}), full)
    assert_same_ranking(ranked({"top_k": None, "score_threshold": threshold}), full[:6])
    assert_same_ranking(ranked({"score_threshold": threshold, "top_k": 2}), full[:2])  # the threshold first
    assert_same_ranking(ranked({"top_k": 2}, top_k=7), full[:7])  # run's own override the ranker's
    assert_same_ranking(ranked({"top_k": None}, score_threshold=threshold), full[:6])
    assert_same_ranking(ranked({"top_k": None, "score_threshold": float("-inf")}), full)
    assert ranked({"score_threshold": full[0][1] + 1.0}) == []


@pytest.mark.parametrize("kind", ["monot5", "listconranker", "sequence-classification"])
def test_scale_score_false_gives_the_raw_score(kind: str, load_tiny: Callable[..., CrossEncoder]) -> None:
    model = load_tiny(kind)
    query, documents = SEARCHES[0], corpus_documents()
    raw = [
        (PASSAGES[r["corpus_id"]], r["score"]) for r in model.rank(query, PASSAGES, activation_fn=torch.nn.Identity())
    ]
    calibrated = expected_ranking(model, query, PASSAGES)
    assert [score for _, score in raw] != pytest.approx([score for _, score in calibrated], abs=1e-3)

    ranker = RerankPluginsRanker(model, top_k=None, scale_score=False)
    assert_same_ranking(scored(ranker.run(query=query, documents=documents)["documents"]), raw)
    overridden = ranker.run(query=query, documents=documents, scale_score=True)["documents"]
    assert_same_ranking(scored(overridden), calibrated)
    assert_same_ranking(
        scored(RerankPluginsRanker(model, top_k=None).run(query=query, documents=documents)["documents"]), calibrated
    )


def test_scale_score_false_is_refused_for_iterative_inference(load_tiny: Callable[..., CrossEncoder]) -> None:
    with pytest.raises(ValueError, match="scale_score=False"):
        RerankPluginsRanker(load_tiny("listconranker"), iterative=True, scale_score=False)
    ranker = RerankPluginsRanker(load_tiny("listconranker"), iterative=True)
    with pytest.raises(ValueError, match="scale_score=False"):
        ranker.run(query="q", documents=corpus_documents(), scale_score=False)
    with pytest.raises(TypeError, match="scale_score"):
        RerankPluginsRanker(load_tiny("monot5"), scale_score="no")  # type: ignore[arg-type]


def test_prefixes_and_meta_fields_change_the_texts(load_tiny: Callable[..., CrossEncoder]) -> None:
    model = load_tiny("monot5")
    query = QUERIES[0]
    documents = corpus_documents()
    documents[2] = Document(content=PASSAGES[2], meta={"source": 2, "title": None})  # None values are left out
    documents[5] = Document(content=PASSAGES[5], meta={"source": 5})  # so are missing ones
    options = {
        "query_prefix": "Instruct: find the answer. Query: ",
        "query_suffix": " ?",
        "document_prefix": "Document: ",
        "document_suffix": " (end)",
        "meta_fields_to_embed": ["title", "source"],
        "embedding_separator": " | ",
    }
    ranker = RerankPluginsRanker(model, top_k=None, **options)

    def text(document: Document) -> str:
        meta = [str(document.meta[key]) for key in ("title", "source") if document.meta.get(key) is not None]
        return "Document: " + " | ".join([*meta, document.content or ""]) + " (end)"

    texts = [text(document) for document in documents]
    assert (
        texts[0] == f"Document: Title 0 | 0 | {PASSAGES[0]} (end)" and texts[2] == f"Document: 2 | {PASSAGES[2]} (end)"
    )
    expected = [
        (documents[r["corpus_id"]].content, r["score"])
        for r in model.rank("Instruct: find the answer. Query: " + query + " ?", texts)
    ]
    got = ranker.run(query=query, documents=documents)["documents"]
    assert_same_ranking(scored(got), expected)  # type: ignore[arg-type]
    assert all(document.content in PASSAGES for document in got)  # the copies keep the document's own text

    def scores(**alone: Any) -> dict[str, float]:
        ranker = RerankPluginsRanker(model, top_k=None, **alone)
        return dict(scored(ranker.run(query=query, documents=documents)["documents"]))

    bare = scores()
    for name in ("query_prefix", "query_suffix", "document_prefix", "document_suffix", "meta_fields_to_embed"):
        assert scores(**{name: options[name]}) != pytest.approx(bare, abs=1e-5), name  # each one counts
    with_titles = scores(meta_fields_to_embed=["title"])
    assert scores(meta_fields_to_embed=["title"], embedding_separator=" | ") != pytest.approx(with_titles, abs=1e-5)


def test_documents_with_one_id_are_scored_once(load_tiny: Callable[..., CrossEncoder]) -> None:
    model = load_tiny("monot5")
    documents = [
        Document(id="a", content=PASSAGES[0], meta={"copy": 1}, score=0.1),
        Document(id="b", content=PASSAGES[1]),
        Document(id="a", content=PASSAGES[0], meta={"copy": 2}, score=0.9),  # the best scored copy of "a" is kept
        Document(id="c", content=PASSAGES[2], score=0.5),
        Document(id="c", content=PASSAGES[2], meta={"copy": 3}),  # unscored: below any score
    ]
    got = RerankPluginsRanker(model, top_k=None).run(query=QUERIES[0], documents=documents)["documents"]
    assert sorted(document.id for document in got) == ["a", "b", "c"]
    assert {document.id: document.meta for document in got} == {"a": {"copy": 2}, "b": {}, "c": {}}
    assert_same_ranking(scored(got), expected_ranking(model, QUERIES[0], PASSAGES[:3]))


def test_warm_up_loads_once(tiny_paths: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    loads_seen: list[str] = []
    original = haystack_module.load_model

    def load_model(model: Any, **options: Any) -> Any:
        loads_seen.append(threading.current_thread().name)
        return original(model, **options)

    monkeypatch.setattr(haystack_module, "load_model", load_model)
    ranker = tiny_ranker(tiny_paths, "monot5", max_length=64)
    assert ranker.cross_encoder is None and loads_seen == []  # building a ranker (or a pipeline) loads nothing
    threads = [threading.Thread(target=ranker.warm_up) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    model = ranker.cross_encoder
    assert isinstance(model, CrossEncoder) and model.max_length == 64 and model.family == "monot5"
    ranker.warm_up()
    asyncio.run(ranker.warm_up_async())
    ranker.run(query="q", documents=corpus_documents()[:2])
    assert len(loads_seen) == 1 and ranker.cross_encoder is model

    unwarmed = tiny_ranker(tiny_paths, "monot5")
    assert len(unwarmed.run(query="q", documents=corpus_documents()[:3])["documents"]) == 3  # run loads it
    assert len(loads_seen) == 2


def test_async_loading_and_scoring_leave_the_event_loop_free(
    tiny_paths: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_ran_before_loading, loop_ran_before_scoring = threading.Event(), threading.Event()
    original_load = haystack_module.load_model

    def load_model(model: Any, **options: Any) -> Any:  # finishes only once the event loop has run another task
        assert loop_ran_before_loading.wait(timeout=30), "the event loop was blocked while loading"
        loaded = original_load(model, **options)
        original_rank = loaded.rank

        def rank(*args: Any, **kwargs: Any) -> Any:
            assert loop_ran_before_scoring.wait(timeout=30), "the event loop was blocked while scoring"
            return original_rank(*args, **kwargs)

        loaded.rank = rank
        return loaded

    monkeypatch.setattr(haystack_module, "load_model", load_model)
    ranker = tiny_ranker(tiny_paths, "monot5", top_k=None)

    async def main() -> dict[str, list[Document]]:
        task = asyncio.ensure_future(ranker.run_async(query="q", documents=corpus_documents()))
        await asyncio.sleep(0.05)
        loop_ran_before_loading.set()
        while ranker.cross_encoder is None and not task.done():  # a failed load ends the task: no endless wait
            await asyncio.sleep(0.05)
        loop_ran_before_scoring.set()
        return await task

    assert len(asyncio.run(main())["documents"]) == len(PASSAGES)


def test_to_dict_and_from_dict(tiny_paths: dict[str, str], load_tiny: Callable[..., CrossEncoder]) -> None:
    options: dict[str, Any] = {
        "top_k": 4,
        "score_threshold": 0.25,
        "query_prefix": "q: ",
        "document_prefix": "d: ",
        "meta_fields_to_embed": ["title"],
        "embedding_separator": " - ",
        "batch_size": 3,
        "max_length": 96,
        "model_kwargs": {"dtype": torch.float32},
        "rank_kwargs": {"show_progress_bar": False},
    }
    ranker = tiny_ranker(tiny_paths, "monot5", **options)
    data = ranker.to_dict()
    assert data["type"] == "rerank_plugins.haystack.RerankPluginsRanker"
    parameters = data["init_parameters"]
    assert parameters["model"] == tiny_paths["monot5"] and parameters["model_kwargs"] == {"dtype": "torch.float32"}
    assert parameters["device"] == ComponentDevice.from_str("cpu").to_dict()
    assert parameters["token"] == Secret.from_env_var(["HF_API_TOKEN", "HF_TOKEN"], strict=False).to_dict()
    assert all(parameters[name] == value for name, value in options.items() if name != "model_kwargs")
    assert ranker.model_kwargs == {"dtype": torch.float32}  # serialising changed nothing

    saved = copy.deepcopy(data)
    again = RerankPluginsRanker.from_dict(data)
    assert data == saved and again.to_dict() == data
    assert again.model_kwargs == {"dtype": torch.float32} and again.device == ComponentDevice.from_str("cpu")
    documents = corpus_documents()
    got = again.run(query=QUERIES[0], documents=documents)["documents"]
    model = again.cross_encoder
    assert isinstance(model, CrossEncoder) and model.max_length == 96
    texts = ["d: " + f"Title {i} - " + text for i, text in enumerate(PASSAGES)]
    expected = [(PASSAGES[r["corpus_id"]], r["score"]) for r in load_tiny("monot5").rank("q: " + QUERIES[0], texts)]
    assert_same_ranking(scored(got), [pair for pair in expected if pair[1] >= 0.25][:4])

    with pytest.raises(SerializationError, match="loaded model"):
        RerankPluginsRanker(load_tiny("monot5")).to_dict()


def test_bad_documents_are_named(load_tiny: Callable[..., CrossEncoder]) -> None:
    ranker = RerankPluginsRanker(load_tiny("monot5"))
    good = corpus_documents()[:2]
    with pytest.raises(TypeError, match="Document 2 is a str"):
        ranker.run(query="q", documents=[*good, "text"])  # type: ignore[list-item]
    no_text = Document(id="image-1", meta={"kind": "image"})
    with pytest.raises(ValueError, match="Document 1 \\(id 'image-1'\\) has no text"):
        asyncio.run(ranker.run_async(query="q", documents=[good[0], no_text]))
    with pytest.raises(TypeError, match="documents must be a list"):
        ranker.run(query="q", documents="text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="query must be a str"):
        ranker.run(query=None, documents=good)  # type: ignore[arg-type]
    assert ranker.run(query="q", documents=[]) == {"documents": []}
    empty = Document(content="")  # empty text is text: kept and scored
    got = ranker.run(query="q", documents=[empty])["documents"]
    assert_same_ranking(scored(got), expected_ranking(load_tiny("monot5"), "q", [""]))


@pytest.mark.parametrize(("name", "value", "error"), BAD_OPTIONS, ids=[f"{n}={v!r}" for n, v, _ in BAD_OPTIONS])
def test_mistaken_options_are_named(
    name: str, value: Any, error: type[Exception], load_tiny: Callable[..., CrossEncoder]
) -> None:
    name = "top_k" if name == "top_n" else name  # Haystack's name for the cut-off
    with pytest.raises(error, match=name):  # e.g. top_k=True would keep one, a NaN threshold none
        RerankPluginsRanker(load_tiny("monot5"), **{name: value})
    if name != "batch_size":
        with pytest.raises(error, match=name):
            RerankPluginsRanker(load_tiny("monot5")).run(query="q", documents=corpus_documents(), **{name: value})


def test_options_a_model_cannot_honour(tiny_paths: dict[str, str], load_tiny: Callable[..., CrossEncoder]) -> None:
    with pytest.raises(ValueError, match="listwise"):
        RerankPluginsRanker(load_tiny("monot5"), iterative=True)
    path_ranker = tiny_ranker(tiny_paths, "monot5", iterative=True)  # loading is deferred to warm_up
    with pytest.raises(ValueError, match="listwise"):
        path_ranker.warm_up()
    assert path_ranker.cross_encoder is None
    with pytest.raises(ValueError, match="device"):
        RerankPluginsRanker(load_tiny("monot5"), device="cpu")  # loading options need an id or a path
    with pytest.raises(ValueError, match="activation_fn"):
        RerankPluginsRanker(tiny_paths["monot5"], rank_kwargs={"activation_fn": torch.nn.Identity()})
    with pytest.raises(ValueError, match="top_k"):
        RerankPluginsRanker(tiny_paths["monot5"], rank_kwargs={"top_k": 3})
    with pytest.raises(ValueError, match="max_length"):
        RerankPluginsRanker(tiny_paths["monot5"], cross_encoder_kwargs={"max_length": 3})
    unknown = RerankPluginsRanker(tiny_paths["monot5"], cross_encoder_kwargs={"top_n": 3})
    with pytest.raises(TypeError, match="top_n"):
        unknown.warm_up()
    with pytest.raises(TypeError, match="model"):
        RerankPluginsRanker(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="device"):
        RerankPluginsRanker(tiny_paths["monot5"], device=torch.device("cpu"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="query_prefix"):
        RerankPluginsRanker(tiny_paths["monot5"], query_prefix=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="meta_fields_to_embed"):
        RerankPluginsRanker(tiny_paths["monot5"], meta_fields_to_embed=[1])  # type: ignore[list-item]


def test_plain_sentence_transformers_cross_encoder(tiny_paths: dict[str, str]) -> None:
    plain = sentence_transformers.CrossEncoder(tiny_paths["sequence-classification"], device="cpu")
    got = RerankPluginsRanker(plain, top_k=3).run(query=QUERIES[0], documents=corpus_documents())["documents"]
    assert_same_ranking(scored(got), expected_ranking(plain, QUERIES[0], PASSAGES)[:3])


# Run in a subprocess whose import system refuses some modules.
HIDDEN = """import importlib, sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDE:
            raise ModuleNotFoundError(f"{name} is hidden for this test", name=name)
        return None

sys.meta_path.insert(0, Refuse())
try:
    importlib.import_module("rerank_plugins.haystack")
except ImportError as error:
    print("ImportError:", error)
else:
    loaded = sorted({name.split(".")[0] for name in sys.modules} & set(HIDE))
    assert not loaded, loaded
    print("imported")
"""


# (modules hidden, the last line printed)
ISOLATION = [
    (["haystack"], 'ImportError: RerankPluginsRanker needs haystack-ai: pip install "rerank-plugins[haystack]"'),
    (["langchain_core", "langchain_classic", "langchain", "llama_index"], "imported"),
]


def test_import_needs_haystack_and_only_haystack() -> None:
    processes = [  # both at once: each pays for importing torch and transformers
        subprocess.Popen(
            [sys.executable, "-c", f"HIDE = {hide!r}\n{HIDDEN}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for hide, _ in ISOLATION
    ]
    for (hide, printed), process in zip(ISOLATION, processes, strict=True):
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, f"{hide}: {stderr[-2000:]}"
        assert stdout.strip().splitlines()[-1] == printed, hide
