"""What every scoring module shares: loading a Hugging Face checkpoint, saving it back, counting truncation.

A scoring module is a sentence-transformers ``InputModule``: ``preprocess(pairs)`` turns (query, document)
pairs into tensors, ``forward(features)`` writes ``features["scores"]`` of shape ``(batch, 1)``: the raw
score, before the activation that ``CrossEncoder.predict`` applies. One file per family subclasses this.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, ClassVar, TypeGuard

import torch
from sentence_transformers.base.modules import InputModule
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

Pair = Sequence[str]

HUB_KWARG_NAMES = ("token", "revision", "local_files_only", "trust_remote_code")


def hub_kwargs(
    *,
    token: bool | str | None = None,
    cache_folder: str | None = None,
    revision: str | None = None,
    local_files_only: bool = False,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """The keyword arguments that every ``from_pretrained`` call of one model must share."""
    return {
        "token": token,
        "cache_dir": cache_folder,
        "revision": revision,
        "local_files_only": local_files_only,
        "trust_remote_code": trust_remote_code,
    }


def file_kwargs(hub: dict[str, Any]) -> dict[str, Any]:
    """The hub options that ``sentence_transformers.util.load_file_path`` takes, from a dict of loading options."""
    return {
        "token": hub.get("token"),
        "revision": hub.get("revision"),
        "cache_folder": hub.get("cache_folder"),
        "local_files_only": bool(hub.get("local_files_only")),
    }


class ScoringModule(InputModule):
    """Base of the family modules: a Hugging Face model, its tokenizer, a maximum length, and options.

    Subclasses set ``auto_class`` (which ``AutoModel`` class loads the checkpoint), ``config_keys`` (their
    options, saved with the model), and implement ``preprocess`` and ``forward``.
    """

    config_file_name: str = "rerank_plugins_config.json"  # never config.json: that is the HF config
    family: ClassVar[str] = ""
    default_max_length: ClassVar[int] = 512
    auto_class: ClassVar[Any] = None
    save_in_root: bool = True
    tokenizer: PreTrainedTokenizerBase

    def __init__(
        self,
        model_name_or_path: str,
        *,
        max_length: int | None = None,
        tokenizer_name_or_path: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        **hub: Any,
    ) -> None:
        super().__init__()
        processor_kwargs = dict(processor_kwargs or {})
        # sentence-transformers passes CrossEncoder(max_length=...) as processor_kwargs["model_max_length"].
        max_length = processor_kwargs.pop("model_max_length", None) or max_length or self.default_max_length
        self.max_length = int(max_length)
        shared = hub_kwargs(**{k: v for k, v in hub.items() if k in (*HUB_KWARG_NAMES, "cache_folder")})
        self.model = self.load_backbone(model_name_or_path, {**shared, **(config_kwargs or {}), **(model_kwargs or {})})
        self.model.eval()
        self.tokenizer = self.load_tokenizer(
            tokenizer_name_or_path or model_name_or_path, {**shared, **processor_kwargs}
        )
        self.truncated = 0  # inputs truncated since the CrossEncoder last reset it (one warning per call)

    # -- loading -------------------------------------------------------------------------------------------
    def load_backbone(self, model_name_or_path: str, kwargs: dict[str, Any]) -> PreTrainedModel:
        """Load with ``auto_class``; a checkpoint missing any weight is an error, never a random init."""
        model, info = self.auto_class.from_pretrained(model_name_or_path, output_loading_info=True, **kwargs)
        if info.get("missing_keys"):
            missing = sorted(info["missing_keys"])
            raise ValueError(
                f"{model_name_or_path!r} lacks {len(missing)} weight(s) of {type(model).__name__} "
                f"(e.g. {', '.join(missing[:3])}): they would be random. Is this the right family for it?"
            )
        return model

    @staticmethod
    def load_tokenizer(name_or_path: str, kwargs: dict[str, Any]) -> PreTrainedTokenizerBase:
        return AutoTokenizer.from_pretrained(name_or_path, **kwargs)

    @classmethod
    def load(  # type: ignore[override]
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: bool | str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> ScoringModule:
        """Reload a module saved by :meth:`save` (called by sentence-transformers through ``modules.json``)."""
        config = cls.load_config(
            model_name_or_path,
            subfolder=subfolder,
            token=token,
            cache_folder=cache_folder,
            revision=revision,
            local_files_only=local_files_only,
        )
        path = os.path.join(model_name_or_path, subfolder) if subfolder else model_name_or_path
        return cls(
            path,
            **config,
            model_kwargs=model_kwargs,
            processor_kwargs=processor_kwargs,
            config_kwargs=config_kwargs,
            token=token,
            cache_folder=cache_folder,
            revision=revision,
            local_files_only=local_files_only,
            trust_remote_code=trust_remote_code,
        )

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Save the checkpoint in its Hugging Face layout plus this module's options."""
        self.model.save_pretrained(output_path, safe_serialization=safe_serialization)
        self.save_tokenizer(output_path)
        self.save_config(output_path)

    def get_config_dict(self) -> dict[str, Any]:
        return {"max_length": self.max_length, **{key: getattr(self, key) for key in self.config_keys}}

    # -- shared helpers ------------------------------------------------------------------------------------
    @property
    def max_seq_length(self) -> int:
        """The longest input, in tokens, that the model sees (sentence-transformers reads this name)."""
        return self.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self.max_length = int(value)

    def preprocess_texts(self, texts: Sequence[str]) -> dict[str, Any]:
        """Single texts, each tokenized alone and cut to ``max_length``, with no template.

        sentence-transformers calls ``preprocess`` so on one dataset column at a time (the model card's token
        statistics, before training starts); scoring always goes through (query, document) pairs.
        """
        encoded = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def tokenize_truncating(self, texts: list[str] | list[tuple[str, str]], **kwargs: Any) -> dict[str, Any]:
        """Tokenize as the authors do (pad to the longest, cut to ``max_length``) and count what was cut."""
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt", **kwargs
        )
        self.truncated += len(truncated_rows(self.tokenizer, texts, encoded["attention_mask"], self.max_length))
        return encoded

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(self.get_config_dict())})"


def single_texts(inputs: Sequence[Any]) -> TypeGuard[Sequence[str]]:
    """True when ``inputs`` are plain texts rather than (query, document) pairs."""
    return bool(inputs) and all(isinstance(item, str) for item in inputs)


def truncated_rows(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str] | Sequence[tuple[str, str]],
    attention_mask: torch.Tensor,
    limit: int,
) -> list[int]:
    """The rows of ``texts`` that were cut to ``limit`` tokens.

    Only a row that came out exactly ``limit`` tokens long can have been cut, so only those rows are
    tokenized again, without truncation, to tell "cut" from "exactly the limit": free for short inputs.
    """
    full_rows = (attention_mask.sum(dim=1) >= limit).nonzero().flatten().tolist()
    if not full_rows:
        return []
    again = [texts[i] for i in full_rows]
    if isinstance(again[0], str):
        ids = tokenizer(again, truncation=False, verbose=False)["input_ids"]
    else:
        ids = tokenizer([str(a) for a, _ in again], [str(b) for _, b in again], truncation=False, verbose=False)[
            "input_ids"
        ]
    return [row for row, row_ids in zip(full_rows, ids, strict=True) if len(row_ids) > limit]


def fp32_scores(scores: torch.Tensor) -> torch.Tensor:
    """Scores as a ``(batch, 1)`` fp32 column: low-precision logits are cast before any activation."""
    return scores.float().reshape(-1, 1)
