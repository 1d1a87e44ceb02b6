"""Loading a model for a command: checks before anything is imported, quiet output, fast failure offline.

A local path must be a model directory, a ``--device`` must exist on this machine, and a hub that cannot be
reached is one TCP probe and one line, not minutes of retries. Loading prints no progress bars or load-report
tables unless ``--verbose``; weights initialised at random are one warning line.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

HUB_PROBE_TIMEOUT = 5.0
"""Seconds to wait for a TCP connection to the hub (or its proxy) before calling it out of reach."""


class CommandError(Exception):
    """An error to print as one line (no traceback), with exit status 2."""


def _hub_unreachable(endpoint: str, timeout: float = HUB_PROBE_TIMEOUT) -> str | None:
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


def _hub_options(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Hub options for loading ``name`` that fail fast when the hub is out of reach.

    huggingface_hub retries a refused or timed-out connection for more than a minute, one warning per retry, before
    it gives up. One short TCP probe decides instead: out of reach, a cached copy loads with
    ``local_files_only=True`` and anything else is one clear error.
    """
    if os.path.isdir(name) or kwargs.get("local_files_only"):
        return kwargs
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE:
        return kwargs
    reason = _hub_unreachable(constants.ENDPOINT)
    if reason is None:
        return kwargs
    try:
        cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not a valid hub id
        cached = False
    if cached:
        print(f"rerank-plugins: the hub ({constants.ENDPOINT}) is out of reach ({reason}): using the cached copy "
              f"of {name}", file=sys.stderr)  # fmt: skip
        return {**kwargs, "local_files_only": True}
    raise CommandError(
        f"could not load model {name!r}: the Hugging Face hub ({constants.ENDPOINT}) cannot be reached ({reason}) "
        "and the model is not in the local cache. Pass a local directory (e.g. one made by `rerank-plugins "
        "tiny-model`, or a downloaded copy) and, for a published model, --preset with its hub id"
    )


def _check_model_name(name: str) -> None:
    """A local path must be a model directory; anything else is taken as a hub id."""
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)
    path = os.path.expanduser(name)
    if os.path.isfile(path):
        raise CommandError(f"{name} is a file; --model takes a hub id or a model directory")
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise CommandError(
                f"{name} is a directory but not a model: it has no config.json (save one with save_pretrained, "
                "or build a tiny one with `rerank-plugins tiny-model`)"
            )
    elif looks_local:
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


class _LoadReports(logging.Filter):
    """Drops transformers' load-report tables; keeps the count of weights that were not in the checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.random: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        plain = re.sub(r"\x1b\[[0-9;]*m", "", message)
        rows = [[cell.strip() for cell in line.split("|")] for line in plain.splitlines() if "|" in line]
        keys = sorted(row[0] for row in rows if len(row) > 1 and row[1] in ("MISSING", "MISMATCH"))
        if keys:
            source = plain.splitlines()[0].replace(" LOAD REPORT from:", " from")
            self.random.append(f"{source}: {len(keys)} weight(s) not in the checkpoint, initialised at random "
                               f"({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")  # fmt: skip
        return False

    def report(self) -> None:
        for line in self.random:
            print(f"rerank-plugins: warning: {line}; --verbose shows transformers' report", file=sys.stderr)


@contextmanager
def quiet_loading(verbose: bool = False) -> Iterator[None]:
    """Quiet model loading: no transformers progress bars or load-report tables, unless ``verbose``.

    A report that says weights were initialised at random is summarised in one warning line instead.
    """
    if verbose:
        yield
        return
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hub_bars_off = hub_utils.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # transformers' bars and the hub's
    reports = _LoadReports()
    loggers = [logging.getLogger(f"transformers.{name}") for name in ("modeling_utils", "modeling_layers")]
    for each in loggers:
        each.addFilter(reports)
    try:
        yield
    finally:
        for each in loggers:
            each.removeFilter(reports)
        if bars:
            hf_logging.enable_progress_bar()
        if hub_bars_off:
            hub_utils.disable_progress_bars()
        else:
            hub_utils.enable_progress_bars()
        reports.report()


def load_model(
    name: str,
    family: str | None = None,
    preset: str | None = None,
    *,
    verbose: bool = False,
    int8: bool = False,
    **kwargs: Any,
) -> Any:
    """Load ``rerank_plugins.CrossEncoder`` quietly; a path that is not a model, or an unreachable hub, is one line.

    ``int8``: torch's dynamic int8 (``quantize_int8``) with ``backend="torch"``, else the backend's int8 file
    (``model_kwargs={"int8": True}``).
    """
    _check_model_name(name)
    _check_device(kwargs.get("device"))
    kwargs = _hub_options(name, kwargs)
    backend = kwargs.get("backend", "torch")
    if int8 and backend != "torch":
        kwargs["model_kwargs"] = {**(kwargs.get("model_kwargs") or {}), "int8": True}
    from rerank_plugins import CrossEncoder

    try:
        with quiet_loading(verbose):
            model = CrossEncoder(os.path.expanduser(name), family=family, preset=preset, **kwargs)
        if int8 and backend == "torch":
            from rerank_plugins.quantization import quantize_int8

            quantize_int8(model)
        return model
    except ImportError as error:
        raise CommandError(str(error).splitlines()[0]) from error
    except (OSError, ValueError) as error:
        if isinstance(error, ValueError) and ("backend" in str(error) or "int8" in str(error)):
            raise CommandError(str(error).splitlines()[0]) from error
        if isinstance(error, ValueError) and ("family" in str(error) or "preset" in str(error)):
            raise CommandError(str(error).splitlines()[0]) from error
        reason = str(error).splitlines()[0].rstrip(". ") if str(error) else type(error).__name__
        raise CommandError(
            f"could not load model {name!r}: {reason}. "
            "If the hub is out of reach, pass a local directory (e.g. one made by `rerank-plugins tiny-model`, "
            "or a downloaded copy) and, for a published model, --preset with its hub id."
        ) from error
