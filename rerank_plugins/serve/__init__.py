"""``rerank-plugins serve``: the seed rerankers behind the rerank HTTP APIs that clients already speak.

    >>> from rerank_plugins.serve import create_app, ServeSettings  # doctest: +SKIP
    >>> app = create_app({"inranker": CrossEncoder("unicamp-dl/InRanker-base")})  # doctest: +SKIP

Needs the ``[serve]`` extra (FastAPI, uvicorn, prometheus-client). See ``docs/serving.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["BatchingOptions", "Engine", "ServeSettings", "create_app"]

if TYPE_CHECKING:
    from rerank_plugins.serve.app import create_app
    from rerank_plugins.serve.batching import BatchingOptions, Engine
    from rerank_plugins.serve.settings import ServeSettings


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `rerank-plugins --help` never loads FastAPI.
    if name == "create_app":
        from rerank_plugins.serve.app import create_app

        return create_app
    if name in ("BatchingOptions", "Engine"):
        from rerank_plugins.serve import batching

        return getattr(batching, name)
    if name == "ServeSettings":
        from rerank_plugins.serve.settings import ServeSettings

        return ServeSettings
    raise AttributeError(f"module 'rerank_plugins.serve' has no attribute {name!r}")
