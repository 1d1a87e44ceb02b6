"""``HubOptions``: the options every file and ``from_pretrained`` call of one model must share.

sentence-transformers, ``transformers`` and ``huggingface_hub`` name them differently (``cache_folder`` vs
``cache_dir``); one typed object carries them from the constructor, the CLI or Ray down to every loader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HUB_OPTION_NAMES = ("token", "revision", "cache_folder", "local_files_only", "trust_remote_code")


@dataclass(frozen=True)
class HubOptions:
    """Where and how a checkpoint is fetched (sentence-transformers' names)."""

    token: bool | str | None = None
    revision: str | None = None
    cache_folder: str | None = None
    local_files_only: bool = False
    trust_remote_code: bool = False

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> HubOptions:
        """The hub options among ``CrossEncoder`` keyword arguments (others are ignored)."""
        return cls(
            token=kwargs.get("token"),
            revision=kwargs.get("revision"),
            cache_folder=kwargs.get("cache_folder"),
            local_files_only=bool(kwargs.get("local_files_only", False)),
            trust_remote_code=bool(kwargs.get("trust_remote_code", False)),
        )

    def pretrained_kwargs(self) -> dict[str, Any]:
        """For ``transformers``' ``from_pretrained`` (``AutoConfig``, ``AutoModel...``, ``AutoTokenizer``)."""
        return {
            "token": self.token,
            "cache_dir": self.cache_folder,
            "revision": self.revision,
            "local_files_only": self.local_files_only,
            "trust_remote_code": self.trust_remote_code,
        }

    def file_kwargs(self) -> dict[str, Any]:
        """For ``sentence_transformers.util.load_file_path`` (one file of a checkpoint)."""
        return {
            "token": self.token,
            "revision": self.revision,
            "cache_folder": self.cache_folder,
            "local_files_only": self.local_files_only,
        }


NO_HUB_OPTIONS = HubOptions()
"""The defaults: the public hub, latest revision, no token, no remote code."""
