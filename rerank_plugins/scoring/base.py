"""What every scoring module shares: loading a Hugging Face checkpoint, saving it back, its length limit.

A scoring module is a sentence-transformers ``InputModule`` in two steps, so that the request core can count
real tokens before it batches (``rerank_plugins.core``):

- ``encode(rows, prompt)`` tokenizes each row as the authors do, unpadded, and reports what it cut: one
  :class:`Encoded` per row (its token count and what ``collate`` needs). A row is a ``(query, document)``
  pair, or for a listwise family a whole :class:`~rerank_plugins.core.requests.ListRow`.
- ``collate(encoded)`` pads a batch of encoded rows into tensors; ``forward(features)`` writes
  ``features["scores"]``, the raw score of each row (of each document, for a list), before the activation.

``preprocess(pairs)``, sentence-transformers' own entry (its trainer and evaluators call it), is the two in a
row. One file per family subclasses this and ends with its ``FAMILY = FamilySpec(...)``. Modules hold no
per-call state: what a call cut is reported to that call (``scoring.truncation``), so one module serves many
threads at once.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeGuard

import torch
from sentence_transformers.base.modules import InputModule
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from rerank_plugins.backends.options import split_backend_options
from rerank_plugins.backends.runtime import CompiledScoring
from rerank_plugins.hub import HUB_OPTION_NAMES, HubOptions
from rerank_plugins.resolution import FamilyMismatchError
from rerank_plugins.scoring.truncation import cut_rows, report_truncated, truncated_rows

logger = logging.getLogger(__name__)

Pair = Sequence[str]


@dataclass(frozen=True)
class Encoded:
    """One row tokenized as its family reads it.

    ``tokens`` is what one forward reads of it (template and special tokens included; for a list, all its texts):
    the request core batches by it and reports it as usage. ``data`` is the family's own (token ids, positions).
    """

    tokens: int
    data: Any


OFFSET_POSITIONS = {"roberta": 2, "xlm-roberta": 2, "camembert": 2, "longformer": 2, "bart": 2, "mbart": 2}
"""Model types whose position table starts after ``padding_idx + 1`` rows (fewer usable positions)."""


def position_limit(config: PretrainedConfig) -> int | None:
    """The longest input a model's position embeddings allow, or None (relative positions: T5, ALiBi: BLOOM)."""
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value - OFFSET_POSITIONS.get(getattr(config, "model_type", ""), 0)
    return None


def effective_max_length(requested: int | None, default: int, tokenizer: Any, config: PretrainedConfig) -> int:
    """The smallest of the requested (or default) length, the tokenizer's and the model's limits."""
    wanted = int(requested) if requested is not None else default
    if wanted < 1:
        raise ValueError(f"max_length must be a positive number of tokens, got {wanted}.")
    limits = [wanted]
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 1_000_000:  # else a "no limit" sentinel
        limits.append(tokenizer_limit)
    model_limit = position_limit(config)
    if model_limit is not None:
        limits.append(model_limit)
    length = min(limits)
    if requested is not None and length < wanted:
        logger.warning("max_length=%d exceeds what this model takes; using %d tokens.", wanted, length)
    return length


def checkpoint_architecture(model_name_or_path: str, kwargs: dict[str, Any]) -> str:
    """``"BertModel (bert)"``: what a checkpoint's config says it is, for messages."""
    hub = {key: kwargs[key] for key in ("token", "cache_dir", "revision", "local_files_only") if key in kwargs}
    try:
        config = AutoConfig.from_pretrained(model_name_or_path, **hub)
    except (OSError, ValueError):
        return "unknown (no readable config.json)"
    return f"{', '.join(getattr(config, 'architectures', None) or ['?'])} ({config.model_type})"


