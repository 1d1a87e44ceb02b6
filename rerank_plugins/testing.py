"""Offline models of every family: tiny ones for our tests and users' own offline tests, any size for benchmarks.

Each builder trains a tokenizer on a corpus (a few sentences by default), saves a model of the real
architecture and re-draws its weights. Tiny models (``build_tiny_model``) get a wide spread (std 0.3 by
default): transformers' own initialisation gives near-constant scores, which would let a wrong formula pass a
parity test. ``build_model(..., sizes=..., std=None)`` builds the same architectures at any size with a
fan-in initialisation that keeps activations of order one (``benchmarks/models.py`` builds the seeds' real
shapes with it). Nothing is downloaded.

    >>> from rerank_plugins.testing import build_tiny_model
    >>> path = build_tiny_model("monot5", "/tmp/tiny-monot5")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
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

from rerank_plugins.testing_llm import CAUSAL_KINDS, CAUSAL_SIZES, build_causal_lm

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
    **CAUSAL_KINDS,
}
"""What ``build_tiny_model(kind, ...)`` builds for each kind."""

TINY_SIZES: dict[str, dict[str, Any]] = {
    "monot5": {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4},
    "sequence-classification": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                                "intermediate_size": 64},
    "deberta": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
                "position_buckets": 16},
    "query-likelihood": {"hidden_size": 32, "n_layer": 2, "n_head": 4},
    "llama": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2},
    "listconranker": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
                      "list_dim": 48, "list_layers": 2, "list_heads": 4, "list_feedforward": 64},
    **CAUSAL_SIZES,
}  # fmt: skip
"""The tiny sizes of each kind; ``build_model(kind, path, sizes=...)`` overrides any of them (config keys, plus
``vocab_size`` for a model vocabulary wider than the tokenizer's and ``list_*`` for ListConRanker's head)."""

TOKENIZER_VOCAB: dict[str, int] = {"unigram": 300, "wordpiece": 400, "bpe": 500}
"""The tokenizer vocabulary sizes of the tiny models (trained on ``CORPUS``)."""


def randomize(model: torch.nn.Module, seed: int, std: float | None = 0.3) -> None:
    """Re-draw every weight matrix and embedding, biases ``N(0, 0.02)``.

    ``std`` given: ``N(0, std)`` everywhere, a wide spread so that tiny models' scores differ between inputs.
    ``std=None``: ``N(0, fan_in ** -0.5)`` for matrices and ``N(0, 1)`` for embeddings, which keeps activations of
    order one through many layers (realistic sizes), so that scores spread out instead of saturating.
    """
    generator = None
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if generator is None:  # drawn where the model lives: a 3B model builds in seconds on a GPU
                generator = torch.Generator(device=parameter.device).manual_seed(seed)
            if parameter.dim() >= 2:
                if std is not None:
                    scale = std
                elif "embed" in name or "shared" in name or "relative_attention_bias" in name:
                    scale = 1.0
                else:
                    scale = parameter.shape[1] ** -0.5
                parameter.copy_(torch.randn(parameter.shape, generator=generator, device=parameter.device) * scale)
            elif name.endswith("bias"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator, device=parameter.device) * 0.02)


def _word_counts(corpus: Iterable[str], normalizer: Any, pre_tokenizer: Any) -> list[tuple[str, int]]:
    """The corpus's words as the tokenizer splits them, most frequent first, ties alphabetical: deterministic."""
    counts = Counter(
        word for text in corpus for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
    )
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def _wordpiece(corpus: Iterable[str], lowercase: bool, vocab_size: int) -> Tokenizer:
    """A WordPiece vocabulary built directly, not trained: the tokenizers trainers' results vary between processes
    (their tie-breaking is hash-ordered), which made every test session's tiny models different."""
    normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = _word_counts(corpus, normalizer, pre_tokenizer)
    characters = sorted({character for word, _ in words for character in word})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters, *(f"##{c}" for c in characters)]
    vocab += [word for word, _ in words if len(word) > 1][: max(0, vocab_size - len(vocab))]
    tokenizer = Tokenizer(models.WordPiece({token: i for i, token in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def bert_tokenizer(
    corpus: Iterable[str] = CORPUS, lowercase: bool = False, vocab_size: int = TOKENIZER_VOCAB["wordpiece"]
) -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer trained on ``corpus`` that returns token_type_ids 0/1 for pairs, as BERT's does."""
    return BertTokenizer(
        tokenizer_object=_wordpiece(corpus, lowercase, vocab_size),
        do_lower_case=lowercase,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )


def t5_tokenizer(
    corpus: Iterable[str] = CORPUS, vocab_size: int = TOKENIZER_VOCAB["unigram"]
) -> PreTrainedTokenizerFast:
    """A Unigram tokenizer trained on ``corpus`` holding the whole pieces ``▁true``/``▁false`` (and ``▁yes``/``▁no``),
    appending ``</s>`` like T5."""
    # Built directly, not trained, so that it is the same in every process (see _wordpiece): whole words scored
    # by frequency, then single characters (any other word is spelled out), and the pieces monoT5 reads.
    normalizer, pre_tokenizer = normalizers.NFKC(), pre_tokenizers.Metaspace()
    words = _word_counts(corpus, normalizer, pre_tokenizer)
    total = sum(count for _, count in words)
    characters = sorted({c for word, _ in words for c in word} | set("▁abcdefghijklmnopqrstuvwxyz"))
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(c, -12.0) for c in characters]
    room = max(0, vocab_size - len(vocab))
    vocab += [(word, math.log(count / total)) for word, count in words if len(word) > 2][:room]
    known = {piece for piece, _ in vocab}
    vocab += [(piece, -5.0) for piece in ("▁true", "▁false", "▁yes", "▁no") if piece not in known]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.Metaspace()
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


def bpe_tokenizer(
    corpus: Iterable[str] = CORPUS, bos: bool = False, pad: bool = True, vocab_size: int = TOKENIZER_VOCAB["bpe"]
) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``corpus`` (as BLOOM and Llama-3 style models); ``bos`` prepends ``<s>``
    like Llama-2."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
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


class _Spec:
    """What one builder call needs: where, which corpus and tokenizer size, the sizes, the initialisation."""

    def __init__(self, path: Path, corpus: Sequence[str], tokenizer_vocab: int | None, sizes: dict[str, Any],
                 std: float | None, seed: int, dtype: torch.dtype | None) -> None:  # fmt: skip
        self.path, self.corpus, self.tokenizer_vocab = path, corpus, tokenizer_vocab
        self.sizes, self.std, self.seed, self.dtype = sizes, std, seed, dtype

    def vocab(self, kind: str) -> int:
        return self.tokenizer_vocab or TOKENIZER_VOCAB[kind]

    def config(self, tokenizer: PreTrainedTokenizerFast, *drop: str) -> dict[str, Any]:
        """The sizes as config keys, with the vocabulary at least the tokenizer's."""
        settings = {k: v for k, v in self.sizes.items() if k not in drop}
        settings["vocab_size"] = max(int(settings.get("vocab_size", 0)), len(tokenizer))
        return settings


def _save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, spec: _Spec) -> None:
    if spec.dtype is not None:
        model.to(spec.dtype)  # type: ignore[arg-type]
    model.save_pretrained(spec.path)
    tokenizer.save_pretrained(spec.path)


def _monot5(spec: _Spec) -> None:
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
    _save(model, tokenizer, spec)


def _sequence_classification(spec: _Spec, num_labels: int = 1) -> None:
    tokenizer = bert_tokenizer(spec.corpus, vocab_size=spec.vocab("wordpiece"))
    settings: dict[str, Any] = {"max_position_embeddings": 512, "num_labels": num_labels, **spec.config(tokenizer)}
    config = BertConfig(**settings)
    config.architectures = ["BertForSequenceClassification"]
    model = BertForSequenceClassification(config)
    randomize(model, spec.seed, spec.std)
    _save(model, tokenizer, spec)


def _deberta(spec: _Spec) -> None:
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
    _save(model, tokenizer, spec)


def _bloom(spec: _Spec) -> None:
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
    _save(model, tokenizer, spec)


def _llama(spec: _Spec) -> None:
    tokenizer = bpe_tokenizer(spec.corpus, bos=True, pad=False, vocab_size=spec.vocab("bpe"))
    config = LlamaConfig(
        max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=None, **spec.config(tokenizer),
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    randomize(model, spec.seed, spec.std)
    _save(model, tokenizer, spec)


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


def _listconranker(spec: _Spec) -> None:
    """The authors' layout: a BertModel, ``linear_in_embedding.pt`` and ``list_transformer.pt`` (torch.save)."""
    tokenizer = bert_tokenizer(spec.corpus, lowercase=True, vocab_size=spec.vocab("wordpiece"))
    bert_sizes = {k: v for k, v in spec.config(tokenizer).items() if not k.startswith("list_")}
    model = BertModel(BertConfig(max_position_embeddings=512, **bert_sizes))
    randomize(model, spec.seed, spec.std)
    _save(model, tokenizer, spec)
    save_list_head(spec.path, model.config.hidden_size, spec.sizes, spec.std, spec.seed)


def _causal_lm(kind: str, spec: _Spec) -> None:
    """The LLM rerankers' tiny models (``rerank_plugins.testing_llm``): Qwen3, Qwen2 or Gemma."""
    build_causal_lm(kind, spec.path, corpus=spec.corpus, tokenizer_vocab=spec.vocab("bpe"), sizes=spec.sizes,
                    std=spec.std, seed=spec.seed, dtype=spec.dtype)  # fmt: skip


_BUILDERS: dict[str, Callable[[_Spec], None]] = {
    "monot5": _monot5,
    "sequence-classification": _sequence_classification,
    "sequence-classification-2": lambda spec: _sequence_classification(spec, num_labels=2),
    "deberta": _deberta,
    "query-likelihood": _bloom,
    "llama": _llama,
    "listconranker": _listconranker,
    **{kind: functools.partial(_causal_lm, kind) for kind in CAUSAL_KINDS},
}
_SIZES_OF = {"sequence-classification-2": "sequence-classification"}


def build_model(
    kind: str,
    path: str | os.PathLike[str],
    *,
    sizes: dict[str, Any] | None = None,
    corpus: Sequence[str] = CORPUS,
    tokenizer_vocab: int | None = None,
    std: float | None = 0.3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> str:
    """Build a random model of ``kind`` (see ``FAMILY_BUILDERS``) in ``path`` and return the path as a string.

    ``sizes`` override the tiny sizes (``TINY_SIZES``); the tokenizer is trained on ``corpus`` with
    ``tokenizer_vocab`` entries (default: the tiny size of its type); ``std=None`` draws realistic fan-in weights
    (see :func:`randomize`). ``device`` is where the model is built and drawn (the weights differ between
    devices: each has its own random generator); ``dtype`` the dtype it is saved in (default: fp32).
    """
    if kind not in _BUILDERS:
        raise ValueError(f"Unknown kind {kind!r}. Valid kinds: {', '.join(_BUILDERS)}.")
    target = Path(path)
    target.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    merged = {**TINY_SIZES[_SIZES_OF.get(kind, kind)], **(sizes or {})}
    with torch.device(device):
        _BUILDERS[kind](_Spec(target, list(corpus), tokenizer_vocab, merged, std, seed, dtype))
    return str(target)


def build_tiny_model(kind: str, path: str | os.PathLike[str], *, std: float = 0.3, seed: int = 0) -> str:
    """Build a tiny random model of ``kind`` (a family name, or see ``FAMILY_BUILDERS``) in ``path``.

    Returns the path as a string, ready for ``rerank_plugins.CrossEncoder(path, family=...)``.
    """
    return build_model(kind, path, std=std, seed=seed)
