"""Ray Serve: the application of :func:`~rerank_plugins.serve.create_app` in replicas behind Ray's HTTP proxy.

Each replica loads every served model and runs the very app that uvicorn runs (the same routes, queues, limits
and API key). Ray's proxy spreads requests over the replicas, and its autoscaler keeps their number between the
bounds of ``RayOptions.replicas``. Two ways in, one :class:`~rerank_plugins.serve.ServeConfig`:

- ``rerank-plugins serve --engine ray ...``: :func:`run` deploys :func:`build_application` and keeps it up;
- Ray's own ``serve run`` / config files: :func:`app` is an application builder whose ``args`` are the serve
  options (``model: [...]``, ``max_documents: 500``, ``replicas: "1:4"``), read by ``ServeConfig.from_options``.

On SIGTERM, :func:`run` first replaces the replicas by ones that answer 503 (``Retry-After``) while the old ones
finish their requests, so that a request arriving during the shutdown gets a 503, never Ray's 404 for a route
that is gone.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from rerank_plugins.serve.config import ServeConfig
from rerank_plugins.serve.options import OptionError

DEPLOYMENT_NAME = "RerankServer"
"""The deployment's name, as a config file's ``deployments:`` section names it to override its options."""
APPLICATION_NAME = "rerank-plugins"
MIN_RAY = (2, 60)
"""The oldest Ray this module is tested with (the floor of the ``[ray-serve]`` extra)."""
RAY_OWN_OPTIONS = ("engine", "host", "port", "ray_address")
"""Serve options that Ray Serve sets itself when it runs the builder (``http_options``, ``serve run``'s flags)."""


class RayServeError(RuntimeError):
    """Ray Serve could not run the application; the message is one line."""


def import_serve() -> Any:
    """``ray.serve``, with Ray's usage statistics off, or an ImportError that says how to install it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # as rerank_plugins.ray: no reports to Ray's servers
    install = "pip install 'rerank-plugins[ray-serve]'"
    try:
        import ray
        from ray import serve
    except ImportError as error:
        raise ImportError(f"Ray Serve needs the [ray-serve] extra: {install} ({error})") from None
    found = tuple(int(part) for part in ray.__version__.split(".")[:2] if part.isdigit())
    if found < MIN_RAY:
        # Older Serve releases differ in the options and the replica life cycle this module relies on.
        raise ImportError(f"Ray Serve needs ray >= {'.'.join(map(str, MIN_RAY))}, found {ray.__version__}: {install}")
    return serve


def deployment_options(config: ServeConfig, draining: bool = False) -> dict[str, Any]:
    """``serve.deployment`` options: replicas (fixed or autoscaled) and each replica's share of the machine. A
    draining deployment is one replica that reserves nothing (it only answers 503)."""
    ray = config.ray
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        # Ray's default (5) would hold requests at the proxy that the replica's own queue could already be
        # gathering; the replica's queue bound (503 + Retry-After) stays the limit that clients see.
        "max_ongoing_requests": ray.max_ongoing_requests,
        # Time for the requests in flight to finish when a replica is stopped (scale-down, redeploy, shutdown).
        "graceful_shutdown_timeout_s": config.request_timeout + 5,
        "ray_actor_options": {"num_cpus": ray.replica_cpus, "num_gpus": _replica_gpus(config)},
    }
    low, high = ray.replicas
    if draining:
        options.update(num_replicas=1, ray_actor_options={"num_cpus": 0, "num_gpus": 0})
    elif low == high:
        options["num_replicas"] = low
    else:
        options["autoscaling_config"] = {
            "min_replicas": low,
            "max_replicas": high,
            "target_ongoing_requests": ray.target_ongoing_requests,
        }
    return options


def _replica_gpus(config: ServeConfig) -> float:
    """GPUs reserved per replica: ``RayOptions.replica_gpus``, else one when a model's device is CUDA (Ray hides
    every GPU from an actor that reserved none), else none."""
    if config.ray.replica_gpus is not None:
        return float(config.ray.replica_gpus)
    return 1.0 if any((model.device or "").startswith("cuda") for model in config.models) else 0.0


class RerankServer:
    """One replica: ``create_app(config)`` (its models loaded here), or while draining an app that answers 503.

    Ray asks :meth:`check_health` every few seconds."""

    def __init__(self, config: ServeConfig, draining: bool = False) -> None:
        self.config = config
        self.draining = draining
        self.built: Any = None

    def __serve_build_asgi_app__(self) -> Any:
        from rerank_plugins.serve.app import create_app

        self.built = draining_app(self.config) if self.draining else create_app(self.config)
        return self.built

    def check_health(self) -> None:
        service = getattr(getattr(self.built, "state", None), "service", None)
        down = [name for name, queue in service.queues.items() if not queue.alive] if service is not None else []
        if down:
            raise RuntimeError(f"the queue of {down} has stopped")


def draining_app(config: ServeConfig) -> Any:
    """An ASGI app that answers every request 503 with ``Retry-After``: the replicas of a server shutting down."""
    from rerank_plugins.serve.errors import error_response

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        response = error_response(
            503, "the server is shutting down; retry on another server or later", "unavailable",
            headers={"Retry-After": str(config.retry_after)},
        )  # fmt: skip
        await response(scope, receive, send)

    return app


def build_application(config: ServeConfig, draining: bool = False) -> Any:
    """The Ray Serve application for ``config``; the models load in each replica (every check that needs no model
    has run when the config was made)."""
    serve = import_serve()
    try:
        import rerank_plugins.serve.app  # noqa: F401  (the replicas need it: fail here, in one line, without it)
    except ImportError as error:
        raise ImportError(f"serving needs the [serve] extra: pip install 'rerank-plugins[serve]' ({error})") from None
    if not config.models:
        raise ValueError("the Ray Serve application needs at least one model (ServeConfig.models)")
    deployment = serve.deployment(serve.ingress()(RerankServer))
    return deployment.options(**deployment_options(config, draining)).bind(config, draining)


def replica_failure(serve: Any) -> str | None:
    """Why the replicas of the application failed to start: the last line of the error Ray recorded (e.g. the
    model directory that does not exist), without the exception's module path; None when Ray has none."""
    application = serve.status().applications.get(APPLICATION_NAME)
    deployment = application.deployments.get(DEPLOYMENT_NAME) if application else None
    lines = [line.strip() for line in str(getattr(deployment, "message", "") or "").splitlines() if line.strip()]
    if not lines:
        return None
    kind, sep, reason = lines[-1].partition(": ")
    return reason if sep and "." in kind and " " not in kind else lines[-1]


