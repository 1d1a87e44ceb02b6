"""Where checkpoints come from: ``HubOptions``, and one fast check of the hub before anything is fetched.

sentence-transformers, ``transformers`` and ``huggingface_hub`` name the options differently (``cache_folder``
vs ``cache_dir``); one typed object carries them from the constructor, the CLI or Ray down to every loader.

:func:`reachable_hub_kwargs` runs before every load, in Python as on the command line: huggingface_hub retries a
refused or timed-out connection for more than a minute, one warning per retry, before it gives up; one short TCP
probe decides instead. Out of reach, a cached copy loads with ``local_files_only=True`` and anything else is one
clear :class:`HubUnreachableError`. A path that looks local but is not there is a ``FileNotFoundError``, not a
hub error about repository ids.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

HUB_PROBE_TIMEOUT = 5.0
"""Seconds to wait for a TCP connection to the hub (or its proxy) before calling it out of reach."""

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


class HubUnreachableError(OSError):
    """The hub is out of reach and the model is not in the local cache (its message is one line)."""


def hub_unreachable(endpoint: str, timeout: float = HUB_PROBE_TIMEOUT) -> str | None:
    """Why the hub at ``endpoint`` (or the proxy for it) takes no TCP connection, or None when it does."""
    import socket
    import urllib.parse
    import urllib.request

    url = urllib.parse.urlsplit(endpoint)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_url = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_url.hostname or "", proxy_url.port or 80
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as error:
        return error.strerror or str(error) or type(error).__name__


def looks_like_a_path(name: str) -> bool:
    """``./x``, ``../x``, ``/x``, ``~/x`` or ``a/b/c``: never a hub id (those are ``owner/name``)."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def reachable_hub_kwargs(name_or_path: str | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` (sentence-transformers' names) to load ``name_or_path`` with, failing fast without the hub.

    A local directory, ``local_files_only=True`` or ``HF_HUB_OFFLINE=1`` need no hub: ``kwargs`` as given. Else
    one TCP probe of the hub: reachable, ``kwargs`` as given; out of reach with the model in the local cache,
    ``kwargs`` with ``local_files_only=True`` (and a warning); out of reach otherwise, :class:`HubUnreachableError`.
    """
    if name_or_path is None or os.path.isdir(os.path.expanduser(name_or_path)):
        return dict(kwargs)
    if looks_like_a_path(name_or_path):
        raise FileNotFoundError(f"{name_or_path}: no such model directory (a hub id is owner/name)")
    if kwargs.get("local_files_only"):
        return dict(kwargs)
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE:
        return dict(kwargs)
    reason = hub_unreachable(constants.ENDPOINT)
    if reason is None:
        return dict(kwargs)
    options = HubOptions.from_kwargs(kwargs)
    try:
        cached = isinstance(
            try_to_load_from_cache(
                name_or_path, "config.json", cache_dir=options.cache_folder, revision=options.revision
            ),
            str,
        )
    except ValueError:  # not a valid hub id
        cached = False
    if cached:
        logger.warning(
            "The hub (%s) is out of reach (%s): using the cached copy of %s.", constants.ENDPOINT, reason, name_or_path
        )
        return {**kwargs, "local_files_only": True}
    raise HubUnreachableError(
        f"could not load model {name_or_path!r}: the Hugging Face hub ({constants.ENDPOINT}) cannot be reached "
        f"({reason}) and the model is not in the local cache. Pass a local directory (a downloaded copy, or one "
        "made by `rerank-plugins tiny-model`) and, for a published model, its hub id as preset= (--preset)"
    )
