"""Monitoring for the action server (``rasa run actions``): ``GET /metrics`` with the ``nebras_*``
Prometheus metrics its actions record (tickets created by origin, ...), so Prometheus scrapes the
action server like the assistant (deploy/prometheus.yml).

rasa_sdk finds plug-ins by importing a top-level package named ``rasa_sdk_plugins`` and calling
its ``init_hooks(manager)``; that package (in the project root) registers :class:`MetricsPlugin`.
"""
from __future__ import annotations

import pluggy

METRICS_ROUTE = "/metrics"

hookimpl = pluggy.HookimplMarker("rasa_sdk")


class MetricsPlugin:
    """rasa_sdk hook implementation: attaches ``GET /metrics`` to the action server's Sanic app."""

    @hookimpl
    def attach_sanic_app_extensions(self, app) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        from sanic import response

        async def metrics(_request):
            return response.raw(generate_latest(), content_type=CONTENT_TYPE_LATEST)

        app.add_route(metrics, METRICS_ROUTE, methods=["GET"], name="nebras_metrics")


def init_hooks(manager: pluggy.PluginManager) -> None:
    manager.register(MetricsPlugin())
