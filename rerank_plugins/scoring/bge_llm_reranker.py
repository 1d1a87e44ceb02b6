"""bge-reranker-v2-gemma: the logit of ``Yes`` after FlagEmbedding's ``A:``/``B:`` prompt, raw.

As FlagEmbedding's ``FlagLLMReranker`` (``inference/reranker/decoder_only/base.py``, 1.4.2): the query becomes
``A: {query}`` and keeps ``max_length * 3 // 4`` tokens (384), the passage ``B: {passage}`` keeps ``max_length``
(512); the pair ``<bos> + query`` / ``"\\n" + passage`` is cut from the end of the passage to
``max_length + len("\\n") + len(prompt)`` tokens, then ``"\\n"`` and the prompt follow. The score is the logit of
``Yes`` at the last token, raw; FlagEmbedding's ``normalize=True`` is its sigmoid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from torch import nn

from rerank_plugins.families import FamilySpec, TinyModel
from rerank_plugins.scoring.answer_tokens import AnswerTokenScore, causal_lm_int8_targets
from rerank_plugins.scoring.base import Encoded, Pair
from rerank_plugins.scoring.truncation import report_truncated

BGE_PROMPT = (
    "Given a query A and a passage B, determine whether the passage contains an answer to the query by providing a "
    "prediction of either 'Yes' or 'No'."
)
BGE_QUERY = "A: {query}"
BGE_PASSAGE = "B: {passage}"
BGE_SEPARATOR = "\n"


class BgeLLMRerankerScore(AnswerTokenScore):
    """Raw score ``logit(Yes)`` at the last token, as ``FlagLLMReranker.compute_score`` returns it.

    Args:
        model_name_or_path: a FlagLLMReranker checkpoint (bge-reranker-v2-gemma: ``GemmaForCausalLM``).
        instruction: FlagEmbedding's ``prompt`` (its default asks for 'Yes' or 'No'); a per-call prompt
            (sentence-transformers' ``prompt=`` / ``prompt_name=``) replaces it for that call.
        query_max_length: tokens kept of ``A: {query}`` (FlagEmbedding's default: ``max_length * 3 // 4``).
        normalize: make the sigmoid the default activation (FlagEmbedding's ``normalize=True``).
        max_length: tokens kept of ``B: {passage}`` (FlagEmbedding's 512); the pair is cut to it plus the
            separator and prompt.
    """

    family: ClassVar[str] = "bge-llm-reranker"
    default_max_length: ClassVar[int] = 512
    config_keys: list[str] = ["instruction", "query_max_length", "normalize"]

    def __init__(
        self,
        model_name_or_path: str,
        *,
        instruction: str = BGE_PROMPT,
        query_max_length: int | None = None,
        normalize: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_name_or_path, **kwargs)
        if not isinstance(instruction, str):
            raise TypeError(f"instruction must be a str, got {type(instruction).__name__}.")
        if query_max_length is not None and (not isinstance(query_max_length, int) or query_max_length < 1):
            raise ValueError(f"query_max_length must be a positive number of tokens, got {query_max_length!r}.")
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be True or False, got {normalize!r}.")
        self.instruction, self.query_max_length, self.normalize = instruction, query_max_length, normalize
        (self.separator_ids,) = self.token_ids([BGE_SEPARATOR])
        tokenizer = self.tokenizer
        # FlagEmbedding puts <bos> first when the tokenizer has one that is not also its pad token.
        bos = tokenizer.bos_token_id
        self.bos_ids = [int(bos)] if bos is not None and bos != tokenizer.pad_token_id else []
        self.set_answer_tokens([self.answer_token_id("Yes")])  # tokenizer('Yes', add_special_tokens=False)[0]

    def default_activation(self) -> nn.Module:
        """The activation ``predict`` applies unless told otherwise: identity, or with ``normalize`` the sigmoid."""
        return nn.Sigmoid() if self.normalize else nn.Identity()

    def encode(self, rows: Sequence[Pair], prompt: str | None = None) -> list[Encoded]:
        """``compute_score_single_gpu``'s inputs: the query and passage budgets, the pair cut, separator + prompt."""
        (prompt_ids,) = self.token_ids([self.instruction if prompt is None else prompt])
        query_limit = self.query_max_length or self.max_length * 3 // 4
        pair_limit = self.max_length + len(self.separator_ids) + len(prompt_ids)
        query_texts = list(dict.fromkeys(query for query, _ in rows))
        queries = dict(zip(query_texts, self.token_ids([BGE_QUERY.format(query=q) for q in query_texts]), strict=True))
        passages = self.token_ids([BGE_PASSAGE.format(passage=passage) for _, passage in rows])
        encoded, cut = [], 0
        for (query, _), passage_ids in zip(rows, passages, strict=True):
            first = self.bos_ids + self.cut(queries[query], query_limit)
            second = self.separator_ids + self.cut(passage_ids, self.max_length)
            excess = len(first) + len(second) - pair_limit
            if 0 < excess < len(second):  # prepare_for_model(truncation="only_second"): the passage's end goes
                second = self.cut(second, len(second) - excess)
            cut += len(queries[query]) > query_limit or len(self.separator_ids) + len(passage_ids) > len(second)
            row = first + second + self.separator_ids + prompt_ids
            encoded.append(Encoded(len(row), row))
        report_truncated(cut)
        return encoded


FAMILY = FamilySpec(
    "bge-llm-reranker",
    module=BgeLLMRerankerScore,
    activation="identity",  # FlagEmbedding returns the raw logit unless normalize=True (see default_activation)
    int8_targets=causal_lm_int8_targets,
    backends=("torch", "onnx", "openvino"),
    tiny_models=(
        TinyModel(
            "bge-llm-reranker",
            "GemmaForCausalLM with Gemma's tokens (bge-reranker-v2-gemma-like)",
            "rerank_plugins.testing.causal_lm:gemma_causal_lm",
            {
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 1,
                "head_dim": 8,
                "max_position_embeddings": 8192,
            },
            detected=False,
        ),
    ),
)
