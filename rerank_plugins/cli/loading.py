"""The command line's side of loading a model: its one-line error (:class:`CommandError`, exit status 2) around
:mod:`rerank_plugins.loading`, where the checks and the loading live for every frontend."""

from __future__ import annotations

from typing import Any

from rerank_plugins import loading
from rerank_plugins.loading import ModelSourceError, quiet_loading

__all__ = ["CommandError", "check_device", "check_model_source", "load_model", "quiet_loading"]


class CommandError(Exception):
    """An error to print as one line (no traceback), with exit status 2."""


def check_model_source(name: str) -> None:
    """:func:`rerank_plugins.loading.check_model_source`, as a :class:`CommandError`."""
    try:
        loading.check_model_source(name)
    except ModelSourceError as error:
        raise CommandError(str(error)) from error


def check_device(device: str | None) -> None:
    """:func:`rerank_plugins.loading.check_device`, as a :class:`CommandError`."""
    try:
        loading.check_device(device)
    except ModelSourceError as error:
        raise CommandError(str(error)) from error


def load_model(
    name: str,
    family: str | None = None,
    preset: str | None = None,
    *,
    verbose: bool = False,
    int8: bool = False,
    **kwargs: Any,
) -> Any:
    """:func:`rerank_plugins.loading.load_model`, its errors as a :class:`CommandError`."""
    try:
        return loading.load_model(name, family, preset, verbose=verbose, int8=int8, **kwargs)
    except ModelSourceError as error:
        raise CommandError(str(error)) from error
