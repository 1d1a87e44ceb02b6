"""Tokenizers of the tiny models, built directly from a corpus so that every process gets the same ones."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertTokenizer, PreTrainedTokenizerFast

from rerank_plugins.testing.corpus import CORPUS, TOKENIZER_VOCAB


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
