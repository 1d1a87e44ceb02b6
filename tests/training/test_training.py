"""Fine-tuning every family with sentence-transformers' CrossEncoderTrainer, and the authors' losses.

Losses are checked against references written here from the authors' code (InRanker's own ``compute_loss`` runs
as is), training runs 20 steps on a tiny synthetic task, and trained models must reload with identical scores.
Tiny models train with dropout off (at hidden size 32 its noise swamps 20 steps) and one CPU thread.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import support
import torch
from datasets import Dataset
from sentence_transformers import CrossEncoder as STCrossEncoder
from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator
from sentence_transformers.cross_encoder.losses import (
    BinaryCrossEntropyLoss,
    LambdaLoss,
    ListNetLoss,
    MarginMSELoss,
    MSELoss,
)
from support import KIND_FAMILY, import_inranker
from support import TRAINING_NEGATIVES as NEGATIVES
from support import TRAINING_POSITIVES as POSITIVES
from support import TRAINING_QUERIES as QUERIES
from torch import nn
from torch.nn import functional as F

from rerank_plugins import CrossEncoder
from rerank_plugins.cli import main
from rerank_plugins.training import (
    CircleLoss,
    InRankerDistillationLoss,
    MonoT5CrossEntropyLoss,
    QueryLikelihoodLoss,
    inranker_features,
    load_distillation_file,
)

FAMILY_KINDS = ["sequence-classification", "monot5", "query-likelihood", "listconranker"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def no_dropout(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        for name in ("dropout", "hidden_dropout"):  # float rates: T5's attention, nn.MultiheadAttention, BLOOM
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, 0.0)
    return model


def load(tiny_paths: dict[str, str], kind: str) -> CrossEncoder:
    """A fresh model (training changes it), dropout off."""
    return no_dropout(CrossEncoder(tiny_paths[kind], family=KIND_FAMILY[kind], device="cpu"))  # type: ignore[return-value]


def gradients(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_same_gradients(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor], atol: float) -> None:
    assert first.keys() == second.keys() and first
    for name, grad in first.items():
        torch.testing.assert_close(
            grad, second[name], atol=atol, rtol=1e-5, msg=lambda text, name=name: f"{name}: {text}"
        )


# -- datasets of the synthetic task: each query's positive mentions it, its negatives do not ------------------
def pairs_dataset() -> Dataset:
    return Dataset.from_dict({"query": QUERIES * 2, "document": POSITIVES + NEGATIVES, "label": [1.0] * 4 + [0.0] * 4})


def distillation_dataset() -> Dataset:  # teacher [false, true] logits, not zero-centred (the loss does that)
    return Dataset.from_dict(
        {"query": QUERIES * 2, "document": POSITIVES + NEGATIVES, "label": [[-3.0, 4.0]] * 4 + [[5.0, -2.0]] * 4}
    )


def triplets_dataset() -> Dataset:
    return Dataset.from_dict({"query": QUERIES, "positive": POSITIVES, "negative": NEGATIVES})


def margin_dataset() -> Dataset:  # MarginMSE: (query, positive, negative), label = teacher's margin
    return Dataset.from_dict({"query": QUERIES, "positive": POSITIVES, "negative": NEGATIVES, "label": [3.0] * 4})


def lists_dataset() -> Dataset:
    lists = [[POSITIVES[i], *NEGATIVES[:i], *NEGATIVES[i + 1 :]] for i in range(4)]
    return Dataset.from_dict({"query": QUERIES, "documents": lists, "labels": [[1, 0, 0, 0]] * 4})


def positive_margin(model: STCrossEncoder) -> float:
    """Mean raw score of the positives minus that of the negatives, each query's candidates scored as one list."""
    pairs = [(query, document) for query in QUERIES for document in [*POSITIVES, *NEGATIVES]]
    scores = np.asarray(model.predict(pairs, activation_fn=nn.Identity())).reshape(4, 8)
    relevant = np.zeros((4, 8), dtype=bool)
    relevant[np.arange(4), np.arange(4)] = True
    return float(scores[relevant].mean() - scores[~relevant].mean())


