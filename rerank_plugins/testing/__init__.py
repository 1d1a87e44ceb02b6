"""Offline models of every family: tiny ones for our tests and users' own offline tests, any size for benchmarks.

Each family names its tiny models (``FamilySpec.tiny_models``: a kind, its sizes and its builder in
:mod:`rerank_plugins.testing.builders`). A builder makes a tokenizer from a corpus (a few sentences by default),
saves a model of the real architecture and re-draws its weights. Tiny models (``build_tiny_model``) get a wide
spread (std 0.3 by default): transformers' own initialisation gives near-constant scores, which would let a wrong
formula pass a parity test. ``build_model(..., sizes=..., std=None)`` builds the same architectures at any size
with a fan-in initialisation that keeps activations of order one (``benchmarks/models.py`` builds the seeds' real
shapes with it). Nothing is downloaded.

    >>> from rerank_plugins.testing import build_tiny_model
    >>> path = build_tiny_model("monot5", "/tmp/tiny-monot5")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rerank_plugins.families import FamilySpec, TinyModel, all_families
from rerank_plugins.testing.builders import BuildSpec, save_list_head
from rerank_plugins.testing.corpus import CORPUS, TOKENIZER_VOCAB, randomize
from rerank_plugins.testing.tokenizers import bert_tokenizer, bpe_tokenizer, t5_tokenizer

__all__ = [
    "CORPUS",
    "FAMILY_BUILDERS",
    "TINY_SIZES",
    "TOKENIZER_VOCAB",
    "BuildSpec",
    "bert_tokenizer",
    "bpe_tokenizer",
    "build_model",
    "build_tiny_model",
    "randomize",
    "save_list_head",
    "t5_tokenizer",
    "tiny_models",
]


def tiny_models() -> dict[str, tuple[FamilySpec, TinyModel]]:
    """Every tiny model kind -> (its family, its :class:`~rerank_plugins.families.TinyModel`), from the registry."""
    return {model.kind: (spec, model) for spec in all_families() for model in spec.tiny_models}


def __getattr__(name: str) -> Any:
    # Derived from the families on use, so that a family registered later (yours) is listed too.
    if name == "FAMILY_BUILDERS":  # kind -> what build_tiny_model(kind, ...) builds
        return {kind: model.description for kind, (_, model) in tiny_models().items()}
    if name == "TINY_SIZES":  # kind -> its tiny sizes
        return {kind: dict(model.sizes) for kind, (_, model) in tiny_models().items()}
    raise AttributeError(f"module 'rerank_plugins.testing' has no attribute {name!r}")


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

    ``sizes`` override the tiny sizes (``TINY_SIZES``); the tokenizer is built from ``corpus`` with
    ``tokenizer_vocab`` entries (default: the tiny size of its type); ``std=None`` draws realistic fan-in weights
    (see :func:`randomize`). ``device`` is where the model is built and drawn (the weights differ between
    devices: each has its own random generator); ``dtype`` the dtype it is saved in (default: fp32).
    """
    known = tiny_models()
    if kind not in known:
        raise ValueError(f"Unknown kind {kind!r}. Valid kinds: {', '.join(known)}.")
    _, model = known[kind]
    module, _, function = model.builder.partition(":")
    builder = getattr(importlib.import_module(module), function)
    target = Path(path)
    target.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    merged = {**model.sizes, **(sizes or {})}
    with torch.device(device):
        builder(BuildSpec(target, list(corpus), tokenizer_vocab, merged, std, seed, dtype, model.options))
    return str(target)


def build_tiny_model(kind: str, path: str | os.PathLike[str], *, std: float = 0.3, seed: int = 0) -> str:
    """Build a tiny random model of ``kind`` (a family name, or see ``FAMILY_BUILDERS``) in ``path``.

    Returns the path as a string, ready for ``rerank_plugins.CrossEncoder(path, family=...)``.
    """
    return build_model(kind, path, std=std, seed=seed)
