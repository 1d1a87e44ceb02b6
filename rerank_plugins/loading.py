"""Loading a model for a frontend (the command line, the server, its Ray replicas): checks first, quietly, fast.

A model source is a hub id or a local directory. :func:`check_model_source` refuses what can be neither (a path
that is not a model directory, ``"=x"``) and :func:`check_device` a device this machine lacks, before any model
library is imported, so that a mistake is one line at once. :func:`load_model` runs both, probes the hub once
(one TCP connection, not minutes of retries) and loads without progress bars or load-report tables. Their errors
are :class:`ModelSourceError`, a ``ValueError`` whose message is one line; the command line prints it as is.
"""

from __future__ import annotations

import os
import re
from typing import Any

from rerank_plugins.hub import HubUnreachableError, looks_like_a_path, reachable_hub_kwargs
from rerank_plugins.quiet import quiet_loading

__all__ = ["ModelSourceError", "check_device", "check_model_source", "load_model", "quiet_loading"]

_HUB_ID = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?$")
"""What a hub repository id can look like: ``NAME`` or ``ORG/NAME`` (letters, digits, ``-``, ``_``, ``.``)."""


class ModelSourceError(ValueError):
    """A model that cannot be loaded from where it was asked for; the message is one line."""


def check_model_source(name: str) -> None:
    """A local path must be a model directory; anything else must look like a hub id (``ORG/NAME``)."""
    if not isinstance(name, str) or not name.strip():
        raise ModelSourceError(f"{name!r}: a model is a hub id (ORG/NAME) or a model directory")
    path = os.path.expanduser(name)
    if os.path.isfile(path):
        raise ModelSourceError(f"{name} is a file; a model is a hub id or a model directory")
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ModelSourceError(
                f"{name} is a directory but not a model: it has no config.json (save one with save_pretrained, "
                "or build a tiny one with `rerank-plugins tiny-model`)"
            )
    elif looks_like_a_path(name):
        raise ModelSourceError(f"{name}: no such model directory")
    elif not _HUB_ID.match(name) or ".." in name or "--" in name:
        raise ModelSourceError(f"{name!r} is neither a model directory nor a hub id (ORG/NAME)")


def check_device(device: str | None) -> None:
    """``device`` must name a device that this torch build has (None: the best available)."""
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ModelSourceError(f"--device {device!r} is not a device name (cpu, cuda, cuda:1, mps, ...)") from None
    if parsed.type == "cpu":
        return
    backend = getattr(torch, parsed.type, None) if parsed.type != "mps" else torch.backends.mps
    if backend is None or not getattr(backend, "is_available", lambda: False)():
        build = f"torch {torch.__version__}" + (", a CPU-only build" if parsed.type == "cuda" and not torch.version.cuda
                                                else "")  # fmt: skip
        raise ModelSourceError(
            f"--device {device}: this machine has no {parsed.type} device ({build}); use --device cpu"
        )
    count = getattr(backend, "device_count", lambda: 1)()
    if parsed.index is not None and parsed.index >= count:
        raise ModelSourceError(f"--device {device}: there are {count} {parsed.type} device(s), numbered from 0")


def load_model(
    name: str,
    family: str | None = None,
    preset: str | None = None,
    *,
    verbose: bool = False,
    int8: bool = False,
    **kwargs: Any,
) -> Any:
    """``rerank_plugins.CrossEncoder(name, family=..., preset=..., **kwargs)``, loaded quietly; a source that is not a
    model, a missing device or an unreachable hub is one :class:`ModelSourceError` line.

    ``int8``: torch's dynamic int8 (``quantize_int8``) with ``backend="torch"``, else the backend's int8 file
    (``model_kwargs={"int8": True}``).
    """
    check_model_source(name)
    check_device(kwargs.get("device"))
    try:
        kwargs = reachable_hub_kwargs(name, kwargs)  # before torch is imported: one line within seconds
    except HubUnreachableError as error:
        raise ModelSourceError(str(error)) from error
    backend = kwargs.get("backend", "torch")
    if int8 and backend != "torch":
        kwargs["model_kwargs"] = {**(kwargs.get("model_kwargs") or {}), "int8": True}
    from rerank_plugins import CrossEncoder

    try:
        with quiet_loading(verbose):
            model = CrossEncoder(os.path.expanduser(name), family=family, preset=preset, verbose=verbose, **kwargs)
        if int8 and backend == "torch":
            from rerank_plugins.quantization import quantize_int8

            quantize_int8(model)
        return model
    except HubUnreachableError as error:  # already one line that says what to do
        raise ModelSourceError(str(error)) from error
    except ImportError as error:  # a backend's extra is not installed: the message says which
        raise ModelSourceError(str(error).splitlines()[0]) from error
    except (OSError, ValueError) as error:
        if isinstance(error, ValueError) and any(
            word in str(error) for word in ("family", "preset", "backend", "int8")
        ):
            raise ModelSourceError(str(error).splitlines()[0]) from error
        reason = str(error).splitlines()[0].rstrip(". ") if str(error) else type(error).__name__
        raise ModelSourceError(
            f"could not load model {name!r}: {reason}. "
            "If the hub is out of reach, pass a local directory (e.g. one made by `rerank-plugins tiny-model`, "
            "or a downloaded copy) and, for a published model, --preset with its hub id."
        ) from error
