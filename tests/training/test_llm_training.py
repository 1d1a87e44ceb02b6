"""Fine-tuning the LLM rerankers with CrossEncoderTrainer: BCE on their own score, and the authors' objectives.

Each loss value is checked against the authors' computation on the same weights (the full model's logits on the
authors' inputs, tests/reference.py); then 20 steps on a tiny synthetic task must learn, and the trained model must
reload with identical scores, in rerank-plugins and in plain sentence-transformers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reference
import torch
from datasets import Dataset
from sentence_transformers import CrossEncoder as STCrossEncoder
from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
from support import TRAINING_NEGATIVES as NEGATIVES
from support import TRAINING_POSITIVES as POSITIVES
from support import TRAINING_QUERIES as QUERIES
from torch import nn
from torch.nn import functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from rerank_plugins import CrossEncoder
from rerank_plugins.training import AnswerTokenCrossEntropyLoss, GroupedSoftmaxLoss

KINDS = ("qwen3-reranker", "mxbai-rerank-v2", "bge-llm-reranker")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def load(tiny_paths: dict[str, str], kind: str) -> CrossEncoder:
    """A fresh model (training changes it); these configs have no dropout."""
    return CrossEncoder(tiny_paths[kind], family=kind, device="cpu")


def pairs_dataset() -> Dataset:
    return Dataset.from_dict({"query": QUERIES * 2, "document": POSITIVES + NEGATIVES, "label": [1.0] * 4 + [0.0] * 4})


def groups_dataset(teacher: bool = False) -> Dataset:
    columns: dict[str, Any] = {"query": QUERIES, "positive": POSITIVES}
    for k in range(2):
        columns[f"negative_{k + 1}"] = [NEGATIVES[(i + k) % 4] for i in range(4)]
    if teacher:
        columns["label"] = [[4.0, -1.0, 0.5]] * 4
    return Dataset.from_dict(columns)


def batch_loss(loss: nn.Module, dataset: Dataset) -> float:
    columns = [column for column in dataset.column_names if column != "label"]
    labels = torch.tensor(dataset["label"]) if "label" in dataset.column_names else None
    loss.model.eval()
    with torch.no_grad():
        return float(loss([dataset[column] for column in columns], labels))


def authors_inputs(kind: str, path: str, pairs: list[tuple[str, str]]) -> list[list[int]]:
    tokenizer = AutoTokenizer.from_pretrained(path)
    if kind == "qwen3-reranker":
        return reference.qwen3_reranker_inputs(tokenizer, pairs)
    if kind == "mxbai-rerank-v2":
        positions = AutoModelForCausalLM.from_pretrained(path).config.max_position_embeddings
        return reference.mxbai_rerank_v2_inputs(tokenizer, pairs, positions)
    return reference.bge_llm_reranker_inputs(tokenizer, pairs)


def authors_raw(kind: str, path: str, pairs: list[tuple[str, str]]) -> torch.Tensor:
    if kind == "qwen3-reranker":
        return torch.tensor(reference.qwen3_reranker_scores(path, pairs, raw=True))
    if kind == "mxbai-rerank-v2":
        return torch.tensor(reference.mxbai_rerank_v2_scores(path, pairs))
    return torch.tensor(reference.bge_llm_reranker_scores(path, pairs))


@pytest.mark.parametrize("kind", KINDS)
def test_bce_reads_the_authors_raw_score(tiny_paths, kind):
    model = load(tiny_paths, kind)
    data = pairs_dataset()
    raw = authors_raw(kind, tiny_paths[kind], list(zip(data["query"], data["document"], strict=True)))
    expected = F.binary_cross_entropy_with_logits(raw, torch.tensor(data["label"]))
    assert batch_loss(BinaryCrossEntropyLoss(model), data) == pytest.approx(float(expected), abs=1e-5)


@pytest.mark.parametrize("kind", ["qwen3-reranker", "mxbai-rerank-v2"])
@torch.no_grad()
def test_answer_token_loss_is_the_sft_loss_over_the_whole_vocabulary(tiny_paths, kind):
    """-log p(yes) for relevant pairs, -log p(no) for the rest, the full softmax at the prompt's last token."""
    model = load(tiny_paths, kind)
    data = pairs_dataset()
    pairs = list(zip(data["query"], data["document"], strict=True))
    full = AutoModelForCausalLM.from_pretrained(tiny_paths[kind]).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_paths[kind])
    words = ("yes", "no") if kind == "qwen3-reranker" else ("1", "0")
    positive, negative = (tokenizer(word, add_special_tokens=False)["input_ids"][0] for word in words)
    losses = []
    for ids, label in zip(authors_inputs(kind, tiny_paths[kind], pairs), data["label"], strict=True):
        logits = full(torch.tensor([ids])).logits[0, -1]
        losses.append(-torch.log_softmax(logits, dim=-1)[positive if label > 0.5 else negative])
    expected = torch.stack(losses).mean()
    assert batch_loss(AnswerTokenCrossEntropyLoss(model), data) == pytest.approx(float(expected), abs=1e-5)


