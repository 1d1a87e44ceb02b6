"""What a server serves and how: :class:`ServeConfig`, the programmatic API of ``rerank_plugins.serve``.

    >>> from rerank_plugins.serve import ServeConfig, ServedModel, create_app  # doctest: +SKIP
    >>> config = ServeConfig(models=[ServedModel("inranker", "unicamp-dl/InRanker-base")], api_key="KEY")
    >>> app = create_app(config)  # doctest: +SKIP

The command line's flags and the Ray Serve builder's ``args`` become a config through one parser,
:meth:`ServeConfig.from_options` (the table of :mod:`rerank_plugins.serve.options`). Nothing here imports torch or
FastAPI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from rerank_plugins.core.queue import QueueOptions
from rerank_plugins.core.requests import RunOptions
from rerank_plugins.serve.options import (
    API_KEY_ENV,
    BACKENDS,
    ENGINES,
    LOG_LEVELS,
    OPTION_NAMES,
    OptionError,
    read_options,
)

_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class ServedModel:
    """One model to serve: its served name, where it comes from, and how to load it.

    Attributes:
        name: the name clients pass as ``model`` (and TEI's ``/models/NAME/rerank``).
        source: a hub id or a local directory.
        family: force a scoring family (None: decided from the checkpoint, see ``rerank_plugins.families``).
        preset: a registry id whose settings apply to a local copy.
        device: where to score (None: the best available).
        dtype: ``"fp32"``, ``"bf16"`` or ``"fp16"`` weights (None: the checkpoint's).
        max_length: tokens per input (None: the model's).
        trust_remote_code: allow the checkpoint's own Python code.
        backend: ``"torch"``, ``"onnx"`` or ``"openvino"`` (``CrossEncoder(..., backend=...)``).
        int8: int8 inference on the CPU (torch's dynamic int8, or the backend's int8 file).
        options: any other ``CrossEncoder`` keyword argument.
    """

    name: str
    source: str
    family: str | None = None
    preset: str | None = None
    device: str | None = None
    dtype: str | None = None
    max_length: int | None = None
    trust_remote_code: bool = False
    backend: str = "torch"
    int8: bool = False
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        for name in ("name", "source"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"ServedModel.{name} must be a non-empty str, got {value!r}.")
        if self.dtype is not None and self.dtype not in _DTYPE_NAMES:
            raise ValueError(f"ServedModel.dtype must be one of {', '.join(_DTYPE_NAMES)} or None, got {self.dtype!r}.")
        if self.backend not in BACKENDS:
            raise ValueError(f"ServedModel.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}.")
        named = {"family", "preset", "device", "max_length", "trust_remote_code", "model_name_or_path", "backend"}
        clash = sorted(named & set(self.options))
        if clash:
            raise ValueError(f"ServedModel.options: give {', '.join(clash)} as the field(s) of that name.")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def crossencoder_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``rerank_plugins.CrossEncoder`` (``family`` and ``preset`` aside)."""
        kwargs: dict[str, Any] = {"trust_remote_code": self.trust_remote_code, **self.options}
        if self.device is not None:
            kwargs["device"] = self.device
        if self.max_length is not None:
            kwargs["max_length"] = self.max_length
        if self.backend != "torch":
            kwargs["backend"] = self.backend
        if self.dtype is not None:
            import torch  # only when the model is loaded

            model_kwargs = dict(kwargs.get("model_kwargs") or {})
            model_kwargs["dtype"] = getattr(torch, _DTYPE_NAMES[self.dtype])
            kwargs["model_kwargs"] = model_kwargs
        return kwargs

    def load(self, verbose: bool = False) -> Any:
        """The loaded ``rerank_plugins.CrossEncoder`` (quietly; a source that cannot be is one clear line, see
        :func:`rerank_plugins.loading.load_model`)."""
        from rerank_plugins.loading import load_model

        return load_model(
            self.source, self.family, self.preset, verbose=verbose, int8=self.int8, **self.crossencoder_kwargs()
        )


@dataclass(frozen=True)
class RayOptions:
    """How ``engine="ray"`` runs the server: Ray Serve replicas, each serving every model.

    Attributes:
        replicas: (min, max) replicas; equal bounds: that many, else autoscaled between them.
        target_ongoing_requests: autoscaling aims at this many requests in flight per replica.
        max_ongoing_requests: requests in flight per replica, at most (more wait at Ray's proxy).
        replica_cpus: CPUs reserved per replica.
        replica_gpus: GPUs reserved per replica (None: one when a model's device is CUDA, else none).
        address: an existing Ray cluster (None: ``$RAY_ADDRESS``, else a local Ray started for the server).
    """

    replicas: tuple[int, int] = (1, 1)
    target_ongoing_requests: float = 2.0
    max_ongoing_requests: int = 64
    replica_cpus: float = 1.0
    replica_gpus: float | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        low, high = self.replicas
        if not 1 <= low <= high:
            raise ValueError(f"replicas must be (min, max) with 1 <= min <= max, got {self.replicas!r}.")


def _positive(name: str, value: Any, kind: type | tuple[type, ...] = int) -> None:
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:  # type: ignore[operator]
        raise ValueError(f"{name} must be a positive {'integer' if kind is int else 'number'}, got {value!r}.")


@dataclass(frozen=True)
class ServeConfig:
    """Everything a server needs: the models, the limits, the queue, the API key, where it listens.

    Attributes:
        models: the models to serve; the first is the default (requests without ``model``, TEI's ``/rerank``).
        api_key: when set, every request but /health and the OpenAPI pages needs ``Authorization: Bearer KEY``.
        max_documents: documents per request, at most (413).
        max_body_bytes: bytes of a request body, at most (413, before it is parsed).
        max_pair_chars: characters of all (query, document) pairs of a request together (413; the query counts once
            per document).
        request_timeout: seconds a request may wait for its scores, then 504 (and its work is abandoned).
        read_timeout: seconds to receive a request's headers, and then its body, then 408.
        max_connections: open connections at most; past it, 503 before the API key is even read (None: what the
            process's open-file limit allows; uvicorn only).
        retry_after: seconds said in ``Retry-After`` of a 503.
        queue: how each model's queue gathers concurrent requests into scoring calls (``core.queue``), and how
            those calls batch their forward passes (``queue.run``).
        host, port: where uvicorn, or Ray's proxy, listens.
        log_level: the server's log level.
        engine: what runs the server: ``"uvicorn"`` (one process) or ``"ray"`` (Ray Serve replicas, see ``ray``).
        ray: the Ray Serve replicas (``engine="ray"``).
    """

    models: Sequence[ServedModel] = ()
    api_key: str | None = None
    max_documents: int = 1000
    max_body_bytes: int = 8 * 1024 * 1024
    max_pair_chars: int = 64 * 1024 * 1024
    request_timeout: float = 60.0
    read_timeout: float = 30.0
    max_connections: int | None = None
    retry_after: int = 1
    queue: QueueOptions = field(default_factory=QueueOptions)
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    engine: str = "uvicorn"
    ray: RayOptions = field(default_factory=RayOptions)

    def __post_init__(self) -> None:
        models = tuple(self.models)
        object.__setattr__(self, "models", models)
        for model in models:
            if not isinstance(model, ServedModel):
                raise TypeError(f"models must be ServedModel objects, got {type(model).__name__}.")
        names = [model.name for model in models]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"models: the name {twice[0]!r} is given twice; serve one under another NAME")
        for name in ("max_documents", "max_body_bytes", "max_pair_chars", "retry_after"):
            _positive(name, getattr(self, name))
        _positive("request_timeout", self.request_timeout, (int, float))
        _positive("read_timeout", self.read_timeout, (int, float))
        if self.max_connections is not None:
            _positive("max_connections", self.max_connections)
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key.strip()):
            raise ValueError("api_key must not be empty.")
        if not isinstance(self.queue, QueueOptions):
            raise TypeError(f"queue must be QueueOptions, got {type(self.queue).__name__}.")
        if self.queue.max_queue_pairs < self.max_documents:
            raise ValueError(
                f"max_queue_pairs ({self.queue.max_queue_pairs}) must be at least max_documents "
                f"({self.max_documents}), or a full-size request could never be queued."
            )
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ValueError(f"port must be between 1 and 65535, got {self.port!r}.")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}.")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}.")

    # -- the one parser of option values ----------------------------------------------------------------------
    @classmethod
    def from_options(cls, values: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> ServeConfig:
        """The config for serve options by name (``{"model": ["a=/x"], "max_documents": "50", ...}``): the
        command line's flags, or the Ray Serve builder's ``args``. Values may be text or typed; an option that is
        not given takes its default; the API key defaults to ``$RERANK_PLUGINS_API_KEY``. A mistake is an
        :class:`~rerank_plugins.serve.options.OptionError` naming the option."""
        given = read_options(dict(values))
        environ = os.environ if environ is None else environ

        def get(name: str) -> Any:
            """The option's value, or its default (the table's)."""
            value = given.get(name)
            return OPTION_NAMES[name].default if value is None else value

        models = _models(given)
        try:
            run = RunOptions(batch_size=get("batch_size"), batch_tokens=get("max_batch_tokens"))
            queue = QueueOptions(
                max_call_pairs=get("max_call_pairs"),
                max_wait_ms=get("max_wait_ms"),
                max_queue_pairs=get("max_queue_pairs"),
                run=run,
            )
            ray = RayOptions(
                replicas=get("replicas"),
                target_ongoing_requests=get("target_ongoing_requests"),
                max_ongoing_requests=get("max_ongoing_requests"),
                replica_cpus=get("replica_cpus"),
                replica_gpus=get("replica_gpus"),
                address=get("ray_address"),
            )
            return cls(
                models=models,
                api_key=get("api_key") or environ.get(API_KEY_ENV) or None,
                max_documents=get("max_documents"),
                max_body_bytes=get("max_body_bytes"),
                max_pair_chars=get("max_pair_chars"),
                request_timeout=get("request_timeout"),
                read_timeout=get("read_timeout"),
                max_connections=get("max_connections"),
                queue=queue,
                host=get("host"),
                port=get("port"),
                log_level=get("log_level"),
                engine=get("engine"),
                ray=ray,
            )
        except ValueError as error:  # a check across options; each message starts with the option's name
            option, _, problem = str(error).rstrip(".").partition(" ")
            raise OptionError(option.split("(")[0].rstrip(":"), problem) from None


def _models(given: Mapping[str, Any]) -> tuple[ServedModel, ...]:
    """The :class:`ServedModel` of every ``model`` option, with the per-model options applied."""
    entries = given.get("model") or ()
    if not entries:
        raise OptionError("model", "at least one model is required ([NAME=]ID)")
    specs = [(name or source, source) for name, source in entries]
    names = [name for name, _ in specs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise OptionError("model", f"the name {twice[0]!r} is given twice; serve one as NAME=PATH")
    families = _per_model(given.get("family") or (), names, "family")
    presets = _per_model(given.get("preset") or (), names, "preset")
    dtype = given.get("dtype")
    return tuple(
        ServedModel(
            name,
            source,
            family=families.get(name),
            preset=presets.get(name),
            device=given.get("device"),
            dtype=None if dtype in (None, "auto") else dtype,
            max_length=given.get("max_length"),
            trust_remote_code=bool(given.get("trust_remote_code")),
            backend=given.get("backend") or "torch",
            int8=bool(given.get("int8")),
        )
        for name, source in specs
    )


def _per_model(values: Sequence[tuple[str | None, str]], names: list[str], option: str) -> dict[str, str]:
    """``family``/``preset`` values by served name: ``NAME=X`` for one model, ``X`` for all."""
    chosen: dict[str, str] = {}
    for name, setting in values:
        if name is None:
            chosen.update(dict.fromkeys(names, setting))
        elif name in names:
            chosen[name] = setting
        else:
            raise OptionError(option, f"{name}={setting}: no model is served as {name!r} (served: {', '.join(names)})")
    return chosen
