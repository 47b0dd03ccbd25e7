"""``nebras serve`` (FastAPI + uvicorn hosting the Rasa agent) and ``nebras nlg-server``."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

# No route uses websockets, and uvicorn's auto-detected implementation needs a newer `websockets`
# than Rasa pins (ImportError: ServerProtocol) -> turn websocket support off.
NO_WEBSOCKETS = "none"


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add this stage's commands to ``nebras``."""
    serve = subparsers.add_parser(
        "serve", help="serve the assistant over HTTP (/v1/chat, web chat at /, /metrics)",
        description="FastAPI app hosting the Rasa agent in-process. Settings: NEBRAS_* environment "
        "variables (see docs/deployment.md); flags override them.",
    )
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument("--model", type=Path, default=None,
                       help="Rasa model .tar.gz or a directory (default: newest in models/)")
    serve.add_argument("--endpoints", type=Path, default=None, help="endpoints.yml (default ./endpoints.yml)")
    serve.set_defaults(func=_serve)

    nlg = subparsers.add_parser(
        "nlg-server", help="standalone NLG server (Rasa's `nlg: url:` protocol) with batched generation",
    )
    nlg.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    nlg.add_argument("--port", type=int, default=None, help="port (default 5056)")
    nlg.add_argument("--domain", type=Path, default=None, help="domain.yml with the templated responses")
    nlg.add_argument("--model", dest="model_source", default=None,
                     help="generator model source (default models/nlg/current)")
    nlg.set_defaults(func=_nlg_server)


def _overrides(args: argparse.Namespace, names) -> dict:
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from nebras_bot.monitoring.logging import configure_logging
    from nebras_bot.monitoring.sentry import init_sentry
    from nebras_bot.serving.app import create_app
    from nebras_bot.serving.settings import ServingSettings

    settings = ServingSettings(**_overrides(args, ("host", "port", "model", "endpoints")))
    configure_logging(logging.DEBUG if args.verbose else logging.INFO, json_logs=settings.log_json)
    init_sentry("serve")
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None,
                timeout_graceful_shutdown=30, ws=NO_WEBSOCKETS)
    return 0


def _nlg_server(args: argparse.Namespace) -> int:
    import uvicorn

    from nebras_bot.monitoring.logging import configure_logging
    from nebras_bot.monitoring.metrics import add_metrics_route
    from nebras_bot.monitoring.sentry import init_sentry
    from nebras_bot.serving.nlg_server import create_nlg_app
    from nebras_bot.serving.settings import NLGServerSettings

    settings = NLGServerSettings(**_overrides(args, ("host", "port", "domain", "model_source")))
    configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    init_sentry("nlg-server")
    app = create_nlg_app(settings)
    add_metrics_route(app)  # Prometheus scrapes the generator's own metrics (deploy/prometheus.yml)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None,
                timeout_graceful_shutdown=30, ws=NO_WEBSOCKETS)
    return 0
