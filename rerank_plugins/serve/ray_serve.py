"""Ray Serve: the application of :func:`~rerank_plugins.serve.create_app` in replicas behind Ray's HTTP proxy.

Each replica loads every served model and runs the very app that ``rerank-plugins serve`` runs under uvicorn:
the same endpoints, dynamic batching, limits and API key. Ray's proxy spreads requests over the replicas, and
its autoscaler keeps their number between the bounds of ``--replicas MIN:MAX``.

Two ways in, one code path (:func:`build_application`):

- ``rerank-plugins serve --engine ray --replicas 2 --model unicamp-dl/InRanker-base`` (see ``cli.py``);
- Ray's own ``serve run`` with an import path or a config file: :func:`app` is an application builder whose
  ``args`` are the ``rerank-plugins serve`` flags (``model: [...]``, ``max_documents: 500``, ``replicas: "1:4"``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from collections.abc import Mapping
from typing import Any

DEPLOYMENT_NAME = "RerankServer"
"""The deployment's name, as a config file's ``deployments:`` section names it to override its options."""
APPLICATION_NAME = "rerank-plugins"
MIN_RAY = (2, 60)
"""The oldest Ray this module is tested with (the floor of the ``[ray-serve]`` extra)."""


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


def deployment_options(args: argparse.Namespace, request_timeout: float) -> dict[str, Any]:
    """``serve.deployment`` options from the flags: replicas (fixed or autoscaled) and each replica's share."""
    low, high = args.replicas
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        # Ray's default (5) would hold requests at the proxy that the replica's own batcher could already be
        # batching; the replica's queue bound (503 + Retry-After) stays the limit that clients see.
        "max_ongoing_requests": args.max_ongoing_requests,
        # Time for the requests in flight to finish when a replica is stopped (scale-down, redeploy, shutdown).
        "graceful_shutdown_timeout_s": request_timeout + 5,
        "ray_actor_options": {"num_cpus": args.replica_cpus, "num_gpus": _replica_gpus(args)},
    }
    if low == high:
        options["num_replicas"] = low
    else:
        options["autoscaling_config"] = {
            "min_replicas": low,
            "max_replicas": high,
            "target_ongoing_requests": args.target_ongoing_requests,
        }
    return options


def _replica_gpus(args: argparse.Namespace) -> float:
    """GPUs reserved per replica: ``--replica-gpus``, else one when ``--device`` asks for CUDA (Ray hides every
    GPU from an actor that reserved none), else none."""
    if args.replica_gpus is not None:
        return float(args.replica_gpus)
    return 1.0 if (args.device or "").startswith("cuda") else 0.0


def build_application(args: argparse.Namespace) -> Any:
    """The Ray Serve application for parsed ``rerank-plugins serve`` flags; models load in each replica.

    Every check that needs no model runs here, in the caller, so that a mistake is one line before Ray starts.
    """
    from rerank_plugins.serve.cli import build_settings, load_models, model_specs

    serve = import_serve()
    try:
        from rerank_plugins.serve.app import create_app
    except ImportError as error:
        raise ImportError(f"serving needs the [serve] extra: pip install 'rerank-plugins[serve]' ({error})") from None
    settings = build_settings(args)
    specs = model_specs(args)
    verbose = args.log_level == "debug"

    def build_asgi_app() -> Any:
        # Runs in each replica, once, when Ray starts it: load the models there, then the same app as uvicorn's.
        return create_app(load_models(specs, verbose), settings)

    class RerankServer:
        """One replica: its app is built by ``build_asgi_app``; Ray asks ``check_health`` every few seconds."""

        def check_health(self) -> None:
            engines = self.app.state.engines  # type: ignore[attr-defined]  # `app`: what build_asgi_app built
            down = [name for name, engine in engines.items() if not engine.alive]
            if down:
                raise RuntimeError(f"the batching worker of {down} has stopped")

    deployment = serve.deployment(serve.ingress(build_asgi_app)(RerankServer))
    return deployment.options(**deployment_options(args, settings.request_timeout)).bind()


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


def parse_builder_args(values: Mapping[str, Any]) -> argparse.Namespace:
    """The ``rerank-plugins serve`` flags from a ``serve run`` builder's ``args`` (a config file's mapping, or
    ``key=value`` strings): ``model: [a, b]`` is ``--model a --model b``, ``true`` a bare flag, ``false`` none."""
    from rerank_plugins.cli import build_parser

    argv = ["serve"]
    for key, value in values.items():
        flag = "--" + str(key).replace("_", "-")
        if flag in ("--engine", "--host", "--port", "--ray-address"):
            raise ValueError(f"{key}: set by Ray Serve here (the config's http_options, or `serve run`'s flags)")
        for item in value if isinstance(value, list) else [value]:
            if item is True or str(item).lower() == "true":
                argv.append(flag)
            elif item is not False and str(item).lower() != "false":
                argv += [flag, str(item)]
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            return build_parser().parse_args(argv)
    except SystemExit:
        message = errors.getvalue().strip().splitlines()[-1] if errors.getvalue().strip() else "invalid arguments"
        raise ValueError(f"rerank-plugins Ray Serve application: {message}") from None


def app(args: dict[str, Any]) -> Any:
    """Ray Serve application builder: ``serve run rerank_plugins.serve.ray_serve:app model=NAME=PATH``, or
    ``import_path: rerank_plugins.serve.ray_serve:app`` in a config file with the serve flags as ``args``."""
    from rerank_plugins.cli import CommandError

    try:
        return build_application(parse_builder_args(args))
    except CommandError as error:
        raise ValueError(f"rerank-plugins Ray Serve application: {error}") from None
