"""Two-label classifier heads as one relevance score: ``logit[1] - logit[0]``.

``softmax(logits)[:, 1] == sigmoid(logit[1] - logit[0])`` exactly, so with this module after a two-label
sequence classifier, ``predict`` (sigmoid) returns P(relevant) as one number per pair, and ``rank`` works.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sentence_transformers.base.modules import Module

from rerank_plugins.scoring.base import fp32_scores


class LabelMargin(Module):
    """Replaces ``features["scores"]`` of shape ``(batch, 2)`` by ``scores[:, positive] - scores[:, 1 - positive]``."""

    config_file_name: ClassVar[str] = "rerank_plugins_label_margin.json"
    config_keys: ClassVar[list[str]] = ["positive_label"]

    def __init__(self, positive_label: int = 1) -> None:
        super().__init__()
        if positive_label not in (0, 1):
            raise ValueError(f"positive_label must be 0 or 1, got {positive_label!r}.")
        self.positive_label = positive_label

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        logits = features["scores"].float()  # fp32 before the difference: bf16 logits would tie
        features["scores"] = fp32_scores(logits[:, self.positive_label] - logits[:, 1 - self.positive_label])
        return features

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        self.save_config(output_path)
