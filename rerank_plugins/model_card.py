"""The model card data of ``rerank_plugins.CrossEncoder``: sentence-transformers' own, plus the training data checks.

When a ``CrossEncoderTrainer`` is built, it hands each (non-empty) dataset and the loss to the model's card data
to describe them in the model card: the one point of our code that sees both before the first step. There every
dataset is checked against its loss (``rerank_plugins.training.check_dataset``), whatever the loss, so a NaN
label or a misnamed label column stops the trainer's construction instead of training on nonsense.
"""

from __future__ import annotations

from typing import Any

from sentence_transformers.cross_encoder.model_card import CrossEncoderModelCardData


class CheckedModelCardData(CrossEncoderModelCardData):
    """``CrossEncoderModelCardData`` that checks a trainer's datasets against the loss before describing them."""

    def extract_dataset_metadata(
        self, dataset: Any, dataset_metadata: Any, loss: Any, dataset_type: Any, *args: Any, **kwargs: Any
    ) -> Any:
        from rerank_plugins.training.checks import check_dataset  # a trainer runs: accelerate and datasets are there

        check_dataset(dataset, loss, name=str(dataset_type))
        return super().extract_dataset_metadata(dataset, dataset_metadata, loss, dataset_type, *args, **kwargs)
