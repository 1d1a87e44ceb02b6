"""monoT5 / InRanker: P(true) after "Query: q Document: d Relevant:", read at ONE decoder step.

The authors run ``T5ForConditionalGeneration`` for one greedy step and softmax the full 32k-wide logits over
the two pieces ``▁false`` / ``▁true``. Only those two rows of the LM head matter, so this module runs the
encoder, one decoder step, and a ``(hidden, 2)`` product: the same numbers without the vocabulary-wide matmul.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from transformers import AutoModelForSeq2SeqLM

from rerank_plugins.scoring.base import Pair, ScoringModule, fp32_scores
from rerank_plugins.scoring.batching import length_chunks

MONOT5_TEMPLATE = "Query: {query} Document: {document} Relevant:"


class MonoT5Score(ScoringModule):
    """Raw score ``logit(true) - logit(false)``; sigmoid of it is InRanker's P(true), log-sigmoid the log-prob.

    Args:
        model_name_or_path: a T5 / mT5 checkpoint trained as monoT5.
        true_token, false_token: the vocabulary pieces read at the decoder step (mT5 models use ``▁yes``/``▁no``).
        template: the input text; ``{query}`` and ``{document}`` are filled in.
        max_length: tokens kept per input (the authors' ``max_length=512``, cut from the end).
    """

    family: ClassVar[str] = "monot5"
    auto_class: ClassVar[Any] = AutoModelForSeq2SeqLM
    config_keys: list[str] = ["true_token", "false_token", "template"]

    def __init__(
        self,
        model_name_or_path: str,
        *,
        true_token: str = "▁true",
        false_token: str = "▁false",
        template: str = MONOT5_TEMPLATE,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_name_or_path, **kwargs)
        self.true_token, self.false_token, self.template = true_token, false_token, template
        vocab = self.tokenizer.get_vocab()
        missing = [piece for piece in (false_token, true_token) if piece not in vocab]
        if missing:
            raise ValueError(
                f"The tokenizer of {model_name_or_path!r} has no piece {missing[0]!r}; monoT5 reads the "
                f"pieces {false_token!r}/{true_token!r}. Pass family_options={{'true_token': ..., "
                "'false_token': ...}} (e.g. '▁yes'/'▁no' for mT5)."
            )
        # Row order [false, true], as the authors index the logits.
        self.register_buffer(
            "token_ids",
            torch.tensor([vocab[false_token], vocab[true_token]], dtype=torch.long),
            persistent=False,
        )

    def preprocess(self, inputs: list[Pair], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        texts = [self.template.format(query=query, document=document) for query, document in inputs]
        encoded = self.tokenize_truncating(texts)  # T5 appends </s>; longest_first cuts the end of the text
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        input_ids, attention_mask = features["input_ids"], features["attention_mask"]
        margins = torch.empty(input_ids.shape[0], dtype=torch.float32, device=input_ids.device)
        # Rows of similar length together, each chunk trimmed to its longest row: no work on pad tokens.
        for rows, width in length_chunks(attention_mask):
            margins[rows] = self.logit_margin(input_ids[rows, :width], attention_mask[rows, :width])
        features["scores"] = fp32_scores(margins)
        return features

    def logit_margin(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``logit(true) - logit(false)`` at the first decoder step, in fp32, for one chunk of rows."""
        model = self.model
        encoded = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        # The first (and only) decoder input is decoder_start_token_id (the pad id, 0, for T5).
        start = torch.full(
            (input_ids.shape[0], 1),
            model.config.decoder_start_token_id,
            dtype=torch.long,
            device=input_ids.device,
        )
        hidden = model.get_decoder()(
            input_ids=start,
            encoder_hidden_states=encoded,
            encoder_attention_mask=attention_mask,
            use_cache=False,
        ).last_hidden_state[:, 0]
        # T5 with tied embeddings rescales the decoder output by d_model**-0.5 before its LM head.
        if getattr(model.config, "scale_decoder_outputs", getattr(model.config, "tie_word_embeddings", False)):
            hidden = hidden * (model.config.d_model**-0.5)
        rows = model.get_output_embeddings().weight[self.token_ids]  # (2, d_model): the LM head's false/true rows
        logits = (hidden @ rows.T).float()  # (batch, 2) = the authors' logits[:, [false, true]], in fp32
        return logits[:, 1] - logits[:, 0]
