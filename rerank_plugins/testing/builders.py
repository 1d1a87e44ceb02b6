"""The builders of the tiny models that the families name (``FamilySpec.tiny_models``): one per architecture.

Each takes a :class:`BuildSpec`, builds the tokenizer and a model of the real architecture, re-draws its weights
(:func:`rerank_plugins.testing.randomize`) and saves both in ``spec.path``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    BloomConfig,
    BloomForCausalLM,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from rerank_plugins.testing.corpus import TOKENIZER_VOCAB, randomize
from rerank_plugins.testing.tokenizers import bert_tokenizer, bpe_tokenizer, t5_tokenizer


class BuildSpec:
    """What one builder call needs: where, which corpus and tokenizer size, the sizes, the initialisation, and the
    tiny model's own options (``TinyModel.options``, e.g. ``num_labels``)."""

    def __init__(self, path: Path, corpus: Sequence[str], tokenizer_vocab: int | None, sizes: dict[str, Any],
                 std: float | None, seed: int, dtype: torch.dtype | None,
                 options: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        self.path, self.corpus, self.tokenizer_vocab = path, corpus, tokenizer_vocab
        self.sizes, self.std, self.seed, self.dtype = sizes, std, seed, dtype
        self.options = dict(options or {})

    def vocab(self, kind: str) -> int:
        return self.tokenizer_vocab or TOKENIZER_VOCAB[kind]

    def config(self, tokenizer: PreTrainedTokenizerFast, *drop: str) -> dict[str, Any]:
        """The sizes as config keys, with the vocabulary at least the tokenizer's."""
        settings = {k: v for k, v in self.sizes.items() if k not in drop}
        settings["vocab_size"] = max(int(settings.get("vocab_size", 0)), len(tokenizer))
        return settings


def save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, spec: BuildSpec) -> None:
    if spec.dtype is not None:
        model.to(spec.dtype)  # type: ignore[arg-type]
    model.save_pretrained(spec.path)
    tokenizer.save_pretrained(spec.path)


def t5_monot5(spec: BuildSpec) -> None:
    tokenizer = t5_tokenizer(spec.corpus, spec.vocab("unigram"))
    settings: dict[str, Any] = {
        **spec.config(tokenizer), "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
        "decoder_start_token_id": 0,  # T5's: the pad id
    }  # fmt: skip
    config = T5Config(**settings)
    model = T5ForConditionalGeneration(config)
    randomize(model, spec.seed, spec.std)
    if spec.std is None:  # T5 does not scale q . k by d_kv ** -0.5: its initialisation folds that into q
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.endswith(".q.weight"):
                    parameter.mul_(config.d_kv**-0.5)
    save(model, tokenizer, spec)


def bert_classifier(spec: BuildSpec) -> None:
    tokenizer = bert_tokenizer(spec.corpus, vocab_size=spec.vocab("wordpiece"))
    num_labels = int(spec.options.get("num_labels", 1))
    settings: dict[str, Any] = {"max_position_embeddings": 512, "num_labels": num_labels, **spec.config(tokenizer)}
    config = BertConfig(**settings)
    config.architectures = ["BertForSequenceClassification"]
    model = BertForSequenceClassification(config)
    randomize(model, spec.seed, spec.std)
    save(model, tokenizer, spec)


def deberta_classifier(spec: BuildSpec) -> None:
    tokenizer = bert_tokenizer(spec.corpus, vocab_size=spec.vocab("wordpiece"))
    settings: dict[str, Any] = {  # DeBERTa-v3's shape: relative attention, no absolute positions or token types
        "max_position_embeddings": 512, "num_labels": 1, "relative_attention": True, "pos_att_type": ["p2c", "c2p"],
        "max_relative_positions": -1, "type_vocab_size": 0, "position_biased_input": False,
        **spec.config(tokenizer),
    }  # fmt: skip
    config = DebertaV2Config(**settings)
    config.architectures = ["DebertaV2ForSequenceClassification"]
    model = DebertaV2ForSequenceClassification(config)
    randomize(model, spec.seed, spec.std)
    save(model, tokenizer, spec)


def bloom_causal_lm(spec: BuildSpec) -> None:
    tokenizer = bpe_tokenizer(spec.corpus, bos=False, pad=True, vocab_size=spec.vocab("bpe"))
    config = BloomConfig(
        **spec.config(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    model = BloomForCausalLM(config)
    randomize(model, spec.seed, spec.std)
    if spec.std is None:  # keep the tied LM head's logits of order one: |h| ~ sqrt(hidden) after the final norm
        with torch.no_grad():
            model.transformer.word_embeddings.weight.mul_(config.hidden_size**-0.5)
    save(model, tokenizer, spec)


def llama_causal_lm(spec: BuildSpec) -> None:
    tokenizer = bpe_tokenizer(spec.corpus, bos=True, pad=False, vocab_size=spec.vocab("bpe"))
    config = LlamaConfig(
        max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=None, **spec.config(tokenizer),
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    randomize(model, spec.seed, spec.std)
    save(model, tokenizer, spec)


def save_list_head(path: str | os.PathLike[str], hidden: int, sizes: dict[str, Any], std: float | None,
                   seed: int) -> None:  # fmt: skip
    """ListConRanker's own files in the authors' layout: ``linear_in_embedding.pt`` (``hidden -> list_dim``) and
    ``list_transformer.pt`` (``list_layers`` x ``list_dim``, ``list_heads`` heads, ``list_feedforward``)."""
    from rerank_plugins.scoring.listconranker import ListTransformer

    dim = int(sizes["list_dim"])  # 1792 in the real model; read back from the weight shapes
    linear = torch.nn.Linear(hidden, dim)
    head = ListTransformer(dim, num_layers=int(sizes["list_layers"]), num_heads=int(sizes["list_heads"]),
                           feedforward=int(sizes["list_feedforward"]))  # fmt: skip
    randomize(linear, seed + 1, 0.3 if std is not None else None)
    randomize(head, seed + 2, 0.15 if std is not None else None)
    state = head.state_dict()
    # The authors' checkpoint also holds the unused template layer that nn.TransformerEncoder copies.
    state.update({f"list_transformer_layer.{k[len('list_transformer.layers.0.'):]}": v
                  for k, v in state.items() if k.startswith("list_transformer.layers.0.")})  # fmt: skip
    torch.save({k: v.cpu() for k, v in linear.state_dict().items()}, Path(path) / "linear_in_embedding.pt")
    torch.save({k: v.cpu() for k, v in state.items()}, Path(path) / "list_transformer.pt")


def bert_listconranker(spec: BuildSpec) -> None:
    """The authors' layout: a BertModel, ``linear_in_embedding.pt`` and ``list_transformer.pt`` (torch.save)."""
    tokenizer = bert_tokenizer(spec.corpus, lowercase=True, vocab_size=spec.vocab("wordpiece"))
    bert_sizes = {k: v for k, v in spec.config(tokenizer).items() if not k.startswith("list_")}
    model = BertModel(BertConfig(max_position_embeddings=512, **bert_sizes))
    randomize(model, spec.seed, spec.std)
    save(model, tokenizer, spec)
    save_list_head(spec.path, model.config.hidden_size, spec.sizes, spec.std, spec.seed)
