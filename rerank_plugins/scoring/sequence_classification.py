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
from collections.abc import Sequence
from typing import Any

import torch
from sentence_transformers.base.modules import Dense, Transformer
from torch import nn

from rerank_plugins.backends.graph import ScoreGraph, run_length_chunks
from rerank_plugins.backends.options import split_backend_options
from rerank_plugins.backends.runtime import CompiledScoring
from rerank_plugins.families import CheckpointInfo, FamilySpec, LoadRequest, TinyModel
from rerank_plugins.hub import HubOptions
from rerank_plugins.scoring.base import Encoded, Pair, pad_rows, position_limit
from rerank_plugins.scoring.padding import length_chunks, run_chunks
from rerank_plugins.scoring.truncation import cut_rows, report_truncated, untruncated
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


class PairClassifier(CompiledScoring, Transformer):
    """sentence-transformers' ``Transformer`` with a classification head, reporting what it cuts.

    With ``truncation="only_second"`` (xpmir's DistillRankNET) the document is cut first and a query keeps at most
    half of ``max_length``, as xpmir's tokenizer does. With ``backend="onnx" | "openvino"`` the classifier runs as
    an exported graph in sentence-transformers' layout (``onnx/model.onnx``, ``openvino/openvino_model.xml``:
    inputs ``input_ids``, ``attention_mask`` [, ``token_type_ids``], output ``logits``), which Optimum's exports
    also are, so a file exported by either loads in both.
    """

    def __init__(
        self,
        model_name_or_path: str,
        *,
        backend: str = "torch",
        model_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        options, model_kwargs = split_backend_options(backend, model_kwargs)
        super().__init__(model_name_or_path, backend="torch", model_kwargs=model_kwargs, **kwargs)
        self.backend = backend  # type: ignore[assignment]  # checked by the family (FamilySpec.check_backend)
        hub = HubOptions(
            token=model_kwargs.get("token"),
            revision=model_kwargs.get("revision"),
            cache_folder=model_kwargs.get("cache_dir", kwargs.get("cache_dir")),
            local_files_only=bool(model_kwargs.get("local_files_only", False)),
        )
        self.start_backend(model_name_or_path, options, hub)

    def score_graph(self) -> ScoreGraph:
        """The Hugging Face classifier itself: ids and masks in, ``logits`` out (Optimum's names)."""
        inputs = ("input_ids", "attention_mask") + (("token_type_ids",) if self.uses_token_types else ())
        axes = {name: {0: "batch_size", 1: "sequence_length"} for name in inputs}
        return ScoreGraph(ClassifierGraph(self.model, inputs), inputs, "logits", {**axes, "logits": {0: "batch_size"}})

    @property
    def uses_token_types(self) -> bool:
        tokenizer = self.tokenizer
        return tokenizer is not None and "token_type_ids" in tokenizer.model_input_names

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """The classifier's logits as ``scores``: in length chunks when scoring (``padding.length_chunks``), in one
        forward when training (sentence-transformers' own)."""
        if self.runtime is not None:
            features["scores"] = run_length_chunks(self.runtime, features)
            return features
        mask = features.get("attention_mask")
        chunks = [] if self.training or mask is None else length_chunks(mask)
        if mask is None or len(chunks) <= 1:  # training, or a batch one forward serves best (on an accelerator: all)
            return super().forward(features, **kwargs)
        transformer_forward = super().forward

        def chunk_logits(rows: torch.Tensor, width: int) -> torch.Tensor:
            # the (rows, length) tensors trimmed to the chunk; the rest (``modality``) as they are
            chunk = {key: value[rows, :width] if padded_like(value, mask) else value for key, value in features.items()}
            return transformer_forward(chunk, **kwargs)["scores"]

        features["scores"] = run_chunks(chunks, chunk_logits)
        return features

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        super().save(output_path, *args, **kwargs)
        self.save_backend(output_path)

    def encode(self, rows: Sequence[Pair], prompt: str | None = None) -> list[Encoded]:
        """Each pair tokenized as sentence-transformers does (a prompt goes before the query), unpadded.

        With ``truncation="only_second"`` the query first keeps at most half of ``max_length`` tokens (xpmir).
        """
        max_length = self.max_seq_length
        tokenizer = self.tokenizer
        assert tokenizer is not None  # a text model always has one
        truncation = self.processing_kwargs.get("text", {}).get("truncation") or "longest_first"
        pairs = [(prompt + query if prompt else query, document) for query, document in rows]
        cut: set[int] = set()
        if truncation == "only_second" and max_length:
            whole = untruncated(tokenizer)
            capped = [(first_tokens(whole, query, max_length // 2), document) for query, document in pairs]
            cut = {i for i, (pair, new) in enumerate(zip(pairs, capped, strict=True)) if pair[0] != new[0]}
            pairs = capped
        encoded = tokenizer(
            [query for query, _ in pairs],
            [document for _, document in pairs],
            truncation=truncation if max_length else False,
            max_length=max_length,
        )
        rows_ids = encoded["input_ids"]
        if max_length:
            full = [i for i, ids in enumerate(rows_ids) if len(ids) >= max_length and i not in cut]
            cut.update(full[j] for j in cut_rows(tokenizer, [pairs[i] for i in full], max_length))
        report_truncated(len(cut))
        types = encoded.get("token_type_ids")
        return [
            Encoded(len(ids), {"input_ids": ids} if types is None else {"input_ids": ids, "token_type_ids": types[i]})
            for i, ids in enumerate(rows_ids)
        ]

    def collate(self, rows: Sequence[Encoded]) -> dict[str, Any]:
        """Padded as sentence-transformers' own ``preprocess`` pads (the tokenizer's side and pad ids)."""
        tokenizer = self.tokenizer
        assert tokenizer is not None
        side = tokenizer.padding_side
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        input_ids, attention_mask = pad_rows([row.data["input_ids"] for row in rows], pad_id, side)
        features: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in rows[0].data:
            type_pad = getattr(tokenizer, "pad_token_type_id", 0)
            features["token_type_ids"] = pad_rows([row.data["token_type_ids"] for row in rows], type_pad, side)[0]
        features["modality"] = "text"
        return features

    def preprocess(self, inputs: Any, prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """Pairs through :meth:`encode` and :meth:`collate`; anything else (single texts) as sentence-transformers."""
        if not inputs or not isinstance(inputs[0], (list, tuple)):
            return super().preprocess(inputs, prompt=prompt, **kwargs)
        return self.collate(self.encode(inputs, prompt))


def padded_like(value: Any, mask: torch.Tensor) -> bool:
    """True for a tensor laid out like the attention mask (ids, token types): one row per pair, one column per token."""
    return isinstance(value, torch.Tensor) and value.shape == mask.shape


class ClassifierGraph(nn.Module):
    """A Hugging Face sequence classifier as a function of positional tensors (for ``torch.onnx.export``)."""

    def __init__(self, model: nn.Module, inputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.inputs = model, inputs

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.inputs, tensors, strict=True))).logits


def build_sequence_classifier(request: LoadRequest) -> list[nn.Module]:
    """A :class:`PairClassifier` with its classification head (+ :class:`LabelMargin` for 2 labels)."""
    options = dict(request.options)
    truncation = options.pop("truncation", None)
    if options:
        raise ValueError(f"Unknown family_options {sorted(options)} for sequence classification: use 'truncation'.")
    refuse_causal_lm(CheckpointInfo(request.name_or_path, request.hub))
    transformer = PairClassifier(
        request.name_or_path,
        transformer_task="sequence-classification",
        processing_kwargs={"text": {"truncation": truncation}} if truncation else None,
        **request.transformer_kwargs(),
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


CAUSAL_LM_FAMILIES = ("logit-score", "qwen3-reranker", "mxbai-rerank-v2", "bge-llm-reranker", "query-likelihood")
"""The built-in families that score a causal LM."""


def refuse_causal_lm(info: CheckpointInfo) -> None:
    """A causal LM without a trained classification head would get a random one: a ``ValueError`` instead."""
    architectures = info.architectures
    causal = [name for name in architectures if name.endswith(("ForCausalLM", "LMHeadModel"))]
    if causal and not any(name.endswith("ForSequenceClassification") for name in architectures):
        raise ValueError(
            f"{info.name_or_path!r} is a causal LM ({causal[0]}) without a trained sequence-classification head: "
            "family='sequence-classification' would put a randomly initialised one on it. The families that score "
            f"a causal LM: {', '.join(CAUSAL_LM_FAMILIES)} (or preset= a hub id of the registry for a local copy)."
        )


def has_classification_head(info: CheckpointInfo) -> bool:
    """A checkpoint saved with a sequence-classification head (or, lacking ``architectures``, assumed to be one)."""
    architectures = info.architectures
    return not architectures or any(name.endswith("ForSequenceClassification") for name in architectures)


def sequence_classification_int8_targets(model: Any) -> list[nn.Module]:
    """The transformer body; the classification head stays float (one output: nothing to gain, accuracy to lose)."""
    return [model[0].model.base_model]


BERT_SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
"""The tiny BERT of the tests."""

FAMILY = FamilySpec(
    "sequence-classification",
    build=build_sequence_classifier,
    activation=None,  # sentence-transformers' own default (sigmoid for one label); registry entries may override
    recognize=has_classification_head,
    int8_targets=sequence_classification_int8_targets,
    module_classes=(PairClassifier, LabelMargin),
    backends=("torch", "onnx", "openvino"),
    tiny_models=(
        TinyModel(
            "sequence-classification",
            "BertForSequenceClassification, 1 label (R*-like)",
            "rerank_plugins.testing.builders:bert_classifier",
            BERT_SIZES,
        ),
        TinyModel(
            "sequence-classification-2",
            "BertForSequenceClassification, 2 labels",
            "rerank_plugins.testing.builders:bert_classifier",
            BERT_SIZES,
            detected=False,
            options={"num_labels": 2},
        ),
        TinyModel(
            "deberta",
            "DebertaV2ForSequenceClassification, 1 label (DistillRankNET-like)",
            "rerank_plugins.testing.builders:deberta_classifier",
            {**BERT_SIZES, "position_buckets": 16},
            detected=False,
        ),
    ),
)


__all__ = ["FAMILY", "LabelMargin", "PairClassifier", "build_sequence_classifier"]
