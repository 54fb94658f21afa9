"""The HTTP side of `archbot run`: health, readiness, metrics, and (HTTP mode) Slack events.

- `GET /healthz`: the process is up (200 always while serving).
- `GET /readyz`: 200 only when the database takes a write (not gone, read-only or locked), Slack
  `auth.test` succeeded and the workers run; otherwise 503 with the failing checks named.
- `GET /metrics`: Prometheus text.
- `POST /slack/events` (HTTP mode only): the signature is checked on the raw body before
  anything is parsed (forged, stale or unsigned → 401), then the body must be a Slack request
  (a JSON object, or a form) or it gets 400; only then is it handed to Bolt
  (`bot/slack/intake.py`). Rejections are counted in `archbot_requests_rejected`, never 500.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier

from bot.metrics import Metrics
from bot.slack.intake import RateLimitedLog, parse_http_body, screen, verify_http_request
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


MAX_BODY = 2 * 1024 * 1024


def build_web_app(
    *, metrics: Metrics, readiness: Readiness, bolt: AsyncApp | None, signing_secret: str | None = None
) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)

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
        if not signing_secret:
            raise ValueError("HTTP mode needs SLACK_SIGNING_SECRET")
        verifier = SignatureVerifier(signing_secret)
        rejections = RateLimitedLog()

        def reject(reason: str, status: int) -> web.Response:
            metrics.requests_rejected.labels(reason).inc()
            hint = " (check SLACK_SIGNING_SECRET)" if status == 401 else ""
            rejections.note(reason, f"Slack request rejected: {reason}{hint}")
            return web.Response(status=status, text="invalid request" if status != 401 else "unauthorized")

        async def slack_events(request: web.Request) -> web.StreamResponse:
            # The ack clock runs from the request reaching this handler to the response written,
            # Bolt's own work (signature, parsing, middleware, listener) included.
            started = time.perf_counter()
            try:
                raw = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return reject("too_large", 413)
            if not verify_http_request(raw, request.headers, verifier):
                return reject("unsigned", 401)
            bolt_request = parse_http_body(raw, query=request.query_string, headers=request.headers)
            if bolt_request == "malformed":
                return reject("malformed", 400)
            if isinstance(bolt_request, str) or screen(bolt_request.body, metrics) is not None:
                # Signed, but a shape no listener handles: ack (Slack would redeliver anything else), ignore.
                if isinstance(bolt_request, str):
                    metrics.events.labels("other").inc()
                    metrics.events_ignored.labels("malformed").inc()
                metrics.ack_seconds.observe(time.perf_counter() - started)
                return web.Response(status=200)
            bolt_response = await bolt.async_dispatch(bolt_request)
            response = await to_aiohttp_response(bolt_response)
            await response.prepare(request)
            await response.write_eof()
            if response.status == 200:
                metrics.ack_seconds.observe(time.perf_counter() - started)
            return response

        app.router.add_post("/slack/events", slack_events)
    return app
