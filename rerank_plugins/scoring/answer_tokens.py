"""What the causal-LM rerankers share: a prompt in, the logits of one or two answer tokens at its last token out.

Qwen3-Reranker reads ``yes``/``no``, mxbai-rerank-v2 ``1``/``0``, bge-reranker-v2-gemma ``Yes`` alone, each after
its own prompt (one family file each: ``qwen3_reranker.py``, ``mxbai_rerank.py``, ``bge_llm_reranker.py``). The
authors run the whole causal LM and take full-vocabulary logits (``batch x length x vocab``: 151,669 columns for
Qwen3) to read one or two of them at one position. Here the body runs to hidden states, only the last real token
of each row is kept, and it meets only the LM head's rows of the answer tokens: ``(rows, hidden) @ (hidden, 2)``.
The same numbers, without the vocabulary-wide product or its memory.

Rows are padded on the right (pads come after every real token, so causal attention never lets a real token see
one) and positions count from each row's first token, so a row scores the same alone, in any batch, and padded on
either side. The body runs in chunks of similar length (``padding.length_chunks``): no work on pad tokens.

On ONNX Runtime and OpenVINO the exported graph is the same computation (:class:`AnswerTokenGraph`): ids and mask
in, the raw score out, with the answer rows as constants of the graph; no full-vocabulary logits are exported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import AutoModelForCausalLM

from rerank_plugins.backends.graph import ScoreGraph, run_length_chunks
from rerank_plugins.scoring.base import Encoded, ScoringModule, fp32_scores, pad_rows
from rerank_plugins.scoring.padding import length_chunks
from rerank_plugins.scoring.truncation import untruncated


class AnswerTokenScore(ScoringModule):
    """Raw score from the answer tokens' logits at the last real token: ``logit(a) - logit(b)``, or ``logit(a)``.

    A subclass tokenizes its authors' prompt in ``encode`` and calls :meth:`set_answer_tokens` once with the
    token ids its authors read (one id, or two: the score is then the first's logit minus the second's).
    """

    auto_class: ClassVar[Any] = AutoModelForCausalLM
    max_chunk_tokens: ClassVar[int] = 16384
    """Tokens per forward of the body: bounds its activations (rows x length x hidden) whatever the batch size."""
    answer_ids: torch.Tensor

    def set_answer_tokens(self, ids: Sequence[int]) -> None:
        """The LM-head rows the score reads: ``[a]`` (score = logit a) or ``[a, b]`` (score = logit a - logit b)."""
        self.register_buffer("answer_ids", torch.tensor(list(ids), dtype=torch.long), persistent=False)

    def answer_token_id(self, text: str, *, lookup: bool = False) -> int:
        """The id of ``text`` as the authors take it: the first id of its tokenization, or (``lookup``) a vocabulary
        lookup of the token itself; an error names the family option to set when the tokenizer has no such token."""
        tokenizer = self.tokenizer
        if lookup:
            found = tokenizer.get_vocab().get(text)
        else:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            found = ids[0] if ids else None
        if found is None:
            raise ValueError(
                f"The tokenizer of this {self.family} model has no token {text!r}, which the score reads. Is this "
                "checkpoint one of this family's models (see its page under docs/models/)?"
            )
        return int(found)

    # -- tokenizing ----------------------------------------------------------------------------------------
    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's ids without special tokens and without any cut (the authors' prompts add their own).

        Tokenized through a private copy used only without truncation: the budgets differ between the parts of a
        prompt, and switching truncation on the shared tokenizer would race with other threads (``truncation``).
        """
        if not texts:
            return []
        encoded = untruncated(self.tokenizer)(list(texts), add_special_tokens=False, truncation=False, verbose=False)
        return [list(ids) for ids in encoded["input_ids"]]

    def cut(self, ids: list[int], limit: int) -> list[int]:
        """``ids`` kept to ``limit`` tokens, from the side the tokenizer truncates (``truncation_side``)."""
        if len(ids) <= limit:
            return ids
        limit = max(limit, 0)
        return ids[len(ids) - limit :] if self.tokenizer.truncation_side == "left" else ids[:limit]

    def pad_id(self) -> int:
        """Pads are never read (right padding, causal attention): the pad id, else eos, else 0."""
        tokenizer = self.tokenizer
        for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
            if candidate is not None:
                return int(candidate)
        return 0

    # -- the two steps ---------------------------------------------------------------------------------------
    def collate(self, rows: Sequence[Encoded]) -> dict[str, Any]:
        input_ids, attention_mask = pad_rows([row.data for row in rows], self.pad_id(), "right")
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def score_graph(self) -> ScoreGraph:
        """The body to each row's last real token, then only the answer rows of the LM head: ids, mask -> score."""
        axes = {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"}}
        graph = AnswerTokenGraph(self)
        return ScoreGraph(graph, ("input_ids", "attention_mask"), "scores", {**axes, "scores": {0: "batch"}})

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if self.runtime is not None:  # the exported graph, in length chunks of at most max_chunk_tokens tokens
            scores = run_length_chunks(self.runtime, features, max_tokens=self.max_chunk_tokens)
            features["scores"] = fp32_scores(scores)
            return features
        input_ids, attention_mask = features["input_ids"], features["attention_mask"]
        scores = torch.empty(input_ids.shape[0], dtype=torch.float32, device=input_ids.device)
        for rows, width in length_chunks(attention_mask, max_tokens=self.max_chunk_tokens):
            scores[rows] = self.last_token_scores(input_ids[rows, :width], attention_mask[rows, :width])
        features["scores"] = fp32_scores(scores)
        return features

    def last_token_scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The raw score of each row, read at its last attended token (left or right padding alike)."""
        return self.answer_scores(self.last_hidden(input_ids, attention_mask))

    def last_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The body's final hidden state at each row's last attended token, ``(rows, hidden)``."""
        # Positions count real tokens only, so a left-padded row sees the positions it would see alone.
        positions = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
        hidden = self.model.base_model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=False
        ).last_hidden_state  # (rows, width, hidden): no vocabulary-wide tensor anywhere
        columns = torch.arange(1, attention_mask.shape[1] + 1, device=attention_mask.device)
        last = (attention_mask.bool() * columns).amax(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def answer_scores(self, last_hidden: torch.Tensor) -> torch.Tensor:
        """``(rows, hidden)`` final hidden states -> the score from the answer tokens' logits, in fp32."""
        head = self.model.get_output_embeddings()
        rows = head.weight[self.answer_ids].float()  # (1 or 2, hidden): the only LM-head rows the score reads
        logits = last_hidden.float() @ rows.T
        bias = getattr(head, "bias", None)
        if bias is not None:
            logits = logits + bias[self.answer_ids].float()
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap:  # Gemma-2 caps every logit before the softmax: cap each one read, as the full head would
            logits = torch.tanh(logits / cap) * cap
        return logits[:, 0] - logits[:, 1] if logits.shape[1] == 2 else logits[:, 0]


class AnswerTokenGraph(nn.Module):
    """:meth:`AnswerTokenScore.last_token_scores` as a module of ``(input_ids, attention_mask)``, for export."""

    def __init__(self, score: AnswerTokenScore) -> None:
        super().__init__()
        self.score = score

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.score.last_token_scores(input_ids, attention_mask)


def causal_lm_int8_targets(model: Any) -> list[torch.nn.Module]:
    """The decoder body; the LM head stays float (the score reads two of its rows directly)."""
    return [model[0].model.base_model]
