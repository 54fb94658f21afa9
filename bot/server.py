"""The HTTP side of `archbot run`: health, readiness, metrics, and (HTTP mode) Slack events.

- `GET /healthz`: the process is up (200 always while serving).
- `GET /readyz`: 200 only when the database takes a write (not gone, read-only or locked), Slack
  `auth.test` succeeded and the workers run; otherwise 503 with the failing checks named.
- `GET /metrics`: Prometheus text.
- `POST /slack/events` (HTTP mode only): handed to Bolt, which checks the signature
  (forged, stale or unsigned → 401) before any listener runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.app.async_app import AsyncApp

from bot.metrics import Metrics
from bot.store_async import AsyncStore


@dataclass
class Readiness:
    store: AsyncStore
    slack_ok: Callable[[], bool]
    workers_ok: Callable[[], bool]
    extra: dict[str, Callable[[], bool]] = field(default_factory=dict)

    async def checks(self) -> dict[str, bool]:
        out = {"database": await self.store.writable(), "slack": self.slack_ok(), "workers": self.workers_ok()}
        out.update({name: check() for name, check in self.extra.items()})
        return out


def build_web_app(*, metrics: Metrics, readiness: Readiness, bolt: AsyncApp | None) -> web.Application:
    app = web.Application(client_max_size=2 * 1024 * 1024)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks = await readiness.checks()
        ok = all(checks.values())
        return web.json_response({"ready": ok, "checks": checks}, status=200 if ok else 503)

    async def metrics_endpoint(_: web.Request) -> web.Response:
        with contextlib.suppress(Exception):  # the gauge keeps its last value while the database is busy
            metrics.queue_depth.set(await readiness.store.quick.queue_depth())
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)

    if bolt is not None:

        async def slack_events(request: web.Request) -> web.Response:
            bolt_request = await to_bolt_request(request)
            bolt_response = await bolt.async_dispatch(bolt_request)
            return await to_aiohttp_response(bolt_response)

        app.router.add_post("/slack/events", slack_events)
    return app
