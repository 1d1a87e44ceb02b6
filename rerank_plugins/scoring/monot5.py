"""monoT5 / InRanker: P(true) after "Query: q Document: d Relevant:", read at ONE decoder step.

The authors run ``T5ForConditionalGeneration`` for one greedy step and softmax the full 32k-wide logits over
the two pieces ``▁false`` / ``▁true``. Only those two rows of the LM head matter, so this module runs the
encoder, one decoder step, and a ``(hidden, 2)`` product: the same numbers without the vocabulary-wide matmul.
For speed, a batch runs in chunks of similar length (no work on pad tokens, ``padding.length_chunks``) and the
decoder step of T5 / mT5 folds its cross-attention projections into the single query (``first_decoder_step``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import AutoModelForSeq2SeqLM

from rerank_plugins.backends.graph import ScoreGraph, run_length_chunks
from rerank_plugins.families import CheckpointInfo, FamilySpec, TinyModel
from rerank_plugins.scoring.base import Encoded, Pair, ScoringModule, fp32_scores
from rerank_plugins.scoring.padding import PACKED_CHUNK_OVERHEAD, length_chunks, pack_rows

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

    def encode(self, rows: Sequence[Pair], prompt: str | None = None) -> list[Encoded]:
        """The template filled in and tokenized (T5 appends ``</s>``; ``longest_first`` cuts the end of the text)."""
        self.refuse_prompt(prompt)
        texts = [self.template.format(query=query, document=document) for query, document in rows]
        return [Encoded(len(ids), ids) for ids in self.tokenize_texts(texts)]

    def collate(self, rows: Sequence[Encoded]) -> dict[str, Any]:
        input_ids, attention_mask = self.pad([row.data for row in rows])
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def score_graph(self) -> ScoreGraph:
        """The encoder and the first decoder step with only the two answer rows: ids and mask in, margins out."""
        axes = {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"}}
        return ScoreGraph(
            MonoT5Graph(self), ("input_ids", "attention_mask"), "scores", {**axes, "scores": {0: "batch"}}
        )

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if self.runtime is not None:  # the exported graph, fed in length chunks (no work on pad tokens)
            features["scores"] = fp32_scores(run_length_chunks(self.runtime, features))
            return features
        input_ids, attention_mask = features["input_ids"], features["attention_mask"]
        model = self.model
        margins = torch.empty(input_ids.shape[0], dtype=torch.float32, device=input_ids.device)
        if input_ids.device.type == "cpu" and model.config.model_type in PACKED_TYPES and input_ids.shape[0] > 1:
            # Short rows share a bin (a block-diagonal mask between them), then the bins run in length chunks:
            # fewer pad tokens AND fewer forwards than chunks of whole rows (each forward has a fixed cost).
            packing = pack_rows(input_ids, attention_mask, model.dtype, model.config.pad_token_id or 0)
            for bins, width in length_chunks(packing.filled, overhead=PACKED_CHUNK_OVERHEAD):
                encoded = model.get_encoder()(
                    input_ids=packing.input_ids[bins, :width],
                    attention_mask=packing.attention_mask[bins, :, :width, :width],
                ).last_hidden_state
                rows = torch.isin(packing.row_bin, bins).nonzero().flatten()
                local = torch.empty(packing.filled.shape[0], dtype=torch.long, device=bins.device)
                local[bins] = torch.arange(len(bins), device=bins.device)  # bin -> its index in this chunk
                margins[rows] = self.decoder_margin(
                    encoded[local[packing.row_bin[rows]]], packing.row_columns[rows, :width].long()
                )
        else:  # one chunk per run of similar lengths, each trimmed to its longest row: no work on pad tokens
            for rows, width in length_chunks(attention_mask):
                margins[rows] = self.logit_margin(input_ids[rows, :width], attention_mask[rows, :width])
        features["scores"] = fp32_scores(margins)
        return features

    def logit_margin(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``logit(true) - logit(false)`` at the first decoder step, in fp32, for one chunk of rows."""
        encoded = self.model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.decoder_margin(encoded, attention_mask)

    def decoder_margin(self, encoded: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The margin from the encoder states ``(rows, n, d_model)`` and the mask of the columns each row reads."""
        model = self.model
        # The first (and only) decoder input is decoder_start_token_id (the pad id, 0, for T5).
        start_id = model.config.decoder_start_token_id
        decoder = model.get_decoder()
        if model.config.model_type in FOLDED_TYPES and not self.training and _plain_linears(decoder):
            hidden = first_decoder_step(decoder, encoded, attention_mask, start_id)
        else:  # other encoder-decoders, training, or a quantized decoder: the library's own decoder
            start = torch.full((encoded.shape[0], 1), start_id, dtype=torch.long, device=encoded.device)
            hidden = decoder(
                input_ids=start, encoder_hidden_states=encoded, encoder_attention_mask=attention_mask, use_cache=False
            ).last_hidden_state[:, 0]
        # T5 with tied embeddings rescales the decoder output by d_model**-0.5 before its LM head.
        if getattr(model.config, "scale_decoder_outputs", getattr(model.config, "tie_word_embeddings", False)):
            hidden = hidden * (model.config.d_model**-0.5)
        rows = model.get_output_embeddings().weight[self.token_ids]  # (2, d_model): the LM head's false/true rows
        logits = (hidden @ rows.T).float()  # (batch, 2) = the authors' logits[:, [false, true]], in fp32
        return logits[:, 1] - logits[:, 0]


class MonoT5Graph(nn.Module):
    """:meth:`MonoT5Score.logit_margin` as a module of ``(input_ids, attention_mask)``, for export."""

    def __init__(self, score: MonoT5Score) -> None:
        super().__init__()
        self.score = score

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.score.logit_margin(input_ids, attention_mask)


FOLDED_TYPES = ("t5", "mt5")
"""Model types whose decoder blocks have the layout ``first_decoder_step`` reads (self, cross, feed-forward)."""
PACKED_TYPES = ("t5", "mt5")
"""Model types whose encoder sees positions only through T5's relative bias (``j - i``): rows can be packed."""


def _plain_linears(decoder: Any) -> bool:  # a T5Stack
    """True when the cross-attention projections are float ``nn.Linear`` layers (not int8-quantized)."""
    return all(type(block.layer[1].EncDecAttention.k) is nn.Linear for block in decoder.block)


def first_decoder_step(decoder: Any, encoded: torch.Tensor, mask: torch.Tensor, start_id: int) -> torch.Tensor:
    """T5's decoder output at its first step, ``(rows, d_model)``, with the cross-attention projections folded.

    The single decoder token attends only to itself, so its self-attention is exactly ``o(v(x))`` (a softmax over
    one key is 1). Its cross-attention needs ``q . W_k e_i`` and ``sum_i p_i W_v e_i``; computed as
    ``(W_k^T q) . e_i`` and ``W_v (sum_i p_i e_i)`` it costs O(n d) per head instead of projecting the keys and
    values of all ``n`` encoder states (O(n d^2), a sixth of the encoder's work for T5-small). The same sums,
    reassociated: equal to the library's decoder up to float rounding. Dropout is skipped (inference only).
    """
    rows, _, dim = encoded.shape
    hidden = decoder.embed_tokens(torch.full((rows,), start_id, dtype=torch.long, device=encoded.device))
    blocked = (1.0 - mask[:, None, :].to(encoded.dtype)) * torch.finfo(encoded.dtype).min  # (rows, 1, n)
    for block in decoder.block:
        self_attention, cross_attention, feed_forward = block.layer
        attention = self_attention.SelfAttention
        hidden = hidden + attention.o(attention.v(self_attention.layer_norm(hidden)))
        attention = cross_attention.EncDecAttention
        heads, head_dim = attention.n_heads, attention.key_value_proj_dim
        query = attention.q(cross_attention.layer_norm(hidden)).view(rows, heads, head_dim)
        folded = torch.einsum("rhk,hkd->rhd", query, attention.k.weight.view(heads, head_dim, dim))
        scores = torch.einsum("rhd,rnd->rhn", folded, encoded) + blocked  # T5 does not scale q . k
        weights = torch.softmax(scores.float(), dim=-1).to(encoded.dtype)
        context = torch.einsum("rhn,rnd->rhd", weights, encoded)
        values = torch.einsum("rhd,hkd->rhk", context, attention.v.weight.view(heads, head_dim, dim))
        hidden = hidden + attention.o(values.reshape(rows, heads * head_dim))
        hidden = hidden + feed_forward.DenseReluDense(feed_forward.layer_norm(hidden))
    return decoder.final_layer_norm(hidden)


def is_monot5_checkpoint(info: CheckpointInfo) -> bool:
    """An encoder-decoder (T5, mT5, ...) checkpoint without saved modules is read as monoT5."""
    config = info.config
    return bool(getattr(config, "is_encoder_decoder", False)) or config.model_type in ("t5", "mt5", "umt5")


def monot5_int8_targets(model: Any) -> list[nn.Module]:
    """The encoder and decoder stacks; the LM head and shared embedding stay float (two rows are read directly)."""
    backbone = model[0].model
    return [backbone.get_encoder(), backbone.get_decoder()]


FAMILY = FamilySpec(
    "monot5",
    module=MonoT5Score,
    activation="sigmoid",  # sigmoid(logit(true) - logit(false)) = softmax over [false, true], InRanker's P(true)
    recognize=is_monot5_checkpoint,
    int8_targets=monot5_int8_targets,
    backends=("torch", "onnx", "openvino"),
    tiny_models=(
        TinyModel(
            "monot5",
            "T5ForConditionalGeneration with the pieces ▁true/▁false",
            "rerank_plugins.testing.builders:t5_monot5",
            {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4},
        ),
    ),
)
