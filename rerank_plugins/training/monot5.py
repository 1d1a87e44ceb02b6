"""monoT5 / InRanker training objectives: InRanker's distillation and castorini's cross-entropy.

Both read the T5 model inside :class:`~rerank_plugins.scoring.MonoT5Score`; scoring is unchanged, so a model
trained here ranks through ``predict``, ``rank``, the adapters and the CLI as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder
from sentence_transformers.util import batch_to_device
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedTokenizerBase

from rerank_plugins.scoring.monot5 import MonoT5Score
from rerank_plugins.training._common import family_module, label_rows

RELEVANT_TAG_SPACE = 10
"""InRanker's trainer keeps ``max_length - 10 - len(query ids)`` document tokens ("Relevant", specials, slack)."""


def inranker_features(
    tokenizer: PreTrainedTokenizerBase, queries: Sequence[str], documents: Sequence[str], max_length: int
) -> dict[str, torch.Tensor]:
    """The inputs InRanker's ``InRankerTrainer.tokenize`` builds, padded to the longest row (not ``max_length``).

    Per pair, without special tokens (so no ``</s>``): ids of ``"Query: q"``, then ids of ``"Document: d"``
    kept to ``max_length - 10 - len(query ids)`` (a Python slice, as theirs: a negative budget drops tokens from
    the end), then ids of ``" Relevant:"``; the whole cut to ``max_length``. Right padding with the pad id.
    InRanker pads every row to ``max_length``; pads are masked, so the logits agree (to float rounding).
    """
    rows = []
    for query, document in zip(queries, documents, strict=True):
        query_ids = tokenizer.encode(f"Query: {query}", add_special_tokens=False)
        document_ids = tokenizer.encode(f"Document: {document}", add_special_tokens=False)
        document_ids = document_ids[: max_length - RELEVANT_TAG_SPACE - len(query_ids)]
        ids = query_ids + document_ids + tokenizer.encode(" Relevant:", add_special_tokens=False)
        rows.append(ids[:max_length])
    width = max(len(row) for row in rows)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def first_step_logits(module: MonoT5Score, features: dict[str, torch.Tensor]) -> torch.Tensor:
    """The T5 model's full-vocabulary logits at the first decoder step, ``(rows, vocab)``, as the authors run it."""
    model = module.model
    input_ids = features["input_ids"]
    start = torch.full((input_ids.shape[0], 1), model.config.decoder_start_token_id, device=input_ids.device)
    outputs = model(
        input_ids=input_ids, attention_mask=features["attention_mask"], decoder_input_ids=start, use_cache=False
    )
    return outputs.logits[:, 0]


class InRankerDistillationLoss(nn.Module):
    """InRanker's distillation loss: ``MSE(student [false, true] logits, teacher's zero-centred [false, true])``.

    The same numbers as ``inranker.training.T5Trainer.compute_loss`` on the same batch: the student's logits at
    the first decoder step (``decoder_start_token_id``) read at ``▁false``/``▁true``, against the teacher's
    logits minus their mean, on inputs built by :func:`inranker_features` (not by ``MonoT5Score``'s template).

    Dataset columns: ``query``, ``document``, ``label`` = ``[false_logit, true_logit]`` of the teacher
    (:func:`~rerank_plugins.training.load_distillation_file` reads InRanker's JSONL so).

    Args:
        model: a ``rerank_plugins.CrossEncoder`` of the monoT5 family.
        max_length: InRanker's ``max_length`` (their default 512); defaults to the model's ``max_length``.
    """

    needs_labels = True  # read by training.checks.check_dataset

    def __init__(self, model: STCrossEncoder, max_length: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.module = family_module(model, MonoT5Score, type(self).__name__)
        self.max_length = int(max_length or self.module.max_length)

    def forward(
        self, inputs: list[list[str]], labels: Any, prompt: str | None = None, task: str | None = None
    ) -> torch.Tensor:
        if len(inputs) != 2:
            raise ValueError(f"{type(self).__name__} expects two text columns (query, document), got {len(inputs)}.")
        features = inranker_features(self.module.tokenizer, inputs[0], inputs[1], self.max_length)
        features = batch_to_device(features, self.model.device)
        logits = first_step_logits(self.module, features)[:, self.module.token_ids].float()  # [false, true]
        teacher = label_rows(labels, 2, type(self).__name__).to(logits.device)
        teacher = teacher - teacher.mean(dim=1, keepdim=True)  # InRanker zero-centres the teacher's logits
        return F.mse_loss(logits, teacher)

    def get_config_dict(self) -> dict[str, Any]:
        return {"max_length": self.max_length}


class MonoT5CrossEntropyLoss(nn.Module):
    """castorini's monoT5 fine-tuning: cross-entropy over the full vocabulary on the target ``true``/``false``.

    As pygaggle's ``finetune_monot5.py``: the input is ``MonoT5Score``'s text ("Query: q Document: d Relevant:"
    + ``</s>``, cut at ``max_length``), the decoder target is the tokenized word, ``[▁true, </s>]`` or
    ``[▁false, </s>]``, and the loss is T5's own mean cross-entropy over those target tokens.
    ``eos=False`` keeps the first decoder step only (the one that ranking reads).

    Dataset columns: ``query``, ``document``, ``label`` (1 = relevant, 0 = not; above 0.5 counts as relevant).
    """

    needs_labels = True  # read by training.checks.check_dataset

    def __init__(self, model: STCrossEncoder, eos: bool = True) -> None:
        super().__init__()
        self.model = model
        self.module = family_module(model, MonoT5Score, type(self).__name__)
        self.eos = eos
        if eos and self.module.tokenizer.eos_token_id is None:
            raise ValueError("The tokenizer has no eos token: pass eos=False to train the first decoder step only.")

    def forward(
        self, inputs: list[list[str]], labels: torch.Tensor, prompt: str | None = None, task: str | None = None
    ) -> torch.Tensor:
        if len(inputs) != 2:
            raise ValueError(f"{type(self).__name__} expects two text columns (query, document), got {len(inputs)}.")
        features = self.module.preprocess(list(zip(inputs[0], inputs[1], strict=True)))
        features = batch_to_device(features, self.model.device)
        relevant = label_rows(labels, 1, type(self).__name__)[:, 0].to(self.model.device) > 0.5
        false_id, true_id = self.module.token_ids
        targets = torch.where(relevant, true_id, false_id).unsqueeze(1)
        if self.eos:
            targets = torch.cat([targets, torch.full_like(targets, self.module.tokenizer.eos_token_id)], dim=1)
        outputs = self.module.model(
            input_ids=features["input_ids"], attention_mask=features["attention_mask"], labels=targets, use_cache=False
        )
        return outputs.loss

    def get_config_dict(self) -> dict[str, Any]:
        return {"eos": self.eos}