def batch_loss(loss: nn.Module, dataset: Dataset) -> float:
    """The loss on the whole (tiny) dataset as one batch, in eval mode."""
    columns = [column for column in dataset.column_names if column not in ("label", "labels")]
    label_column = next((c for c in ("label", "labels") if c in dataset.column_names), None)
    labels: Any = None
    if label_column is not None:
        values = dataset[label_column]
        labels = [torch.tensor(v) for v in values] if isinstance(values[0], list) else torch.tensor(values)
    loss.model.eval()
    with torch.no_grad():
        return float(loss([dataset[column] for column in columns], labels))


def arguments(tmp_path: Path, steps: int, **kwargs: Any) -> CrossEncoderTrainingArguments:
    settings: dict[str, Any] = {
        "output_dir": str(tmp_path / "run"), "max_steps": steps, "per_device_train_batch_size": 8,
        "learning_rate": 3e-3, "lr_scheduler_type": "constant", "report_to": "none", "save_strategy": "no",
        "use_cpu": True, "disable_tqdm": True, "seed": 0, "dataloader_num_workers": 0,
    }  # fmt: skip
    return CrossEncoderTrainingArguments(**{**settings, **kwargs})


# -- 1. the fix: the model card's statistics preprocess single texts -------------------------------------------
@pytest.mark.parametrize("kind", FAMILY_KINDS)
def test_preprocess_counts_the_tokens_of_single_texts(kind: str, load_tiny: Callable[..., CrossEncoder]) -> None:
    """What ``CrossEncoderTrainer`` does before its first step: one column's texts, each tokenized alone."""
    model = load_tiny(kind)
    texts = [QUERIES[0], POSITIVES[2], ""]
    lengths = model.preprocess(texts)["attention_mask"].sum(dim=1).tolist()
    assert lengths == [len(model.tokenizer(text)["input_ids"]) for text in texts]


# -- 2. InRanker's recipe, exactly ---------------------------------------------------------------------------
def test_inranker_distillation_equals_inranker_compute_loss(tiny_paths: dict[str, str], tmp_path: Path) -> None:
    """Our loss and inranker's own ``T5Trainer.compute_loss`` on one batch of its own file: loss and gradients."""
    import_inranker()  # on sys.path; skips where inranker cannot run (transformers < 5.3)
    trainer_module = importlib.import_module("inranker.training.trainer")
    max_length = 20  # short enough that the documents are cut by InRanker's budget
    rows = [
        {"query": q, "contents": d, "true_logit": t, "false_logit": f}
        for q, d, t, f in zip(QUERIES * 2, POSITIVES + NEGATIVES, [4.0, 1.5, 3.0, 0.5, -2, -1, 0.25, -3],
                              [-3.0, 0.5, -1.0, 2.0, 5, 1, 1.75, 0.5], strict=True)
    ]  # fmt: skip
    distill_file = tmp_path / "distill.jsonl"
    distill_file.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf8")

    # In float64: theirs pads to max_length and ours to the longest row, so in float32 the summation order alone
    # moves the shared embedding's gradient by up to ~5e-6; in float64 any difference left is the formula's.
    model = load(tiny_paths, "monot5").double()
    model.train()
    t5, tokenizer = model[0].model, model[0].tokenizer
    # InRanker's own loading and tokenizing (their methods, on a stand-in for the trainer instance).
    theirs = types.SimpleNamespace(tokenizer=tokenizer, tokenize=trainer_module.InRankerTrainer.tokenize)
    batch = trainer_module.InRankerTrainer.load_custom_dataset(theirs, distill_file=str(distill_file), max_length=20)[:]
    vocab = tokenizer.get_vocab()
    fake_trainer = types.SimpleNamespace(token_false_id=vocab["▁false"], token_true_id=vocab["▁true"])
    batch["labels"] = torch.tensor(batch["labels"])  # what the Trainer's default collator makes of [[label]] rows
    reference = trainer_module.T5Trainer.compute_loss(fake_trainer, t5, batch)
    reference.backward()
    reference_gradients = gradients(t5)
    t5.zero_grad()

    ours_data = load_distillation_file(distill_file)
    loss = InRankerDistillationLoss(model, max_length=max_length)
    ours = loss([ours_data["query"], ours_data["document"]], [torch.tensor(v) for v in ours_data["label"]])
    ours.backward()
    assert float(reference) > 0.1
    assert float(ours) == pytest.approx(float(reference), abs=1e-6)
    assert_same_gradients(gradients(t5), reference_gradients, atol=1e-6)

    # The inputs themselves: theirs are padded to max_length, ours to the longest row; the tokens are the same.
    features = inranker_features(tokenizer, ours_data["query"], ours_data["document"], max_length)
    for row, mask, their_row, their_mask in zip(
        features["input_ids"], features["attention_mask"], batch["input_ids"], batch["attention_mask"], strict=True
    ):
        assert row[mask.bool()].tolist() == their_row[their_mask.bool()].tolist()
    uncut = inranker_features(tokenizer, ours_data["query"], ours_data["document"], 512)["attention_mask"].sum(dim=1)
    assert (features["attention_mask"].sum(dim=1) < uncut).any()  # some document was cut to InRanker's budget


