"""Sequence classification (DistillRankNET, R*, any Hugging Face cross-encoder): sentence-transformers' own modules.

The checkpoint loads as sentence-transformers' ``Transformer`` with its classification head (:class:`PairClassifier`,
which also reports truncation). A two-label head
gets :class:`LabelMargin` after it: ``logit[1] - logit[0]``, whose sigmoid is exactly ``softmax(logits)[:, 1]``,
so ``predict`` returns P(relevant) as one score per pair and ``rank`` works. ``family_options={"truncation":
"only_second"}`` cuts the document first (xpmir's DistillRankNET) and caps the query at half of ``max_length``
as xpmir does.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from sentence_transformers.base.modules import Dense, Transformer
from torch import nn

from rerank_plugins.families import CheckpointInfo, FamilySpec, LoadRequest
from rerank_plugins.scoring.base import position_limit
from rerank_plugins.scoring.truncation import report_truncated, truncated_rows, untruncated
from rerank_plugins.windows import first_tokens

logger = logging.getLogger(__name__)


class LabelMargin(Dense):
    """``scores[:, 1] - scores[:, 0]`` in fp32: a two-label classifier as one relevance score per pair.

    A ``Dense`` [-1, 1] to sentence-transformers (so plain sentence-transformers reads one label from it), computed
    in fp32 because the margin of two bf16 logits would often round to a tie.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # saved settings are always these: ignore them
        super().__init__(
            2,
            1,
            bias=False,
            activation_function=None,
            init_weight=torch.tensor([[-1.0, 1.0]]),
            module_input_name="scores",
        )

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        logits = features["scores"].float()
        features["scores"] = (logits[:, 1] - logits[:, 0]).unsqueeze(-1)
        return features


class PairClassifier(Transformer):
    """sentence-transformers' ``Transformer`` with a classification head, reporting what it cuts.

    With ``truncation="only_second"`` (xpmir's DistillRankNET) the document is cut first and a query keeps at most
    half of ``max_length``, as xpmir's tokenizer does.
    """

    def preprocess(self, inputs: Any, prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        max_length = self.max_seq_length
        if prompt is not None or not max_length or not inputs or not isinstance(inputs[0], (list, tuple)):
            return super().preprocess(inputs, prompt=prompt, **kwargs)
        cut: set[int] = set()
        if self.processing_kwargs.get("text", {}).get("truncation") == "only_second":
            tokenizer = untruncated(self.tokenizer)
            capped = [(first_tokens(tokenizer, query, max_length // 2), document) for query, document in inputs]
            cut = {i for i, (pair, new) in enumerate(zip(inputs, capped, strict=True)) if pair[0] != new[0]}
            inputs = capped
        features = super().preprocess(inputs, prompt=prompt, **kwargs)
        if "attention_mask" in features:
            pairs = [tuple(pair) for pair in inputs]
            cut.update(truncated_rows(self.tokenizer, pairs, features["attention_mask"], max_length))
        report_truncated(len(cut))
        return features


def build_sequence_classifier(request: LoadRequest) -> list[nn.Module]:
    """A :class:`PairClassifier` with its classification head (+ :class:`LabelMargin` for 2 labels)."""
    options = dict(request.options)
    truncation = options.pop("truncation", None)
    if options:
        raise ValueError(f"Unknown family_options {sorted(options)} for sequence classification: use 'truncation'.")
    hub = request.hub
    # Transformer takes cache_dir on its own; everything else goes to every from_pretrained call.
    shared = {key: value for key, value in hub.pretrained_kwargs().items() if key != "cache_dir"}
    transformer = PairClassifier(
        request.name_or_path,
        transformer_task="sequence-classification",
        cache_dir=hub.cache_folder,
        model_kwargs={**shared, **(request.model_kwargs or {})},
        processor_kwargs={**shared, **(request.processor_kwargs or {})},
        config_kwargs={**shared, **(request.config_kwargs or {})},
        backend=request.backend,
        tokenizer_name_or_path=request.tokenizer_name_or_path,
        processing_kwargs={"text": {"truncation": truncation}} if truncation else None,
    )
    # The model's position table bounds max_length too (a 128-position BERT cannot take 512 tokens).
    limit = position_limit(transformer.model.config)
    if limit is not None and (transformer.max_seq_length is None or transformer.max_seq_length > limit):
        logger.info("%s has %d positions: max_length is %d tokens.", request.name_or_path, limit, limit)
        transformer.max_seq_length = limit
    modules: list[nn.Module] = [transformer]
    if transformer.model.config.num_labels == 2:
        modules.append(LabelMargin())
    return modules


def has_classification_head(info: CheckpointInfo) -> bool:
    """A checkpoint saved with a sequence-classification head (or, lacking ``architectures``, assumed to be one)."""
    architectures = info.architectures
    return not architectures or any(name.endswith("ForSequenceClassification") for name in architectures)


def sequence_classification_int8_targets(model: Any) -> list[nn.Module]:
    """The transformer body; the classification head stays float (one output: nothing to gain, accuracy to lose)."""
    return [model[0].model.base_model]


FAMILY = FamilySpec(
    "sequence-classification",
    build=build_sequence_classifier,
    activation=None,  # sentence-transformers' own default (sigmoid for one label); registry entries may override
    recognize=has_classification_head,
    int8_targets=sequence_classification_int8_targets,
    module_classes=(PairClassifier, LabelMargin),
)

__all__ = ["FAMILY", "LabelMargin", "PairClassifier", "build_sequence_classifier"]
