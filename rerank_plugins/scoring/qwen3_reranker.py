"""Qwen3-Reranker: P(yes) after the model card's chat prompt, read at its last token.

The card (``Qwen/Qwen3-Reranker-0.6B``, ``-4B``, ``-8B``) formats each pair as
``<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {document}``, cuts that text to
``max_length - len(prefix) - len(suffix)`` tokens (``max_length`` 8192), wraps its ids in the system prefix and the
assistant suffix (an empty ``<think>`` block), and scores ``exp(log_softmax([logit(no), logit(yes)])[1])`` at the
last position. That is ``sigmoid(logit(yes) - logit(no))``: this module returns the margin, the family's sigmoid
makes it P(yes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rerank_plugins.families import FamilySpec, TinyModel
from rerank_plugins.scoring.answer_tokens import AnswerTokenScore, causal_lm_int8_targets
from rerank_plugins.scoring.base import Encoded, Pair
from rerank_plugins.scoring.truncation import report_truncated

QWEN3_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
QWEN3_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
QWEN3_BODY = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"


class Qwen3RerankerScore(AnswerTokenScore):
    """Raw score ``logit(yes) - logit(no)`` at the last token; its sigmoid is the card's P(yes).

    Args:
        model_name_or_path: a Qwen3-Reranker checkpoint (``Qwen3ForCausalLM``).
        instruction: the ``<Instruct>`` line (the card's default: a web search query). A per-call prompt
            (sentence-transformers' ``prompt=`` / ``prompt_name=``) replaces it for that call.
        max_length: tokens of the whole input, prefix and suffix included (the card's 8192).
    """

    family: ClassVar[str] = "qwen3-reranker"
    default_max_length: ClassVar[int] = 8192
    config_keys: list[str] = ["instruction"]

    def __init__(self, model_name_or_path: str, *, instruction: str = QWEN3_INSTRUCTION, **kwargs: Any) -> None:
        super().__init__(model_name_or_path, **kwargs)
        if not isinstance(instruction, str):
            raise TypeError(f"instruction must be a str, got {type(instruction).__name__}.")
        self.instruction = instruction
        self.prefix_ids, self.suffix_ids = self.token_ids([QWEN3_PREFIX, QWEN3_SUFFIX])
        if self.max_length <= len(self.prefix_ids) + len(self.suffix_ids):
            raise ValueError(
                f"max_length={self.max_length} leaves no room for the pair inside the prompt's "
                f"{len(self.prefix_ids) + len(self.suffix_ids)} template tokens."
            )
        # The card: token_false_id, token_true_id = convert_tokens_to_ids("no"), convert_tokens_to_ids("yes").
        self.set_answer_tokens([self.answer_token_id("yes", lookup=True), self.answer_token_id("no", lookup=True)])

    def encode(self, rows: Sequence[Pair], prompt: str | None = None) -> list[Encoded]:
        """The card's body text per pair, cut to its budget and wrapped in the prefix and suffix ids."""
        instruction = self.instruction if prompt is None else prompt
        budget = self.max_length - len(self.prefix_ids) - len(self.suffix_ids)
        texts = [QWEN3_BODY.format(instruction=instruction, query=query, document=document) for query, document in rows]
        encoded, cut = [], 0
        for ids in self.token_ids(texts):
            cut += len(ids) > budget
            row = self.prefix_ids + self.cut(ids, budget) + self.suffix_ids
            encoded.append(Encoded(len(row), row))
        report_truncated(cut)
        return encoded


QWEN3_SIZES = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
               "num_key_value_heads": 2, "head_dim": 8, "max_position_embeddings": 40960}  # fmt: skip
"""The tiny Qwen3 of the tests (Qwen3-Reranker-0.6B's layout: grouped keys and values, a tied LM head)."""

FAMILY = FamilySpec(
    "qwen3-reranker",
    module=Qwen3RerankerScore,
    activation="sigmoid",  # sigmoid(logit(yes) - logit(no)) = softmax over [no, yes]: the card's P(yes)
    int8_targets=causal_lm_int8_targets,
    backends=("torch", "onnx", "openvino"),
    tiny_models=(
        TinyModel(
            "qwen3-reranker",
            "Qwen3ForCausalLM with Qwen3's tokens (Qwen3-Reranker-like)",
            "rerank_plugins.testing.causal_lm:qwen3_causal_lm",
            QWEN3_SIZES,
            detected=False,  # a bare Qwen3 causal LM is read as sentence-transformers reads it (logit-score)
        ),
    ),
)