def test_monot5_cross_entropy_is_castorinis_fine_tuning(tiny_paths: dict[str, str]) -> None:
    """pygaggle's finetune_monot5.py: T5's loss on target "true"/"false" over the whole vocabulary."""
    model = load(tiny_paths, "monot5")
    model.train()
    t5, tokenizer = model[0].model, model[0].tokenizer
    labels = [1, 0, 1, 0, 0, 1, 0, 0]
    queries, documents = QUERIES * 2, POSITIVES + NEGATIVES
    # Their collator: the template, padding=True, longest_first at 512; targets tokenized as words (+ </s>).
    texts = [f"Query: {q} Document: {d} Relevant:" for q, d in zip(queries, documents, strict=True)]
    encoded = tokenizer(texts, padding=True, truncation="longest_first", return_tensors="pt", max_length=512)
    targets = tokenizer(["true" if label else "false" for label in labels], return_tensors="pt")["input_ids"]
    assert targets.shape[1] == 2 and set(targets[:, 1].tolist()) == {tokenizer.eos_token_id}
    # Written out: teacher-forced decoder [start, target word], log-softmax over the full vocabulary, mean.
    start = torch.full((len(texts), 1), t5.config.decoder_start_token_id)
    logits = t5(**encoded, decoder_input_ids=torch.cat([start, targets[:, :1]], dim=1)).logits
    reference = -F.log_softmax(logits.float(), dim=-1).gather(2, targets.unsqueeze(-1)).mean()
    ours = MonoT5CrossEntropyLoss(model)([queries, documents], torch.tensor(labels, dtype=torch.float))
    assert float(ours) == pytest.approx(float(reference), abs=1e-5)
    first_step = -F.log_softmax(logits[:, 0].float(), dim=-1).gather(1, targets[:, :1]).mean()
    first_only = MonoT5CrossEntropyLoss(model, eos=False)([queries, documents], torch.tensor(labels).float())
    assert float(first_only) == pytest.approx(float(first_step), abs=1e-5)


# -- 3. query likelihood and ListConRanker against their specs ----------------------------------------------
def reference_query_log_likelihood(model: CrossEncoder, query: str, document: str) -> torch.Tensor:
    """RankingGPT's card: mean log p(query ids | "Document: {doc} Query:" ids), full-vocabulary softmax."""
    lm, tokenizer = model[0].model, model[0].tokenizer
    context = tokenizer.encode(f"Document: {document} Query:", add_special_tokens=False)
    target = tokenizer.encode(query, add_special_tokens=False)
    logits = lm(input_ids=torch.tensor([context + target[:-1]])).logits[0].float()
    log_probs = F.log_softmax(logits[len(context) - 1 :], dim=-1)
    return log_probs.gather(1, torch.tensor(target).unsqueeze(1)).mean()


@pytest.mark.parametrize("in_batch", [False, True])
def test_query_likelihood_loss_matches_the_spec(tiny_paths: dict[str, str], in_batch: bool) -> None:
    model = load(tiny_paths, "query-likelihood")
    model.eval()
    temperature, weight = 0.5, 0.7
    loss = QueryLikelihoodLoss(model, temperature=temperature, generation_weight=weight, in_batch_negatives=in_batch)
    ours = loss([QUERIES, POSITIVES, NEGATIVES])
    terms = []
    for i, query in enumerate(QUERIES):
        candidates = [POSITIVES[i], NEGATIVES[i]] + ([POSITIVES[j] for j in range(4) if j != i] if in_batch else [])
        scores = torch.stack([reference_query_log_likelihood(model, query, d) for d in candidates])
        ranking = -F.log_softmax(scores.exp() / temperature, dim=0)[0]
        terms.append(ranking - weight * scores[0])
    assert float(ours) == pytest.approx(float(torch.stack(terms).mean()), abs=1e-5)
    alone = QueryLikelihoodLoss(model, generation_weight=weight)([QUERIES, POSITIVES])  # no negative: likelihood
    expected = -weight * torch.stack(
        [reference_query_log_likelihood(model, q, d) for q, d in zip(QUERIES, POSITIVES, strict=True)]
    )
    assert float(alone) == pytest.approx(float(expected.mean()), abs=1e-5)


