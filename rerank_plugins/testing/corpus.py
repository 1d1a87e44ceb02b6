"""What every tiny model shares: the sentences its tokenizer is built from, and how its weights are drawn."""

from __future__ import annotations

import torch

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
