"""mxbai-rerank-v2: ``logit("1") - logit("0")`` after the ``mxbai-rerank`` package's prompt, raw.

As ``mxbai_rerank/mxbai_rerank_v2.py`` (``MxbaiRerankV2``, package 0.1.6): the query text ``query: {query}``
(after ``instruction: {instruction}\\n`` when one is given) keeps ``max_length * 3 // 4`` tokens; the document text
``document: {document}`` keeps ``min(positions - query - template, max_length)``; the pair ``query + "\\n" + document``
is then cut from the end of the document to ``max_length`` (8192) and wrapped in the chat prefix, ``"\\n"``, the task
prompt (ending ``Relevance:``) and the assistant suffix. The score is the raw margin; the package's
``normalize=True`` is ``sigmoid(score - estimated_max / 2)`` (:class:`MxbaiNormalize`), with ``estimated_max`` 9
for the base model and 12 for the large one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from rerank_plugins.families import FamilySpec, TinyModel
from rerank_plugins.scoring.answer_tokens import AnswerTokenScore, causal_lm_int8_targets
from rerank_plugins.scoring.base import Encoded, Pair, position_limit
from rerank_plugins.scoring.truncation import report_truncated

MXBAI_PREFIX = (
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n"
)
MXBAI_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n"
MXBAI_TASK = (
    "You are a search relevance expert who evaluates how well documents match search queries. For each "
    "query-document pair, carefully analyze the semantic relationship between them, then provide your binary "
    "relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:"
)
MXBAI_SEPARATOR = "\n"
MXBAI_ESTIMATED_MAX = 12.0  # the package's default for a model it does not know (base-v2: 9, large-v2: 12)


class MxbaiNormalize(nn.Module):
    """The package's ``normalize=True``: ``sigmoid(score - estimated_max / 2)``, a score in (0, 1)."""

    def __init__(self, estimated_max: float = MXBAI_ESTIMATED_MAX) -> None:
        super().__init__()
        self.estimated_max = float(estimated_max)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(scores - self.estimated_max / 2)

    def extra_repr(self) -> str:
        return f"estimated_max={self.estimated_max}"


class MxbaiRerankV2Score(AnswerTokenScore):
    """Raw score ``logit("1") - logit("0")`` at the last token, as ``MxbaiRerankV2.predict`` returns it.

    Args:
        model_name_or_path: an mxbai-rerank-v2 checkpoint (``Qwen2ForCausalLM``).
        instruction: the package's ``instruction=`` (none by default); a per-call prompt (sentence-transformers'
            ``prompt=`` / ``prompt_name=``) replaces it for that call.
        normalize: make :class:`MxbaiNormalize` the default activation (the package's ``normalize=True``).
        estimated_max: the package's ``estimated_max`` for ``normalize``.
        max_length: the package's ``max_length`` (8192): the query-plus-document budget, template excluded.
    """

    family: ClassVar[str] = "mxbai-rerank-v2"
    default_max_length: ClassVar[int] = 8192
    config_keys: list[str] = ["instruction", "normalize", "estimated_max"]

    def __init__(
        self,
        model_name_or_path: str,
        *,
        instruction: str | None = None,
        normalize: bool = False,
        estimated_max: float = MXBAI_ESTIMATED_MAX,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_name_or_path, **kwargs)
        if instruction is not None and not isinstance(instruction, str):
            raise TypeError(f"instruction must be a str or None, got {type(instruction).__name__}.")
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be True or False, got {normalize!r}.")
        self.instruction, self.normalize, self.estimated_max = instruction, normalize, float(estimated_max)
        self.prefix_ids, self.suffix_ids, self.task_ids, self.separator_ids = self.token_ids(
            [MXBAI_PREFIX, MXBAI_SUFFIX, MXBAI_TASK, MXBAI_SEPARATOR]
        )
        template = len(self.prefix_ids) + len(self.task_ids) + len(self.suffix_ids) + len(self.separator_ids)
        # The package's model_max_length is the config's max_position_embeddings; the pair budget leaves room for
        # the template within it.
        self.positions = position_limit(self.model.config) or self.max_length + template
        self.max_length = min(self.max_length, self.positions - template)
        self.template_length = template
        if self.max_length < 4:
            raise ValueError(f"{model_name_or_path!r} has {self.positions} positions: no room for a pair.")
        self.set_answer_tokens([self.answer_token_id("1"), self.answer_token_id("0")])

    def default_activation(self) -> nn.Module:
        """The activation ``predict`` applies unless told otherwise: identity, or with ``normalize`` the package's."""
        return MxbaiNormalize(self.estimated_max) if self.normalize else nn.Identity()

    def encode(self, rows: Sequence[Pair], prompt: str | None = None) -> list[Encoded]:
        """``prepare_inputs`` of the package: query and document budgets, the pair cut, the template around it."""
        instruction = self.instruction if prompt is None else prompt
        query_texts = list(dict.fromkeys(query for query, _ in rows))
        lead = f"instruction: {instruction}{MXBAI_SEPARATOR}" if instruction else ""
        query_limit = self.max_length * 3 // 4
        queries = dict(zip(query_texts, self.token_ids([f"{lead}query: {q}" for q in query_texts]), strict=True))
        documents = self.token_ids([f"document: {document}" for _, document in rows])
        encoded, cut = [], 0
        for (query, _), document_ids in zip(rows, documents, strict=True):
            query_ids = self.cut(queries[query], query_limit)
            document_budget = min(self.positions - len(query_ids) - self.template_length, self.max_length)
            second = self.separator_ids + self.cut(document_ids, document_budget)
            excess = len(query_ids) + len(second) - self.max_length
            if 0 < excess < len(second):  # prepare_for_model(truncation="only_second"): the document's end goes
                second = self.cut(second, len(second) - excess)
            cut += len(queries[query]) > query_limit or len(self.separator_ids) + len(document_ids) > len(second)
            row = self.prefix_ids + query_ids + second + self.separator_ids + self.task_ids + self.suffix_ids
            encoded.append(Encoded(len(row), row))
        report_truncated(cut)
        return encoded


FAMILY = FamilySpec(
    "mxbai-rerank-v2",
    module=MxbaiRerankV2Score,
    activation="identity",  # the package returns the raw margin unless normalize=True (see default_activation)
    int8_targets=causal_lm_int8_targets,
    backends=("torch", "onnx", "openvino"),
    tiny_models=(
        TinyModel(
            "mxbai-rerank-v2",
            "Qwen2ForCausalLM with Qwen2.5's tokens (mxbai-rerank-v2-like)",
            "rerank_plugins.testing.causal_lm:qwen2_causal_lm",
            {
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "max_position_embeddings": 32768,
            },
            detected=False,
        ),
    ),
)