def test_circle_loss_matches_the_spec(tiny_paths: dict[str, str]) -> None:
    """Circle loss in its pairwise form, log(1 + sum_p sum_n exp(...)), on the whole lists' sigmoid scores."""
    model = load(tiny_paths, "listconranker")
    model.eval()
    scale, margin = 16.0, 0.3
    lists = [[POSITIVES[0], NEGATIVES[0], POSITIVES[1], NEGATIVES[1]], [NEGATIVES[2], POSITIVES[2], NEGATIVES[3]]]
    labels = [torch.tensor([1, 0, 1, 0]), torch.tensor([0, 1, 0])]
    ours = CircleLoss(model, scale=scale, margin=margin)([QUERIES[:2], lists], labels)
    expected = []
    for query, documents, relevant in zip(QUERIES[:2], lists, labels, strict=True):
        scores = model.predict([(query, d) for d in documents], convert_to_tensor=True)  # sigmoid, whole list
        total = torch.tensor(0.0)
        for p in scores[relevant == 1]:
            for n in scores[relevant == 0]:
                alpha_p, alpha_n = max(1 + margin - float(p), 0.0), max(float(n) + margin, 0.0)
                total = total + torch.exp(scale * (alpha_n * (n - margin) - alpha_p * (p - 1 + margin)))
        expected.append(torch.log1p(total))
    assert float(ours) == pytest.approx(float(torch.stack(expected).mean()), abs=1e-5)
    # A list is one forward: the same passage scores differently in another list, so splitting would be wrong.
    with pytest.raises(ValueError, match="share a query"):
        CircleLoss(model)([[QUERIES[0], QUERIES[0]], lists], labels)
    with pytest.raises(ValueError, match="List 1 has 3 documents but 2 labels"):
        CircleLoss(model)([QUERIES[:2], lists], [labels[0], torch.tensor([0, 1])])


# -- 1 and 5. CrossEncoderTrainer end to end, every family --------------------------------------------------
TRAINING_CASES: dict[str, tuple[str, Callable[[STCrossEncoder], nn.Module], Callable[[], Dataset]]] = {
    "sequence-classification-bce": ("sequence-classification", BinaryCrossEntropyLoss, pairs_dataset),
    "monot5-bce": ("monot5", BinaryCrossEntropyLoss, pairs_dataset),
    "monot5-inranker": ("monot5", InRankerDistillationLoss, distillation_dataset),
    "monot5-castorini": ("monot5", MonoT5CrossEntropyLoss, pairs_dataset),
    "query-likelihood-listed": (
        "query-likelihood",
        lambda m: QueryLikelihoodLoss(m, temperature=0.1),
        triplets_dataset,
    ),
    "query-likelihood-in-batch": (
        "query-likelihood",
        lambda m: QueryLikelihoodLoss(m, temperature=0.1, in_batch_negatives=True),
        triplets_dataset,
    ),
    "listconranker-circle": ("listconranker", CircleLoss, lists_dataset),
    "listconranker-listnet": ("listconranker", lambda m: ListNetLoss(m, mini_batch_size=-1), lists_dataset),
}


