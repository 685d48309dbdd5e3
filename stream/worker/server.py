"""The worker's HTTP server on its own event loop: ``/metrics``, ``/healthz``, ``/readyz``.

An aiohttp application (Faust already depends on aiohttp) served by a `mode.Service` that the
Faust `Worker` starts before the app and stops after it, so liveness answers from model loading
to the end of a graceful shutdown. Its socket is bound before anything else starts
(`bind_socket`): a port in use is one clear `ConfigError`, not a traceback from a running worker.
"""

from __future__ import annotations

import socket
from collections.abc import Collection
from typing import Any

from aiohttp import web
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST

from stream.errors import ConfigError
from stream.settings import Settings
from stream.worker.health import Health, consumer_lags
from stream.worker.metrics import WorkerMetrics


def bind_socket(settings: Settings) -> socket.socket | None:
    """The listening socket of the metrics/health server; None when ``metrics_port`` is 0."""
    if settings.metrics_port == 0:
        return None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.metrics_host, settings.metrics_port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"metrics_port={settings.metrics_port} on {settings.metrics_host}: "
                          f"{exc.strerror}; set SIGNALS_METRICS_PORT to a free port, or 0 for "
                          "no metrics/health server") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def web_app(faust_app: Any, health: Health, metrics: WorkerMetrics,
            topics: Collection[str]) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def readyz(request: web.Request) -> web.Response:
        ready, checks = health.readiness(faust_app)
        metrics.ready.set(1 if ready else 0)
        return web.json_response({"ready": ready, **checks}, status=200 if ready else 503)

    async def metrics_page(request: web.Request) -> web.Response:
        metrics.set_assignment(await consumer_lags(faust_app, topics))
        metrics.ready.set(1 if health.readiness(faust_app)[0] else 0)
        response = web.Response(body=metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    return app


class OpsServer(Service):
    """Serves `web_app` on an already bound socket while the worker runs."""

    def __init__(self, sock: socket.socket, app: web.Application, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sock, self._app = sock, app
        self._runner: web.AppRunner | None = None

    async def on_start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
