"""Tiny offline models of every family, for our tests and for users' own offline tests.

Each builder trains a small tokenizer on a few sentences, saves a model of the real architecture with tiny
sizes, and re-draws its weights with a wide spread (std 0.3 by default): transformers' own initialisation
gives near-constant scores, which would let a wrong formula pass a parity test. Nothing is downloaded.

    >>> from rerank_plugins.testing import build_tiny_model
    >>> path = build_tiny_model("monot5", "/tmp/tiny-monot5")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    BertTokenizer,
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

CORPUS = [
    "Query: what is the capital of france Document: Paris is the capital and largest city of France. Relevant: true",
    "Query: how do vaccines work Document: The stock market fell sharply on Monday. Relevant: false",
    "Berlin had a population of 3,520,031 in 2019 and is known for its museums.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The mitochondria is the powerhouse of the cell, producing ATP through respiration.",
    "How many people live in Berlin? Who wrote To Kill a Mockingbird? What causes rain?",
    "Harper Lee wrote the novel in 1960; it won the Pulitzer Prize for Fiction.",
    "Rain forms when water vapour condenses into droplets heavy enough to fall.",
    "The recipe needs flour, sugar, eggs, butter and a pinch of salt.",
    "Neural rerankers score each query and document pair with a transformer model.",
    "Document: the quick brown fox jumps over the lazy dog. Query: which animal jumps",
    "Relevant documents answer the query; irrelevant ones talk about something else entirely.",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 2019 2020 % $ , . ; : ! ? ' \" ( ) - _ / & #",
]

FAMILY_BUILDERS: dict[str, str] = {
    "monot5": "T5ForConditionalGeneration with the pieces ▁true/▁false",
    "sequence-classification": "BertForSequenceClassification, 1 label (R*-like)",
    "sequence-classification-2": "BertForSequenceClassification, 2 labels",
    "deberta": "DebertaV2ForSequenceClassification, 1 label (DistillRankNET-like)",
    "query-likelihood": "BloomForCausalLM (RankingGPT-bloom-like)",
    "llama": "LlamaForCausalLM without a pad token (RankingGPT-llama2-like)",
    "listconranker": "BertModel + linear_in_embedding.pt + list_transformer.pt (ListConRanker layout)",
}
"""What ``build_tiny_model(kind, ...)`` builds for each kind."""


def _widen(model: torch.nn.Module, std: float, seed: int) -> None:
    """Re-draw every weight matrix and embedding with ``N(0, std)`` so that scores differ between inputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() >= 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
            elif name.endswith("bias"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)


def _wordpiece(corpus: Iterable[str], lowercase: bool) -> Tokenizer:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokenizer.train_from_iterator(corpus, trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def _bert_tokenizer(corpus: Iterable[str], lowercase: bool = False) -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer that returns token_type_ids 0/1 for pairs, as BERT's does."""
    return BertTokenizer(
        tokenizer_object=_wordpiece(corpus, lowercase),
        do_lower_case=lowercase,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )


def _t5_tokenizer(corpus: Iterable[str]) -> PreTrainedTokenizerFast:
    """A Unigram tokenizer holding the whole pieces ``▁true`` and ``▁false``, appending ``</s>`` like T5."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        initial_alphabet=list("abcdefghijklmnopqrstuvwxyz"),
    )
    tokenizer.train_from_iterator(corpus, trainer)
    # A trained Unigram keeps only frequent pieces: add the whole words monoT5 reads, explicitly.
    state = json.loads(tokenizer.to_str())["model"]
    vocab = [(piece, score) for piece, score in state["vocab"]]
    known = {piece for piece, _ in vocab}
    vocab += [(piece, -5.0) for piece in ("▁true", "▁false", "▁yes", "▁no") if piece not in known]
    tokenizer.model = models.Unigram(vocab, unk_id=state["unk_id"], byte_fallback=False)
    eos = tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=512,
    )


def _bpe_tokenizer(corpus: Iterable[str], bos: bool, pad: bool) -> PreTrainedTokenizerFast:
    """A byte-level BPE (as BLOOM and Llama-3 style models); ``bos`` prepends ``<s>`` like Llama-2."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    tokenizer.train_from_iterator(corpus, trainer)
    if bos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>" if pad else None,
        model_max_length=2048,
    )