def app(args: Mapping[str, Any]) -> Any:
    """Ray Serve application builder: ``serve run rerank_plugins.serve.ray_serve:app model=NAME=PATH``, or
    ``import_path: rerank_plugins.serve.ray_serve:app`` in a config file with the serve options as ``args``."""
    for key in args:
        if str(key).replace("-", "_") in RAY_OWN_OPTIONS:
            raise ValueError(f"{key}: set by Ray Serve here (the config's http_options, or `serve run`'s flags)")
    try:
        return build_application(ServeConfig.from_options(args))
    except OptionError as error:
        raise ValueError(f"rerank-plugins Ray Serve application: {error}") from None


def run(config: ServeConfig) -> None:
    """Deploy the application (to a local Ray unless ``config.ray.address`` or ``$RAY_ADDRESS``), print where it
    listens, and keep it up until SIGINT/SIGTERM; then drain it (see the module's docstring) and stop."""
    serve = import_serve()
    application = build_application(config)
    address = config.ray.address or os.environ.get("RAY_ADDRESS")
    if not address:  # the replicas run on this machine: the mistakes they would find, found now, in a second
        from rerank_plugins.loading import check_device, check_model_source

        for model in config.models:
            check_device(model.device)
            check_model_source(model.source)
    import logging

    import ray

    level = config.log_level.upper()
    logging.getLogger("ray.serve").setLevel(level)
    ray.init(address=address, include_dashboard=False, logging_level=logging.getLevelName(level),
             log_to_driver=config.log_level in ("info", "debug"))  # fmt: skip
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs a SIGTERM handler of its own
        signal.signal(number, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": config.host, "port": config.port}, logging_config={"log_level": level})
        try:
            serve.run(application, name=APPLICATION_NAME, route_prefix="/", logging_config={"log_level": level})
        except RuntimeError as error:  # a replica could not start: its models did not load
            reason = replica_failure(serve) or str(error).splitlines()[0]
            raise RayServeError(f"Ray Serve could not start the replicas: {reason}") from error
        status = serve.status().applications[APPLICATION_NAME].deployments[DEPLOYMENT_NAME]
        running = status.replica_states.get("RUNNING", 0)
        low, high = config.ray.replicas
        bounds = f"{low}" if low == high else f"{low}..{high}, autoscaled"
        print(
            f"rerank-plugins: serving {', '.join(model.name for model in config.models)} on Ray Serve, "
            f"{running} replica(s) running ({bounds}), at http://{config.host}:{config.port}",
            file=sys.stderr,
            flush=True,
        )
        stop.wait()
        print("rerank-plugins: shutting down Ray Serve (replicas drain their requests)", file=sys.stderr, flush=True)
        _drain(serve, config)
        if address:
            # Serve itself stays up on a cluster given by address: only this application goes.
            serve.delete(APPLICATION_NAME)
    finally:
        ray.shutdown()


def _drain(serve: Any, config: ServeConfig) -> None:
    """Replace the replicas by one that answers 503 (Ray stops the old ones the graceful way: no new requests,
    those in flight finish, up to ``graceful_shutdown_timeout_s``), and wait until the old ones are gone. The route
    stays, so that nothing arriving meanwhile gets Ray's 404."""
    serve.run(build_application(config, draining=True), name=APPLICATION_NAME, route_prefix="/")
    deadline = time.monotonic() + config.request_timeout + 30
    while time.monotonic() < deadline:
        deployment = serve.status().applications[APPLICATION_NAME].deployments[DEPLOYMENT_NAME]
        if set(deployment.replica_states) <= {"RUNNING"} and deployment.replica_states.get("RUNNING", 0) == 1:
            return
        time.sleep(0.2)
