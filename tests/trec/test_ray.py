"""Scale-out on Ray Data (``rerank_plugins.ray``) against the local path, on a local 2-CPU Ray instance.

Skipped only where Ray Data is not installed; the ``test`` extra installs it, so CI runs these.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import DATA

from rerank_plugins import ray as ray_engine
from rerank_plugins import trec
from rerank_plugins.cli import main

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage-stats probes of cloud metadata addresses
ray = pytest.importorskip("ray", reason="Ray Data is not installed: pip install 'rerank-plugins[ray]'")
pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'rerank-plugins[ray]'")

SAMPLE = DATA / "dl19-sample.json"


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """One local Ray instance for this module; the workers inherit the offline settings."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        runtime_env={
            "env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "RAY_USAGE_STATS_ENABLED": "0"}
        },
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


def test_pointwise_dataset_scores_equal_the_local_path(
    local_ray: Any, tiny_paths: dict[str, str], load_tiny: Any
) -> None:
    topics, run, corpus = trec.read_rank_llm_json(SAMPLE)
    local = dict(trec.rerank_run(load_tiny("monot5"), run, topics, corpus, depth=5))
    rows = [{"qid": q, "docid": d, "query": topics[q], "text": corpus[d]} for q in run for d, _ in run[q][:5]]
    ds = ray_engine.rerank_dataset(
        local_ray.data.from_items(rows), tiny_paths["monot5"], model_kwargs={"device": "cpu"}, batch_size=4,
        concurrency=2, num_cpus=1,
    )  # fmt: skip
    scored = ds.take_all()
    assert len(scored) == len(rows) and set(scored[0]) == {"qid", "docid", "query", "text", "score"}
    remote = {(row["qid"], row["docid"]): row["score"] for row in scored}
    for qid, ranking in local.items():
        assert [remote[qid, docid] for docid, _ in ranking] == pytest.approx([s for _, s in ranking], abs=1e-6)
        job = trec.Job(qid, topics[qid], [d for d, _ in run[qid][:5]], [], [])
        reordered = trec.order_ranking(job, [remote[qid, docid] for docid in job.docids])
        assert [docid for docid, _ in reordered] == [docid for docid, _ in ranking]  # the same ordering


def test_listwise_rerank_run_on_ray_equals_local(local_ray: Any, tiny_paths: dict[str, str], tmp_path: Path) -> None:
    """ListConRanker scores depend on the whole list: equal scores show that each query reached one actor whole."""
    common = ["rerank-run", "--model", tiny_paths["listconranker"], "--run", str(SAMPLE), "--depth", "20", "--quiet"]
    assert main([*common, "--output", str(tmp_path / "local.trec")]) == 0
    assert main([*common, "--output", str(tmp_path / "ray.trec"), "--engine", "ray", "--batch-size", "8"]) == 0
    local, remote = trec.read_run(tmp_path / "local.trec"), trec.read_run(tmp_path / "ray.trec")
    assert list(local) == list(remote)  # the same query order in the file
    for qid, ranking in local.items():
        assert [docid for docid, _ in remote[qid]] == [docid for docid, _ in ranking]
        assert [score for _, score in remote[qid]] == pytest.approx([score for _, score in ranking], abs=1e-6)
    lines = (tmp_path / "ray.trec").read_text().splitlines()
    assert [line.split()[3] for line in lines[:3]] == ["1", "2", "3"] and len(lines) == 60


def test_split_lists_would_change_listwise_scores(load_tiny: Any) -> None:
    """Why listwise models need whole groups: the same document scores differently in a shorter list."""
    topics, run, corpus = trec.read_rank_llm_json(SAMPLE)
    qid = next(iter(run))
    texts = [corpus[docid] for docid, _ in run[qid]]
    model = load_tiny("listconranker")
    whole = trec.score_query(model, topics[qid], texts)
    half = trec.score_query(model, topics[qid], texts[:10])
    assert max(abs(a - b) for a, b in zip(whole[:10], half, strict=True)) > 1e-4


def test_rerank_dataset_checks_its_columns(local_ray: Any) -> None:
    ds = local_ray.data.from_items([{"qid": "1", "docid": "a", "text": "t"}])
    with pytest.raises(ValueError, match="lacks the column"):
        ray_engine.rerank_dataset(ds, "unused", listwise=False)
    with pytest.raises(ValueError, match="listwise models only"):
        ray_engine.rerank_dataset(
            ds.add_column("query", lambda batch: batch["qid"]),
            "unused",
            listwise=False,
            rank_kwargs={"iterative": True},
        )


def test_both_functions_take_the_same_actor_options_and_refuse_others(local_ray: Any) -> None:
    ds = local_ray.data.from_items([{"qid": "1", "docid": "a", "query": "q", "text": "t"}])
    with pytest.raises(TypeError, match="num_gpu"):
        ray_engine.rerank_dataset(ds, "unused", listwise=False, num_gpu=1)  # type: ignore[call-arg]
    job = trec.Job("1", "q", ["a"], ["t"], [])
    with pytest.raises(TypeError, match=r"window.*rank_kwargs="):  # rank options are no longer bare keywords
        list(ray_engine.rerank_jobs([job], "unused", listwise=False, window=True))  # type: ignore[call-arg]
    assert ray_engine.ActorOptions.__optional_keys__ == {
        "model_kwargs", "batch_size", "concurrency", "num_gpus", "num_cpus", "listwise"
    }  # fmt: skip


def test_two_queries_with_the_same_text_stay_two_lists(local_ray: Any, tiny_paths: dict[str, str]) -> None:
    """A listwise model on Ray: each qid is one request, whatever its query text; each equals rank on its own list."""
    from rerank_plugins import CrossEncoder

    local = CrossEncoder(tiny_paths["listconranker"], device="cpu")
    query = "what is the capital of france"
    texts = {"q1": ["Paris is the capital of France.", "Lyon is in France.", "A recipe for bread."],
             "q2": ["The stock market fell.", "Paris is a city.", "Berlin is in Germany.", "Rain falls."]}  # fmt: skip
    jobs = [trec.Job(qid, query, [f"{qid}-{i}" for i in range(len(t))], t, []) for qid, t in texts.items()]
    remote = dict(ray_engine.rerank_jobs(tiny_paths["listconranker"], jobs, model_kwargs={"device": "cpu"}))
    for job in jobs:
        expected = {job.docids[r["corpus_id"]]: r["score"] for r in local.rank(query, job.texts)}
        assert dict(remote[job.qid]) == pytest.approx(expected, abs=1e-6)
