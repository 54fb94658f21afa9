"""The HTTP side of `archbot run`: health, readiness, metrics, and (HTTP mode) Slack events.

- `GET /healthz`: the process is up (200 always while serving).
- `GET /readyz`: 200 only when the database takes a write (not gone, read-only or locked), Slack
  `auth.test` succeeded and the workers run; otherwise 503 with the failing checks named.
- `GET /metrics`: Prometheus text.
- `POST /slack/events` (HTTP mode only): 503 while the bot is starting (the port answers health
  checks while start-up waits for Slack; `EventsRoute`), so Slack redelivers. Then the signature
  is checked on the raw body before anything is parsed (forged, stale or unsigned → 401), then
  the body must be a Slack request (a JSON object, or a form) or it gets 400; only then is it
  handed to Bolt
  (`bot/slack/intake.py`). Rejections are counted in `archbot_requests_rejected`, never 500.

  The fast path: a signed `event_callback` carrying an `app_mention` or `message` event (every
  question, and most of the traffic) skips Bolt's dispatch. It is parsed once, screened like any
  other request, classified and its job committed (`QuestionIntake`, group commit across
  concurrent requests), and only then acked; the 👀 reaction and the job's start follow the
  burst's acks. Everything else (App Home, assistant threads, commands, buttons, modals) goes to Bolt.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.internals import extract_team_id
from slack_sdk.signature import SignatureVerifier

from bot.errors import StoreUnavailable
from bot.metrics import Metrics
from bot.slack.intake import RateLimitedLog, parse_http_body, screen, verify_http_request
from bot.slack.listeners import QuestionIntake, refuse
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


@dataclass
class EventsRoute:
    """What `POST /slack/events` hands requests to. Registered with the HTTP server at start, bound
    once the bot has started: until then every request is refused with 503 and Slack redelivers it."""

    signing_secret: str
    bolt: AsyncApp | None = None
    intake: QuestionIntake | None = None

    def bind(self, bolt: AsyncApp, intake: QuestionIntake | None) -> None:
        self.bolt, self.intake = bolt, intake


MAX_BODY = 2 * 1024 * 1024
FAST_EVENTS = frozenset({"app_mention", "message"})


def message_event_body(raw: bytes) -> dict[str, Any] | None:
    """A verified body that is an Events API `app_mention`/`message` event, parsed; None for any
    other request (those go to Bolt, which parses them itself)."""
    if not raw.startswith(b"{"):
        return None
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None  # Bolt's path decides between 400 and ack-and-ignore, as for any request
    if not isinstance(body, dict) or body.get("type") != "event_callback":
        return None
    event = body.get("event")
    kind = event.get("type") if isinstance(event, dict) else None
    if not isinstance(kind, str) or kind not in FAST_EVENTS:
        return None
    return body


def team_of(body: dict[str, Any]) -> str | None:
    """The workspace of an event as Bolt's context reads it; None when the body's ids are odd shapes."""
    try:
        team = extract_team_id(body)
    except (TypeError, AttributeError, KeyError, IndexError):
        return None
    return team if isinstance(team, str) else None


def build_web_app(
    *,
    metrics: Metrics,
    readiness: Readiness,
    bolt: AsyncApp | None,
    signing_secret: str | None = None,
    intake: QuestionIntake | None = None,
    events: EventsRoute | None = None,
) -> web.Application:
    """The HTTP side. HTTP-mode events go to `bolt` (and `intake`), or to `events` when they are bound later."""
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

    if events is None and bolt is not None:
        if not signing_secret:
            raise ValueError("HTTP mode needs SLACK_SIGNING_SECRET")
        events = EventsRoute(signing_secret, bolt, intake)
    if events is not None:
        if not events.signing_secret:
            raise ValueError("HTTP mode needs SLACK_SIGNING_SECRET")
        route = events
        verifier = SignatureVerifier(events.signing_secret)
        rejections = RateLimitedLog()

        def reject(reason: str, status: int) -> web.Response:
            metrics.requests_rejected.labels(reason).inc()
            hint = " (check SLACK_SIGNING_SECRET)" if status == 401 else ""
            rejections.note(reason, f"Slack request rejected: {reason}{hint}")
            return web.Response(status=status, text="invalid request" if status != 401 else "unauthorized")

        async def fast_event(
            request: web.Request, body: dict[str, Any], started: float, bolt: AsyncApp, intake: QuestionIntake
        ) -> web.StreamResponse:
            """A message event: stored, then acked; what follows waits for the burst's acks."""
            if screen(body, metrics) is not None:
                metrics.ack_seconds.observe(time.perf_counter() - started)
                return web.Response(status=200)  # a shape no listener handles: ack and ignore
            if not intake.deps.accepting:
                return web.Response(status=503, text="shutting down")  # Slack redelivers to the next process
            event = body["event"]
            try:
                taken = await intake.take(
                    body, event, event_type=event["type"], bot_user_id=None, team_id=team_of(body)
                )
            except StoreUnavailable as exc:
                refuse(intake.deps, exc)
                return web.Response(status=503, text="database unavailable")
            response = web.Response(status=200)
            try:
                await response.prepare(request)
                await response.write_eof()
                metrics.ack_seconds.observe(time.perf_counter() - started)
            finally:  # committed: the job is shown and started even when the ack could not be written
                intake.acked(taken, bolt.client)
            return response

        async def slack_events(request: web.Request) -> web.StreamResponse:
            # The ack clock runs from the request reaching this handler to the response written,
            # Bolt's own work (signature, parsing, middleware, listener) included.
            started = time.perf_counter()
            bolt, intake = route.bolt, route.intake
            if bolt is None:  # still starting (waiting for Slack): Slack redelivers
                return web.Response(status=503, text="starting")
            with intake.after.acking() if intake is not None else contextlib.nullcontext():
                try:
                    raw = await request.read()
                except web.HTTPRequestEntityTooLarge:
                    return reject("too_large", 413)
                if not verify_http_request(raw, request.headers, verifier):
                    return reject("unsigned", 401)
                if intake is not None:
                    body = message_event_body(raw)
                    if body is not None:
                        return await fast_event(request, body, started, bolt, intake)
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