@pytest.mark.parametrize("case", list(TRAINING_CASES))
def test_twenty_steps_learn_then_reload_identically(case: str, tiny_paths: dict[str, str], tmp_path: Path) -> None:
    kind, make_loss, make_dataset = TRAINING_CASES[case]
    model = load(tiny_paths, kind)
    loss, dataset = make_loss(model), make_dataset()
    before_loss, before_margin = batch_loss(loss, dataset), positive_margin(model)
    samples = [
        {"query": q, "positive": [p], "documents": [p, *NEGATIVES]} for q, p in zip(QUERIES, POSITIVES, strict=True)
    ]
    evaluator = CrossEncoderRerankingEvaluator(samples, name="tiny", show_progress_bar=False)
    args = arguments(tmp_path, 20, eval_strategy="steps", eval_steps=10, save_strategy="steps", save_steps=20)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss, evaluator=evaluator)
    trainer.train()

    after_loss, after_margin = batch_loss(loss, dataset), positive_margin(model)
    assert after_loss < before_loss
    assert after_margin > before_margin + 0.1
    evaluations = [entry for entry in trainer.state.log_history if "eval_tiny_ndcg@10" in entry]
    assert [entry["step"] for entry in evaluations] == [10, 20]

    pairs = [(q, d) for q in QUERIES for d in [*POSITIVES, *NEGATIVES]]
    trained = model.predict(pairs)
    checkpoint = tmp_path / "run" / "checkpoint-20"
    np.testing.assert_allclose(CrossEncoder(str(checkpoint), device="cpu").predict(pairs), trained, atol=1e-6)
    model.save_pretrained(str(tmp_path / "saved"))
    reloaded = CrossEncoder(str(tmp_path / "saved"), device="cpu")
    assert reloaded.family == model.family
    np.testing.assert_allclose(reloaded.predict(pairs), trained, atol=1e-6)
    plain = STCrossEncoder(str(tmp_path / "saved"), device="cpu", trust_remote_code=True)
    np.testing.assert_allclose(plain.predict(pairs), trained, atol=1e-6)


