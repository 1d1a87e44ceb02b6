"""``rerank-plugins serve``: the rerankers behind the HTTP rerank APIs that clients already speak.

    >>> from rerank_plugins.serve import ServeConfig, ServedModel, create_app  # doctest: +SKIP
    >>> app = create_app(ServeConfig(models=[ServedModel("inranker", "unicamp-dl/InRanker-base")]))  # doctest: +SKIP
    >>> app = create_app(ServeConfig(max_documents=500), models={"mine": model})  # doctest: +SKIP

:class:`ServeConfig` is the programmatic API (the command line and the Ray Serve builder make one from their
options with :meth:`ServeConfig.from_options`); :func:`create_app` the FastAPI application;
:func:`~rerank_plugins.serve.server.run` runs it under uvicorn with bounded reads and a bounded shutdown. Needs the
``[serve]`` extra (FastAPI, uvicorn, prometheus-client). See ``docs/serving.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rerank_plugins.serve.config import RayOptions, ServeConfig, ServedModel
from rerank_plugins.serve.options import OptionError

__all__ = [
    "BatchingOptions",
    "OptionError",
    "QueueOptions",
    "RayOptions",
    "ServeConfig",
    "ServeSettings",
    "ServedModel",
    "create_app",
]

if TYPE_CHECKING:
    from rerank_plugins.core.queue import QueueOptions
    from rerank_plugins.serve.app import create_app
    from rerank_plugins.serve.settings import BatchingOptions, ServeSettings


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `rerank-plugins --help` never loads FastAPI.
    if name == "create_app":
        from rerank_plugins.serve.app import create_app

        return create_app
    if name == "QueueOptions":
        from rerank_plugins.core.queue import QueueOptions

        return QueueOptions
    if name in ("BatchingOptions", "ServeSettings"):
        from rerank_plugins.serve import settings

        return getattr(settings, name)
    raise AttributeError(f"module 'rerank_plugins.serve' has no attribute {name!r}")