def test_answer_token_loss_needs_two_answer_tokens(tiny_paths):
    with pytest.raises(ValueError, match=r"reads one.*GroupedSoftmaxLoss"):
        AnswerTokenCrossEntropyLoss(load(tiny_paths, "bge-llm-reranker"))


@pytest.mark.parametrize("teacher", [False, True])
def test_grouped_softmax_is_flag_embeddings_loss(tiny_paths, teacher):
    """AbsRerankerModel: cross-entropy over [positive, negatives] (+ the teacher's soft targets)."""
    kind = "bge-llm-reranker"
    model = load(tiny_paths, kind)
    data = groups_dataset(teacher)
    columns = ["positive", "negative_1", "negative_2"]
    pairs = [(q, d) for q, *group in zip(*(data[c] for c in ["query", *columns]), strict=True) for d in group]
    scores = authors_raw(kind, tiny_paths[kind], pairs).reshape(4, 3)
    expected = F.cross_entropy(scores, torch.zeros(4, dtype=torch.long))
    if teacher:
        targets = torch.softmax(torch.tensor(data["label"]), dim=-1)
        expected = expected - torch.mean(torch.sum(torch.log_softmax(scores, dim=-1) * targets, dim=-1))
    assert batch_loss(GroupedSoftmaxLoss(model), data) == pytest.approx(float(expected), abs=1e-5)


def positive_margin(model: STCrossEncoder) -> float:
    pairs = [(query, document) for query in QUERIES for document in [*POSITIVES, *NEGATIVES]]
    scores = np.asarray(model.predict(pairs, activation_fn=nn.Identity())).reshape(4, 8)
    relevant = np.zeros((4, 8), dtype=bool)
    relevant[np.arange(4), np.arange(4)] = True
    return float(scores[relevant].mean() - scores[~relevant].mean())


CASES: dict[str, tuple[str, Callable[[STCrossEncoder], nn.Module], Callable[[], Dataset]]] = {
    "qwen3-bce": ("qwen3-reranker", BinaryCrossEntropyLoss, pairs_dataset),
    "qwen3-sft": ("qwen3-reranker", AnswerTokenCrossEntropyLoss, pairs_dataset),
    "mxbai-bce": ("mxbai-rerank-v2", BinaryCrossEntropyLoss, pairs_dataset),
    "mxbai-sft": ("mxbai-rerank-v2", AnswerTokenCrossEntropyLoss, pairs_dataset),
    "bge-bce": ("bge-llm-reranker", BinaryCrossEntropyLoss, pairs_dataset),
    "bge-grouped": ("bge-llm-reranker", GroupedSoftmaxLoss, groups_dataset),
}


@pytest.mark.parametrize("case", list(CASES))
def test_twenty_steps_learn_then_reload_identically(case, tiny_paths, tmp_path: Path):
    kind, make_loss, make_dataset = CASES[case]
    model = load(tiny_paths, kind)
    loss, dataset = make_loss(model), make_dataset()
    before_loss, before_margin = batch_loss(loss, dataset), positive_margin(model)
    args = CrossEncoderTrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=20, per_device_train_batch_size=8, learning_rate=3e-3,
        lr_scheduler_type="constant", report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0,
        dataloader_num_workers=0,
    )  # fmt: skip
    CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss).train()
    assert batch_loss(loss, dataset) < before_loss
    assert positive_margin(model) > before_margin + 0.1
    pairs = [(q, d) for q in QUERIES for d in [*POSITIVES, *NEGATIVES]]
    trained = model.predict(pairs)
    model.save_pretrained(str(tmp_path / "saved"))
    reloaded = CrossEncoder(str(tmp_path / "saved"), device="cpu")
    assert reloaded.family == kind
    np.testing.assert_allclose(reloaded.predict(pairs), trained, atol=1e-6)
    plain = STCrossEncoder(str(tmp_path / "saved"), device="cpu", trust_remote_code=True)
    np.testing.assert_allclose(plain.predict(pairs), trained, atol=1e-6)
