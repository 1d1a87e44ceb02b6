"""A family defined OUTSIDE rerank_plugins works everywhere a built-in one does, with no edit to the package.

The family lives in a throw-away package written to a temporary directory, installed the way a user's package
would be: an entry point in the group ``rerank_plugins.families`` (a ``*.dist-info`` folder on ``sys.path``). It
scores a causal LM by ``logit(yes) - logit(no)`` at the last position of ``Query: q Document: d Relevant:``.
Every path below is checked against an independent computation of that formula with plain ``transformers``.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sentence_transformers
import torch
from support import DOCUMENTS, QUERIES
from transformers import AutoModelForCausalLM, AutoTokenizer

from rerank_plugins import CrossEncoder
from rerank_plugins.families import FamilySpec, check_family, family_names, get_family, register_family

PLUGIN = '''
"""A user's family: a causal LM scored by the logit margin of two answer tokens at the last position."""

from typing import Any, ClassVar

import torch
from transformers import AutoModelForCausalLM

from rerank_plugins.families import FamilySpec
from rerank_plugins.scoring.base import ScoringModule, fp32_scores


class AnswerMarginScore(ScoringModule):
    family: ClassVar[str] = "answer-margin"
    auto_class: ClassVar[Any] = AutoModelForCausalLM
    config_keys: list[str] = ["yes_token", "no_token"]

    def __init__(self, path: str, *, yes_token: str = " yes", no_token: str = " no", **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.yes_token, self.no_token = yes_token, no_token
        ids = [self.tokenizer.encode(t, add_special_tokens=False)[-1] for t in (no_token, yes_token)]
        self.register_buffer("answer_ids", torch.tensor(ids), persistent=False)

    def preprocess(self, inputs, prompt=None, **kwargs):
        texts = [f"Query: {q} Document: {d} Relevant:" for q, d in inputs]
        encoded = self.tokenize_truncating(texts)  # right padding: the last real token is at length - 1
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def forward(self, features, **kwargs):
        mask = features["attention_mask"]
        logits = self.model(input_ids=features["input_ids"], attention_mask=mask).logits
        last = logits[torch.arange(mask.shape[0]), mask.sum(dim=1) - 1][:, self.answer_ids].float()
        features["scores"] = fp32_scores(last[:, 1] - last[:, 0])
        return features


FAMILY = FamilySpec("answer-margin", module=AnswerMarginScore, activation="identity")
'''


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The user's package ``margin_family``, installed by an entry point, on ``sys.path`` for this module."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "margin_family").mkdir()
    (root / "margin_family" / "__init__.py").write_text(PLUGIN)
    info = root / "margin_family-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: margin-family\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[rerank_plugins.families]\nanswer-margin = margin_family:FAMILY\n")
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    yield root
    sys.path.remove(str(root))
    sys.modules.pop("margin_family", None)


def reference_scores(path: str, pairs: list[tuple[str, str]]) -> list[float]:
    """The formula, one pair at a time, unpadded, with plain transformers."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    no, yes = (tokenizer.encode(t, add_special_tokens=False)[-1] for t in (" no", " yes"))
    scores = []
    with torch.no_grad():
        for query, document in pairs:
            ids = tokenizer(f"Query: {query} Document: {document} Relevant:", return_tensors="pt")["input_ids"]
            last = model(input_ids=ids).logits[0, -1]
            scores.append(float(last[yes] - last[no]))
    return scores


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    return [(QUERIES[1], document) for document in DOCUMENTS]


@pytest.fixture(scope="module")
def model(plugin_dir: Path, tiny_paths: dict[str, str]) -> CrossEncoder:
    return CrossEncoder(tiny_paths["query-likelihood"], family="answer-margin", device="cpu")


def test_the_entry_point_family_is_listed_and_loaded_on_demand(plugin_dir: Path) -> None:
    assert "answer-margin" in family_names()
    assert check_family("answer-margin") == "answer-margin"
    spec = get_family("answer-margin")
    assert isinstance(spec, FamilySpec) and not spec.listwise


def test_predict_and_rank_equal_the_formula(model: CrossEncoder, pairs: list, tiny_paths: dict[str, str]) -> None:
    assert model.family == "answer-margin" and model.num_labels == 1
    expected = reference_scores(tiny_paths["query-likelihood"], pairs)
    np.testing.assert_allclose(model.predict(pairs, batch_size=3), expected, atol=1e-5)
    ranked = model.rank(QUERIES[1], DOCUMENTS)
    assert [r["corpus_id"] for r in ranked] == list(np.argsort(-np.asarray(expected), kind="stable"))


def test_save_and_reload_without_remote_code(model: CrossEncoder, pairs: list, tmp_path: Path) -> None:
    model.save(str(tmp_path / "saved"))
    saved = json.loads((tmp_path / "saved" / "modules.json").read_text())
    assert saved[0]["type"] == "margin_family.AnswerMarginScore"
    again = CrossEncoder(str(tmp_path / "saved"), device="cpu")  # no family=: the saved modules say it
    assert again.family == "answer-margin"
    np.testing.assert_allclose(again.predict(pairs), model.predict(pairs), atol=1e-6)
    plain = sentence_transformers.CrossEncoder(str(tmp_path / "saved"), trust_remote_code=True, device="cpu")
    np.testing.assert_allclose(plain.predict(pairs, activation_fn=torch.nn.Identity()), model.predict(pairs), atol=1e-6)


def test_both_adapters(model: CrossEncoder, pairs: list) -> None:
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, TextNode

    from rerank_plugins.langchain import RerankCompressor
    from rerank_plugins.llama_index import RerankPostprocessor

    expected = model.rank(QUERIES[1], DOCUMENTS)
    compressed = RerankCompressor(model=model).compress_documents(
        [Document(page_content=d) for d in DOCUMENTS], QUERIES[1]
    )
    assert [d.page_content for d in compressed] == [DOCUMENTS[r["corpus_id"]] for r in expected]
    assert [d.metadata["relevance_score"] for d in compressed] == pytest.approx(
        [r["score"] for r in expected], abs=1e-6
    )
    nodes = [NodeWithScore(node=TextNode(text=d), score=0.0) for d in DOCUMENTS]
    processed = RerankPostprocessor(model=model, metadata_mode="none").postprocess_nodes(nodes, query_str=QUERIES[1])
    assert [n.node.get_content() for n in processed] == [DOCUMENTS[r["corpus_id"]] for r in expected]
    assert [n.score for n in processed] == pytest.approx([r["score"] for r in expected], abs=1e-6)


def _environment(plugin_dir: Path) -> dict[str, str]:
    paths = [str(plugin_dir), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "HF_HUB_OFFLINE": "1"}


def test_the_command_line(plugin_dir: Path, model: CrossEncoder, tiny_paths: dict[str, str]) -> None:
    command = [sys.executable, "-m", "rerank_plugins", "rank", "--model", tiny_paths["query-likelihood"],
               "--family", "answer-margin", "--json", "--query", QUERIES[1], *DOCUMENTS[:4]]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=_environment(plugin_dir), timeout=300)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["results"]
    expected = model.rank(QUERIES[1], DOCUMENTS[:4])
    assert [row["index"] for row in rows] == [r["corpus_id"] for r in expected]
    assert [row["score"] for row in rows] == pytest.approx([r["score"] for r in expected], abs=1e-5)


def test_ray(plugin_dir: Path, model: CrossEncoder, tiny_paths: dict[str, str]) -> None:
    ray = pytest.importorskip("ray", reason="Ray Data is not installed: pip install 'rerank-plugins[ray]'")
    from rerank_plugins import ray as ray_engine

    env = _environment(plugin_dir)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        runtime_env={"env_vars": {k: env[k] for k in ("PYTHONPATH", "HF_HUB_OFFLINE")}},
    )
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        rows = [{"qid": "q", "docid": str(i), "query": QUERIES[1], "text": d} for i, d in enumerate(DOCUMENTS)]
        kwargs: dict[str, Any] = {"family": "answer-margin", "device": "cpu"}
        assert not ray_engine.is_listwise(tiny_paths["query-likelihood"], kwargs)
        ds = ray_engine.rerank_dataset(
            ray.data.from_items(rows), tiny_paths["query-likelihood"], model_kwargs=kwargs, batch_size=3, num_cpus=1
        )
        remote = {row["docid"]: row["score"] for row in ds.take_all()}
    finally:
        ray.shutdown()
    expected = model.predict([(QUERIES[1], d) for d in DOCUMENTS])
    assert [remote[str(i)] for i in range(len(DOCUMENTS))] == pytest.approx(list(expected), abs=1e-5)


def test_register_family_in_process(tiny_paths: dict[str, str]) -> None:
    """register_family: a family of this process only, refused over a built-in or a taken name."""
    from rerank_plugins.families import unregister_family
    from rerank_plugins.scoring.query_likelihood import QueryLikelihoodScore

    spec = FamilySpec("my-likelihood", module=QueryLikelihoodScore, activation="identity")
    with pytest.raises(ValueError, match="built-in"):
        register_family(FamilySpec("monot5", module=QueryLikelihoodScore))
    register_family(spec)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_family(FamilySpec("my-likelihood", module=QueryLikelihoodScore))
        mine = CrossEncoder(tiny_paths["query-likelihood"], family="my-likelihood", device="cpu")
        builtin = CrossEncoder(tiny_paths["query-likelihood"], family="query-likelihood", device="cpu")
        pairs = [(QUERIES[0], d) for d in DOCUMENTS]
        np.testing.assert_allclose(mine.predict(pairs), builtin.predict(pairs), atol=1e-6)
    finally:
        unregister_family("my-likelihood")
    with pytest.raises(ValueError, match="Unknown family 'my-likelihood'"):
        CrossEncoder(tiny_paths["query-likelihood"], family="my-likelihood")


def test_a_spec_is_checked_when_made() -> None:
    from rerank_plugins.scoring.monot5 import MonoT5Score

    with pytest.raises(ValueError, match="exactly one"):
        FamilySpec("x")
    with pytest.raises(ValueError, match="activation"):
        FamilySpec("x", module=MonoT5Score, activation="softmax")
    with pytest.raises(TypeError):
        register_family("x")  # type: ignore[arg-type]