class ScoringModule(CompiledScoring, InputModule):
    """Base of the family modules: a Hugging Face model, its tokenizer, a maximum length, and options.

    Subclasses set ``auto_class`` (which ``AutoModel`` class loads the checkpoint), ``config_keys`` (their
    options, saved with the model), and implement ``encode``, ``collate`` and ``forward``. A family that runs on
    ONNX Runtime and OpenVINO also implements ``score_graph`` and lets ``forward`` call ``self.runtime`` when set
    (``rerank_plugins.backends``); the runtime is started by :meth:`load` and ``FamilySpec.build_modules``.
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
        hub: HubOptions | None = None,
        **hub_kwargs: Any,
    ) -> None:
        super().__init__()
        unknown = set(hub_kwargs) - set(HUB_OPTION_NAMES)
        if unknown:
            raise TypeError(f"Unknown option(s) {sorted(unknown)} for {type(self).__name__}.")
        hub = hub if hub is not None else HubOptions.from_kwargs(hub_kwargs)
        processor_kwargs = dict(processor_kwargs or {})
        # sentence-transformers passes CrossEncoder(max_length=...) as processor_kwargs["model_max_length"].
        requested = processor_kwargs.pop("model_max_length", None) or max_length
        shared = hub.pretrained_kwargs()
        self.model = self.load_backbone(model_name_or_path, {**shared, **(config_kwargs or {}), **(model_kwargs or {})})
        self.model.eval()
        self.tokenizer = self.load_tokenizer(
            tokenizer_name_or_path or model_name_or_path, {**shared, **processor_kwargs}
        )
        self.max_length = effective_max_length(requested, self.default_max_length, self.tokenizer, self.model.config)

    # -- loading -------------------------------------------------------------------------------------------
    def load_backbone(self, model_name_or_path: str, kwargs: dict[str, Any]) -> PreTrainedModel:
        """Load with ``auto_class``; a checkpoint of another architecture, or missing any weight, is a
        :class:`~rerank_plugins.resolution.FamilyMismatchError` naming both, never a random init."""
        try:
            model, info = self.auto_class.from_pretrained(model_name_or_path, output_loading_info=True, **kwargs)
        except ValueError as error:
            if "Unrecognized configuration class" not in str(error):  # transformers: no such model for this config
                raise
            raise FamilyMismatchError(
                self.family, model_name_or_path, checkpoint_architecture(model_name_or_path, kwargs),
                f" (it loads checkpoints with {self.auto_class.__name__})",
            ) from None  # fmt: skip
        if info.get("missing_keys"):
            missing = sorted(info["missing_keys"])
            raise FamilyMismatchError(
                self.family, model_name_or_path, checkpoint_architecture(model_name_or_path, kwargs),
                f": it lacks {len(missing)} weight(s) of {type(model).__name__} (e.g. {', '.join(missing[:3])}), "
                "which would be random",
            )  # fmt: skip
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
        backend: str = "torch",
        **kwargs: Any,
    ) -> ScoringModule:
        """Reload a module saved by :meth:`save` (called by sentence-transformers through ``modules.json``)."""
        options, model_kwargs = split_backend_options(backend, model_kwargs)
        config = cls.load_config(
            model_name_or_path,
            subfolder=subfolder,
            token=token,
            cache_folder=cache_folder,
            revision=revision,
            local_files_only=local_files_only,
        )
        path = os.path.join(model_name_or_path, subfolder) if subfolder else model_name_or_path
        hub = HubOptions(token, revision, cache_folder, local_files_only, trust_remote_code)
        module = cls(
            path,
            **config,
            model_kwargs=model_kwargs,
            processor_kwargs=processor_kwargs,
            config_kwargs=config_kwargs,
            hub=hub,
        )
        module.start_backend(path, options, hub)
        return module

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Save the checkpoint in its Hugging Face layout plus this module's options."""
        self.model.save_pretrained(output_path, safe_serialization=safe_serialization)
        self.save_tokenizer(output_path)
        self.save_config(output_path)
        self.save_backend(output_path)

    def get_config_dict(self) -> dict[str, Any]:
        return {"max_length": self.max_length, **{key: getattr(self, key) for key in self.config_keys}}

    # -- the two steps of preprocessing -------------------------------------------------------------------
    def encode(self, rows: Sequence[Any], prompt: str | None = None) -> list[Encoded]:
        """Tokenize each row (a pair, or a :class:`~rerank_plugins.core.requests.ListRow` for a listwise family)
        unpadded; report what was cut."""
        raise NotImplementedError

    def collate(self, rows: Sequence[Encoded]) -> dict[str, Any]:
        """Pad encoded rows into the tensors ``forward`` reads."""
        raise NotImplementedError

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """sentence-transformers' entry: ``collate(encode(inputs))``; single texts (a dataset column) alone."""
        if single_texts(inputs):  # the model card's token statistics, before training starts
            return self.preprocess_texts(inputs)
        return self.collate(self.encode(inputs, prompt))

    def refuse_prompt(self, prompt: str | None) -> None:
        """A family whose authors use no prompt: a prompt is an error, never silently ignored."""
        if prompt is not None:
            raise ValueError(
                f"The {self.family} family has no prompt: its authors' input is fixed (see its model page). "
                "Leave out prompt= / prompt_name= (and default_prompt_name) for this model."
            )

    # -- shared helpers ------------------------------------------------------------------------------------
    @property
    def max_seq_length(self) -> int:
        """The longest input, in tokens, that the model sees (sentence-transformers reads this name)."""
        return self.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self.max_length = effective_max_length(value, self.default_max_length, self.tokenizer, self.model.config)

    def preprocess_texts(self, texts: Sequence[str]) -> dict[str, Any]:
        """Single texts, each tokenized alone and cut to ``max_length``, with no template.

        sentence-transformers calls ``preprocess`` so on one dataset column at a time (the model card's token
        statistics, before training starts); scoring always goes through (query, document) pairs.
        """
        encoded = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def tokenize_texts(self, texts: list[str]) -> list[list[int]]:
        """Each text's ids as the authors tokenize it (special tokens, cut to ``max_length``); report the cut."""
        ids: list[list[int]] = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        full = [i for i, row in enumerate(ids) if len(row) >= self.max_length]  # only these can have been cut
        if full:
            report_truncated(len(cut_rows(self.tokenizer, [texts[i] for i in full], self.max_length)))
        return ids

    def tokenize_truncating(self, texts: list[str] | list[tuple[str, str]], **kwargs: Any) -> dict[str, Any]:
        """Tokenize and pad a whole batch as the authors do (cut to ``max_length``); report what was cut.

        For families of your own whose ``encode`` keeps the texts and whose ``collate`` tokenizes them at once.
        """
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt", **kwargs
        )
        report_truncated(len(truncated_rows(self.tokenizer, texts, encoded["attention_mask"], self.max_length)))
        return encoded

    def pad(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)`` of ``rows`` padded to the longest, on the tokenizer's padding side."""
        pad_id = self.tokenizer.pad_token_id
        return pad_rows(rows, pad_id if pad_id is not None else 0, self.tokenizer.padding_side)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(self.get_config_dict())})"


