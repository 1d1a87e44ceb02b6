"""Bad training data is an error before the first step, naming the row and column, for every loss.

``CrossEncoderTrainer`` hands each dataset and the loss to the model's card data before training starts;
``rerank_plugins.CrossEncoder`` checks them there (``training.checks.check_dataset``). The family losses also
check each batch they are given, for callers that use them without the trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset, DatasetDict
from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss, LambdaLoss, ListNetLoss, MSELoss
from torch import nn

from rerank_plugins import CrossEncoder
from rerank_plugins.training import (
    CircleLoss,
    InRankerDistillationLoss,
    MonoT5CrossEntropyLoss,
    QueryLikelihoodLoss,
    check_dataset,
)

NAN = float("nan")
LISTS = [["Paris is the capital of France.", "Stocks fell.", "Rain falls."], ["A vaccine.", "A recipe."]]


def arguments(tmp_path: Path) -> CrossEncoderTrainingArguments:
    return CrossEncoderTrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=2, report_to="none",
        save_strategy="no", use_cpu=True, disable_tqdm=True,
    )  # fmt: skip


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def refuse_before_training(
    model: CrossEncoder, loss: nn.Module, dataset: Dataset, tmp_path: Path, match: str, eval_dataset: Any = None
) -> None:
    """Building the trainer raises ``match``; no step ran, so the weights are the ones loaded."""
    before = weights(model)
    with pytest.raises(ValueError, match=match):
        CrossEncoderTrainer(
            model=model, args=arguments(tmp_path), train_dataset=dataset, eval_dataset=eval_dataset, loss=loss
        ).train()
    after = weights(model)
    assert all(torch.equal(before[name], after[name]) for name in before)


# -- NaN labels: every loss, sentence-transformers' own included -------------------------------------------------
PAIR_LOSSES: dict[str, tuple[str, Callable[[CrossEncoder], nn.Module]]] = {
    "bce": ("monot5", BinaryCrossEntropyLoss),
    "mse": ("sequence-classification", MSELoss),
    "monot5-cross-entropy": ("monot5", MonoT5CrossEntropyLoss),
}


@pytest.mark.parametrize("case", list(PAIR_LOSSES))
def test_a_nan_label_is_refused_before_the_first_step(
    case: str, load_tiny: Callable[..., CrossEncoder], tmp_path: Path
) -> None:
    kind, make_loss = PAIR_LOSSES[case]
    model = load_tiny(kind, max_length=64)
    rows = {"query": ["q1", "q2", "q3"], "document": ["a", "b", "c"], "label": [1.0, 0.0, NAN]}
    refuse_before_training(
        model, make_loss(model), Dataset.from_dict(rows), tmp_path,
        r"Row 2 of the train dataset has the label nan in column 'label': labels must be finite numbers",
    )  # fmt: skip


def test_a_nan_teacher_logit_and_a_nan_list_label_are_refused(
    load_tiny: Callable[..., CrossEncoder], tmp_path: Path
) -> None:
    monot5 = load_tiny("monot5", max_length=64)
    teacher = {"query": ["q1", "q2"], "document": ["a", "b"], "label": [[-1.0, 2.0], [NAN, 1.0]]}
    refuse_before_training(
        monot5, InRankerDistillationLoss(monot5), Dataset.from_dict(teacher), tmp_path, "Row 1 .* label nan"
    )
    listcon = load_tiny("listconranker", max_length=64)
    lists = {"query": ["q1", "q2"], "documents": LISTS, "labels": [[1, 0, 0], [0.0, NAN]]}
    refuse_before_training(listcon, CircleLoss(listcon), Dataset.from_dict(lists), tmp_path, "Row 1 .* label nan")
    # The eval dataset is checked too, and a None label is as bad as a NaN.
    good = Dataset.from_dict({"query": ["q1"], "documents": LISTS[:1], "labels": [[1, 0, 0]]})
    missing = Dataset.from_dict({"query": ["q1", "q2"], "document": ["a", "b"], "label": [1.0, None]})
    refuse_before_training(
        monot5, BinaryCrossEntropyLoss(monot5), missing, tmp_path, r"Row 1 of the train dataset has no 'label' \(None\)"
    )
    with pytest.raises(ValueError, match="eval dataset"):
        check_dataset(DatasetDict({"a": Dataset.from_dict(lists)}), CircleLoss(listcon), name="eval")
    check_dataset(good, CircleLoss(listcon))  # a good dataset passes


def test_the_family_losses_check_each_batch(load_tiny: Callable[..., CrossEncoder]) -> None:
    """Called without the trainer (no dataset check), a family loss still refuses a NaN label."""
    monot5 = load_tiny("monot5", max_length=64)
    with pytest.raises(ValueError, match="MonoT5CrossEntropyLoss: row 1 of the batch"):
        MonoT5CrossEntropyLoss(monot5)([["q", "q"], ["a", "b"]], torch.tensor([1.0, NAN]))
    with pytest.raises(ValueError, match="InRankerDistillationLoss: row 0 of the batch"):
        InRankerDistillationLoss(monot5)([["q"], ["a"]], [torch.tensor([NAN, 1.0])])
    listcon = load_tiny("listconranker", max_length=64)
    with pytest.raises(ValueError, match="CircleLoss: row 1 of the batch"):
        CircleLoss(listcon)([["q1", "q2"], LISTS], [torch.tensor([1, 0, 0]), torch.tensor([NAN, 1.0])])
    with pytest.raises(TypeError, match="CircleLoss expects a list of documents per query; row 0 has str"):
        CircleLoss(listcon)([["q1"], ["abc"]], [torch.tensor([1, 0, 0])])


# -- QueryLikelihoodLoss and labels --------------------------------------------------------------------------------
def test_query_likelihood_loss_refuses_a_label_column(load_tiny: Callable[..., CrossEncoder], tmp_path: Path) -> None:
    """A label-0 row would train as a positive: the loss has no use for labels, so a dataset with them is refused."""
    model = load_tiny("query-likelihood", max_length=64)
    rows = {"query": ["q1", "q2"], "positive": ["a", "b"], "label": [1, 0]}
    refuse_before_training(
        model, QueryLikelihoodLoss(model), Dataset.from_dict(rows), tmp_path,
        "QueryLikelihoodLoss does not use labels, but the train dataset has a 'label' column",
    )  # fmt: skip
    with pytest.raises(ValueError, match="QueryLikelihoodLoss does not use labels"):
        QueryLikelihoodLoss(model)([["q1", "q2"], ["a", "b"]], torch.tensor([1.0, 0.0]))
    check_dataset(
        Dataset.from_dict({"query": ["q1"], "positive": ["a"], "negative": ["b"]}), QueryLikelihoodLoss(model)
    )


# -- list losses on ListConRanker: whole lists, never cut or merged -------------------------------------------------
@pytest.mark.parametrize("make_loss", [ListNetLoss, LambdaLoss], ids=["listnet", "lambda"])
def test_a_list_loss_that_would_cut_lists_names_the_setting_that_works(
    make_loss: Callable[..., nn.Module], load_tiny: Callable[..., CrossEncoder], tmp_path: Path
) -> None:
    model = load_tiny("listconranker", max_length=64)
    rows = {"query": ["q1", "q2"], "documents": LISTS, "labels": [[1, 0, 0], [1, 0]]}
    name = make_loss.__name__
    refuse_before_training(
        model, make_loss(model), Dataset.from_dict(rows), tmp_path,
        rf"{name}\(mini_batch_size=None\) scores a batch's pairs in chunks.*pass {name}\(model, mini_batch_size=-1\)",
    )  # fmt: skip
    check_dataset(Dataset.from_dict(rows), make_loss(model, mini_batch_size=-1))  # the setting that works


@pytest.mark.parametrize(
    "make_loss", [lambda m: ListNetLoss(m, mini_batch_size=-1), CircleLoss], ids=["listnet", "circle"]
)
def test_lists_sharing_a_query_text_are_refused(
    make_loss: Callable[..., nn.Module], load_tiny: Callable[..., CrossEncoder], tmp_path: Path
) -> None:
    """ListConRanker scores every pair of one query text in a forward pass as one list: the two would merge."""
    model = load_tiny("listconranker", max_length=64)
    rows = {"query": ["q1", "q2", "q1"], "documents": [*LISTS, ["x", "y"]], "labels": [[1, 0, 0], [1, 0], [0, 1]]}
    refuse_before_training(
        model, make_loss(model), Dataset.from_dict(rows), tmp_path,
        "Rows 0 and 2 of the train dataset share the query text 'q1'.*merge them into one row",
    )  # fmt: skip


def test_a_pointwise_model_may_repeat_a_query_in_a_list_loss(load_tiny: Callable[..., CrossEncoder]) -> None:
    rows = {"query": ["q1", "q1"], "documents": LISTS, "labels": [[1, 0, 0], [1, 0]]}
    model = load_tiny("monot5", max_length=64)
    check_dataset(Dataset.from_dict(rows), ListNetLoss(model))  # pairs are scored alone: nothing to merge


# -- misleading inputs: clear messages ------------------------------------------------------------------------------
def test_an_empty_dataset_is_named(load_tiny: Callable[..., CrossEncoder]) -> None:
    model = load_tiny("monot5", max_length=64)
    empty = Dataset.from_dict({"query": [], "document": [], "label": []})
    with pytest.raises(ValueError, match="The train dataset is empty: BinaryCrossEntropyLoss needs at least one row"):
        check_dataset(empty, BinaryCrossEntropyLoss(model))


@pytest.mark.parametrize("make_loss", [BinaryCrossEntropyLoss, MonoT5CrossEntropyLoss], ids=["bce", "castorini"])
def test_a_label_column_under_another_name_is_named(
    make_loss: Callable[..., nn.Module], load_tiny: Callable[..., CrossEncoder], tmp_path: Path
) -> None:
    model = load_tiny("monot5", max_length=64)
    rows = {"query": ["q1", "q2"], "document": ["a", "b"], "relevance": [1, 0]}
    refuse_before_training(
        model, make_loss(model), Dataset.from_dict(rows), tmp_path,
        r"Column 'relevance' of the train dataset holds numbers, not texts: labels are read only from a column "
        r"named label, labels, score, scores \(rename it, e.g. dataset.rename_column\('relevance', 'label'\)\)",
    )  # fmt: skip


@pytest.mark.parametrize(
    "make_loss", [CircleLoss, lambda m: ListNetLoss(m, mini_batch_size=-1)], ids=["circle", "listnet"]
)
def test_documents_given_as_a_string_are_named(
    make_loss: Callable[..., nn.Module], load_tiny: Callable[..., CrossEncoder], tmp_path: Path
) -> None:
    """Each character of the string would have been a document."""
    model = load_tiny("listconranker", max_length=64)
    rows = {"query": ["q1"], "documents": ["Paris is the capital of France."], "labels": [[1, 0, 0]]}
    refuse_before_training(
        model, make_loss(model), Dataset.from_dict(rows), tmp_path,
        "expects a list of documents per row, but column 'documents' of the train dataset holds strings",
    )  # fmt: skip


def test_a_loss_that_needs_labels_gets_none(load_tiny: Callable[..., CrossEncoder]) -> None:
    model = load_tiny("monot5", max_length=64)
    rows = Dataset.from_dict({"query": ["q1"], "document": ["a"]})
    with pytest.raises(
        ValueError, match=r"MonoT5CrossEntropyLoss needs a label column \(label, labels, score, scores\)"
    ):
        check_dataset(rows, MonoT5CrossEntropyLoss(model))