def test_trained_model_ranks_through_the_cli_and_both_adapters(
    tiny_paths: dict[str, str], tmp_path: Path, capsys: Any
) -> None:
    model = load(tiny_paths, "monot5")
    CrossEncoderTrainer(
        model=model, args=arguments(tmp_path, 3), train_dataset=pairs_dataset(), loss=BinaryCrossEntropyLoss(model)
    ).train()
    model.save_pretrained(str(tmp_path / "saved"))
    capsys.readouterr()  # the trainer's own log lines
    assert main(["rank", "--model", str(tmp_path / "saved"), "--query", QUERIES[0], "--json", *NEGATIVES]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    expected = model.rank(QUERIES[0], NEGATIVES)
    assert [r["index"] for r in results] == [r["corpus_id"] for r in expected]
    assert [r["score"] for r in results] == pytest.approx([r["score"] for r in expected], abs=1e-6)
    by_text = {NEGATIVES[r["corpus_id"]]: r["score"] for r in expected}

    support.require("langchain_core")
    from langchain_core.documents import Document

    from rerank_plugins.langchain import RerankCompressor

    compressed = RerankCompressor(model=str(tmp_path / "saved")).compress_documents(
        [Document(page_content=text) for text in NEGATIVES], QUERIES[0]
    )
    assert {d.page_content: d.metadata["relevance_score"] for d in compressed} == pytest.approx(by_text, abs=1e-6)

    support.require("llama_index.core")
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from rerank_plugins.llama_index import RerankPostprocessor

    nodes = [NodeWithScore(node=TextNode(text=text), score=0.0) for text in NEGATIVES]
    ranked = RerankPostprocessor(model=str(tmp_path / "saved")).postprocess_nodes(nodes, QueryBundle(QUERIES[0]))
    assert {n.node.get_content(): n.score for n in ranked} == pytest.approx(by_text, abs=1e-6)


ST_LOSSES: dict[str, tuple[Callable[[STCrossEncoder], nn.Module], Callable[[], Dataset]]] = {
    "mse": (MSELoss, pairs_dataset),
    "margin-mse": (MarginMSELoss, margin_dataset),
    "lambda": (lambda m: LambdaLoss(m, mini_batch_size=-1), lists_dataset),
}
# Pointwise and pairwise losses for the pointwise families, list losses for the listwise one (BCE and ListNet
# run in the 20-step test above).
ST_LOSS_CASES = [(kind, name) for kind in FAMILY_KINDS[:3] for name in ("mse", "margin-mse")] + [
    ("listconranker", "lambda"),
    ("monot5", "lambda"),
]


@pytest.mark.parametrize(("kind", "name"), ST_LOSS_CASES)
def test_sentence_transformers_losses_train_every_family(
    kind: str, name: str, tiny_paths: dict[str, str], tmp_path: Path
) -> None:
    make_loss, make_dataset = ST_LOSSES[name]
    model = load(tiny_paths, kind)
    loss, dataset = make_loss(model), make_dataset()
    before = batch_loss(loss, dataset)
    CrossEncoderTrainer(
        model=model, args=arguments(tmp_path, 5, learning_rate=1e-3), train_dataset=dataset, loss=loss
    ).train()
    assert batch_loss(loss, dataset) < before


# -- 4. mixed precision and gradient checkpointing ----------------------------------------------------------
FAMILY_LOSSES: dict[str, tuple[Callable[[STCrossEncoder], nn.Module], Callable[[], Dataset]]] = {
    "sequence-classification": (BinaryCrossEntropyLoss, pairs_dataset),
    "monot5": (InRankerDistillationLoss, distillation_dataset),
    "query-likelihood": (QueryLikelihoodLoss, triplets_dataset),
    "listconranker": (CircleLoss, lists_dataset),
}


@pytest.mark.parametrize("kind", FAMILY_KINDS)
def test_bf16_autocast_trains(kind: str, tiny_paths: dict[str, str], tmp_path: Path) -> None:
    make_loss, make_dataset = FAMILY_LOSSES[kind]
    model = load(tiny_paths, kind)
    trainer = CrossEncoderTrainer(
        model=model, args=arguments(tmp_path, 2, bf16=True, logging_steps=1), train_dataset=make_dataset(),
        loss=make_loss(model),
    )  # fmt: skip
    assert trainer.accelerator.mixed_precision == "bf16"
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert next(model.parameters()).dtype == torch.float32  # autocast: the weights themselves stay fp32


@pytest.mark.parametrize("kind", FAMILY_KINDS)
def test_gradient_checkpointing_gives_the_same_gradients(kind: str, tiny_paths: dict[str, str]) -> None:
    make_loss, make_dataset = FAMILY_LOSSES[kind]
    dataset = make_dataset()
    columns = [c for c in dataset.column_names if c not in ("label", "labels")]
    label_column = next((c for c in ("label", "labels") if c in dataset.column_names), None)
    results = []
    for checkpointing in (False, True):
        model = load(tiny_paths, kind)
        if checkpointing:
            model.gradient_checkpointing_enable({"use_reentrant": False})
            assert any(getattr(m, "is_gradient_checkpointing", False) for m in model.modules())
        model.train()
        labels: Any = None
        if label_column is not None:
            values = dataset[label_column]
            labels = [torch.tensor(v) for v in values] if isinstance(values[0], list) else torch.tensor(values)
        make_loss(model)([dataset[c] for c in columns], labels).backward()
        results.append(gradients(model))
    assert_same_gradients(results[0], results[1], atol=1e-5)


# -- errors ---------------------------------------------------------------------------------------------------
def test_a_family_loss_refuses_another_family(tiny_paths: dict[str, str]) -> None:
    model = load(tiny_paths, "sequence-classification")
    with pytest.raises(ValueError, match="trains the 'monot5' family; this model is 'sequence-classification'"):
        InRankerDistillationLoss(model)
    with pytest.raises(ValueError, match="'listconranker' family"):
        CircleLoss(load(tiny_paths, "monot5"))
    with pytest.raises(ValueError, match="expects 2 label values per row"):
        InRankerDistillationLoss(load(tiny_paths, "monot5"))([QUERIES, POSITIVES], torch.ones(4))
    with pytest.raises(ValueError, match="MonoT5CrossEntropyLoss needs a label column"):
        MonoT5CrossEntropyLoss(load(tiny_paths, "monot5"))([QUERIES, POSITIVES], None)


def test_a_bad_distillation_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "distill.jsonl"
    good = {"query": "q", "contents": "d", "true_logit": 1.0, "false_logit": -1.0}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"query": "q", "contents": "d"}) + "\n", encoding="utf8")
    with pytest.raises(ValueError, match=r"distill.jsonl:2: missing field\(s\) true_logit, false_logit"):
        load_distillation_file(path)
    path.write_text(json.dumps(good) + "\n{not json\n", encoding="utf8")
    with pytest.raises(ValueError, match=r"distill\.jsonl:2: not a JSON object"):
        load_distillation_file(path)


def test_missing_accelerate_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "accelerate" else real_find_spec(name, *a)
    )
    saved = {name: module for name, module in sys.modules.items() if name.startswith("rerank_plugins.training")}
    for name in saved:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=r'Training needs accelerate.*pip install "rerank-plugins\[train\]"'):
        importlib.import_module("rerank_plugins.training")
    for name, module in saved.items():  # the real package back, for the tests that follow
        monkeypatch.setitem(sys.modules, name, module)
