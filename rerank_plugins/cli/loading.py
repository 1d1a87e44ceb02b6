"""Loading a model for a command: checks before anything is imported, quiet output, fast failure offline.

A local path must be a model directory, a ``--device`` must exist on this machine, and a hub that cannot be
reached is one TCP probe and one line, not minutes of retries. Loading prints no progress bars or load-report
tables unless ``--verbose``; weights initialised at random are one warning line.
"""

from __future__ import annotations

import os
from typing import Any

from rerank_plugins.hub import HubUnreachableError, looks_like_a_path, reachable_hub_kwargs
from rerank_plugins.quiet import quiet_loading

__all__ = ["CommandError", "load_model", "quiet_loading"]


class CommandError(Exception):
    """An error to print as one line (no traceback), with exit status 2."""


def _check_model_name(name: str) -> None:
    """A local path must be a model directory; anything else is taken as a hub id."""
    path = os.path.expanduser(name)
    if os.path.isfile(path):
        raise CommandError(f"{name} is a file; --model takes a hub id or a model directory")
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise CommandError(
                f"{name} is a directory but not a model: it has no config.json (save one with save_pretrained, "
                "or build a tiny one with `rerank-plugins tiny-model`)"
            )
    elif looks_like_a_path(name):
        raise CommandError(f"{name}: no such model directory")


def _check_device(device: str | None) -> None:
    """``--device`` must name a device that this torch build has."""
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise CommandError(f"--device {device!r} is not a device name (cpu, cuda, cuda:1, mps, ...)") from None
    if parsed.type == "cpu":
        return
    backend = getattr(torch, parsed.type, None) if parsed.type != "mps" else torch.backends.mps
    if backend is None or not getattr(backend, "is_available", lambda: False)():
        build = f"torch {torch.__version__}" + (", a CPU-only build" if parsed.type == "cuda" and not torch.version.cuda
                                                else "")  # fmt: skip
        raise CommandError(f"--device {device}: this machine has no {parsed.type} device ({build}); use --device cpu")
    count = getattr(backend, "device_count", lambda: 1)()
    if parsed.index is not None and parsed.index >= count:
        raise CommandError(f"--device {device}: there are {count} {parsed.type} device(s), numbered from 0")


def load_model(
    name: str, family: str | None = None, preset: str | None = None, *, verbose: bool = False, **kwargs: Any
) -> Any:
    """Load ``rerank_plugins.CrossEncoder`` quietly; a path that is not a model, or an unreachable hub, is one line."""
    _check_model_name(name)
    _check_device(kwargs.get("device"))
    try:
        kwargs = reachable_hub_kwargs(name, kwargs)  # before torch is imported: one line within seconds
    except HubUnreachableError as error:
        raise CommandError(str(error)) from error
    from rerank_plugins import CrossEncoder

    try:
        with quiet_loading(verbose):
            return CrossEncoder(os.path.expanduser(name), family=family, preset=preset, verbose=verbose, **kwargs)
    except HubUnreachableError as error:  # already one line that says what to do
        raise CommandError(str(error)) from error
    except (OSError, ValueError) as error:
        if isinstance(error, ValueError) and ("family" in str(error) or "preset" in str(error)):
            raise CommandError(str(error).splitlines()[0]) from error
        reason = str(error).splitlines()[0].rstrip(". ") if str(error) else type(error).__name__
        raise CommandError(
            f"could not load model {name!r}: {reason}. "
            "If the hub is out of reach, pass a local directory (e.g. one made by `rerank-plugins tiny-model`, "
            "or a downloaded copy) and, for a published model, --preset with its hub id."
        ) from error