def _save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, path: Path, std: float, seed: int) -> None:
    _widen(model, std, seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def _monot5(path: Path, std: float, seed: int) -> None:
    tokenizer = _t5_tokenizer(CORPUS)
    settings: dict[str, Any] = {
        "vocab_size": len(tokenizer), "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 2,
        "num_heads": 4, "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
        "decoder_start_token_id": 0,  # T5's: the pad id
    }  # fmt: skip
    config = T5Config(**settings)
    _save(T5ForConditionalGeneration(config), tokenizer, path, std, seed)


def _bert_config(vocab_size: int, num_labels: int = 1) -> BertConfig:
    sizes: dict[str, Any] = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
    }
    sizes["num_labels"] = num_labels
    return BertConfig(vocab_size=vocab_size, max_position_embeddings=512, **sizes)


def _sequence_classification(path: Path, std: float, seed: int, num_labels: int = 1) -> None:
    tokenizer = _bert_tokenizer(CORPUS)
    config = _bert_config(len(tokenizer), num_labels=num_labels)
    config.architectures = ["BertForSequenceClassification"]
    _save(BertForSequenceClassification(config), tokenizer, path, std, seed)


def _deberta(path: Path, std: float, seed: int) -> None:
    tokenizer = _bert_tokenizer(CORPUS)
    settings: dict[str, Any] = {  # DeBERTa-v3's shape: relative attention, no absolute positions or token types
        "vocab_size": len(tokenizer), "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 64, "max_position_embeddings": 512, "num_labels": 1, "relative_attention": True,
        "position_buckets": 16, "pos_att_type": ["p2c", "c2p"], "max_relative_positions": -1, "type_vocab_size": 0,
        "position_biased_input": False,
    }  # fmt: skip
    config = DebertaV2Config(**settings)
    config.architectures = ["DebertaV2ForSequenceClassification"]
    _save(DebertaV2ForSequenceClassification(config), tokenizer, path, std, seed)


def _bloom(path: Path, std: float, seed: int) -> None:
    tokenizer = _bpe_tokenizer(CORPUS, bos=False, pad=True)
    config = BloomConfig(
        vocab_size=len(tokenizer), hidden_size=32, n_layer=2, n_head=4,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    _save(BloomForCausalLM(config), tokenizer, path, std, seed)


def _llama(path: Path, std: float, seed: int) -> None:
    tokenizer = _bpe_tokenizer(CORPUS, bos=True, pad=False)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=None,
    )  # fmt: skip
    _save(LlamaForCausalLM(config), tokenizer, path, std, seed)


def _listconranker(path: Path, std: float, seed: int) -> None:
    """The authors' layout: a BertModel, ``linear_in_embedding.pt`` and ``list_transformer.pt`` (torch.save)."""
    from rerank_plugins.scoring.listconranker import ListTransformer

    tokenizer = _bert_tokenizer(CORPUS, lowercase=True)
    _save(BertModel(_bert_config(len(tokenizer))), tokenizer, path, std, seed)
    dim = 48  # 1792 in the real model; read back from the weight shapes
    linear = torch.nn.Linear(32, dim)
    head = ListTransformer(dim, num_layers=2, num_heads=4, feedforward=64)
    _widen(linear, 0.3, seed + 1)
    _widen(head, 0.15, seed + 2)
    state = head.state_dict()
    # The authors' checkpoint also holds the unused template layer that nn.TransformerEncoder copies.
    state.update({f"list_transformer_layer.{k[len('list_transformer.layers.0.'):]}": v
                  for k, v in state.items() if k.startswith("list_transformer.layers.0.")})  # fmt: skip
    torch.save(linear.state_dict(), path / "linear_in_embedding.pt")
    torch.save(state, path / "list_transformer.pt")


_BUILDERS: dict[str, Callable[[Path, float, int], None]] = {
    "monot5": _monot5,
    "sequence-classification": _sequence_classification,
    "sequence-classification-2": lambda p, s, seed: _sequence_classification(p, s, seed, num_labels=2),
    "deberta": _deberta,
    "query-likelihood": _bloom,
    "llama": _llama,
    "listconranker": _listconranker,
}


def build_tiny_model(kind: str, path: str | os.PathLike[str], *, std: float = 0.3, seed: int = 0) -> str:
    """Build a tiny random model of ``kind`` (a family name, or see ``FAMILY_BUILDERS``) in ``path``.

    Returns the path as a string, ready for ``rerank_plugins.CrossEncoder(path, family=...)``.
    """
    if kind not in _BUILDERS:
        raise ValueError(f"Unknown kind {kind!r}. Valid kinds: {', '.join(_BUILDERS)}.")
    target = Path(path)
    target.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    _BUILDERS[kind](target, std, seed)
    return str(target)