def encodes_rows(module: Any) -> bool:
    """True when ``module`` tokenizes in the two steps the request core uses (``encode``, then ``collate``).

    sentence-transformers' own ``Transformer`` and families of your own that define only ``preprocess`` do not:
    the core then preprocesses their batches whole.
    """
    encode = getattr(type(module), "encode", None)
    collate = getattr(type(module), "collate", None)
    return callable(encode) and callable(collate) and encode is not ScoringModule.encode


def single_texts(inputs: Sequence[Any]) -> TypeGuard[Sequence[str]]:
    """True when ``inputs`` are plain texts rather than (query, document) pairs."""
    return bool(inputs) and all(isinstance(item, str) for item in inputs)


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of token ids as ``(input_ids, attention_mask)``, padded to the longest with ``pad_id`` on ``side``."""
    width = max((len(row) for row in rows), default=0)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if not row:
            continue
        start = width - len(row) if side == "left" else 0
        input_ids[i, start : start + len(row)] = torch.as_tensor(row, dtype=torch.long)
        attention_mask[i, start : start + len(row)] = 1
    return input_ids, attention_mask


def fp32_scores(scores: torch.Tensor) -> torch.Tensor:
    """Scores as a ``(batch, 1)`` fp32 column: low-precision logits are cast before any activation."""
    return scores.float().reshape(-1, 1)
