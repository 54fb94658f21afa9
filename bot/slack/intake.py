"""Intake: what a request from Slack must be before any listener sees it.

Two gates, cheapest first:

1. `verify_http_request` (HTTP mode, before anything is parsed): the `X-Slack-Signature` over the
   raw body bytes, with a numeric, fresh `X-Slack-Request-Timestamp`. Anything else is
   "unsigned" (401). Only then `parse_http_body` decodes UTF-8 and builds Bolt's request; a body
   that is not a JSON object (or a form with a JSON-object `payload`) is "malformed" (400). Bolt
   itself would answer 500 with a logged traceback for most of these: it parses first and checks
   later, and its verifier raises on a non-numeric timestamp.
2. `body_problem` (both transports, in the listener middleware): the fields our listeners read
   must have the types Slack documents. A signed request of another shape (an `event` that is a
   string, a `channel` that is a number) is acked and ignored, so Slack does not redeliver it, and
   counted; it never reaches a listener.

`request_label` maps a request to a bounded set of metric label values (`other` for the rest), so
an unknown event type never creates a new Prometheus series.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.metrics import Metrics

if TYPE_CHECKING:
    from bot.slack.listeners import AfterAcks

log = logging.getLogger(__name__)

RejectReason = Literal["unsigned", "malformed", "too_large"]
REJECT_REASONS: tuple[RejectReason, ...] = ("unsigned", "malformed", "too_large")

# Label values for `archbot_events_received`: what the manifest subscribes to, plus the request
# kinds Bolt handles for us. Everything else is counted as "other".
KNOWN_EVENTS = frozenset(
    {
        "app_mention",
        "message",
        "app_home_opened",
        "assistant_thread_started",
        "assistant_thread_context_changed",
    }
)
KNOWN_REQUESTS = frozenset({"url_verification", "block_actions", "view_submission", "view_closed", "/arch-review"})
EVENT_LABELS: tuple[str, ...] = (*sorted(KNOWN_EVENTS), *sorted(KNOWN_REQUESTS), "other")
ENVELOPE_ID = re.compile(r'"envelope_id"\s*:\s*"([^"]+)"')
MAX_PENDING_ACKS = 10_000  # envelopes read but not yet handled: a bound, should handling never come
MAX_CHALLENGE = 1024  # Slack's url_verification challenge is a short token


def request_label(body: Mapping[str, Any]) -> str:
    """The metric label for a request: its event type, request type or command, when known."""
    event = body.get("event")
    kind = event.get("type") if isinstance(event, dict) else None
    if kind is None:
        kind = body.get("type") or body.get("command")
    if isinstance(kind, str) and (kind in KNOWN_EVENTS or kind in KNOWN_REQUESTS):
        return kind
    return "other"


# -- gate 1: HTTP requests -----------------------------------------------------------------


def verify_http_request(raw: bytes, headers: Mapping[str, str], verifier: SignatureVerifier) -> bool:
    """Slack's v0 signature over the raw bytes, checked before anything is parsed.

    slack_sdk's verifier does the HMAC and the 5-minute window; it raises (rather than answering
    False) on a non-numeric timestamp, a body that is not UTF-8 or a non-ASCII signature, so those
    are screened here first."""
    timestamp = headers.get("X-Slack-Request-Timestamp") or ""
    signature = headers.get("X-Slack-Signature") or ""
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return False
    if not (signature.isascii() and signature.startswith("v0=")):
        return False
    try:
        return verifier.is_valid(body=raw, timestamp=timestamp, signature=signature)
    except (UnicodeDecodeError, ValueError, TypeError):  # a body that is not UTF-8 cannot have been signed by Slack
        return False


def parse_http_body(raw: bytes, *, query: str, headers: Mapping[str, str]) -> AsyncBoltRequest | str:
    """Bolt's request for a verified body, or why not: `malformed` (not a Slack request at all:
    answer 400) or `odd` (a JSON object Bolt cannot read: ack and ignore, so Slack does not retry)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "malformed"
    try:
        request = AsyncBoltRequest(body=text, query=query, headers=dict(headers))
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError):
        # Bolt parses JSON (or a form's `payload`) and reads team/enterprise ids while building the
        # request: bad JSON, deep nesting, a non-object or odd id fields all surface here.
        return "odd" if _is_json_object(text, headers.get("Content-Type")) else "malformed"
    if not isinstance(request.body, dict) or not request.body:
        return "malformed"
    if not any(key in request.body for key in ("type", "command", "ssl_check")):
        return "malformed"  # a form of nothing Slack sends (Bolt would log it, body included, as unhandled)
    if request.body.get("type") == "url_verification":
        challenge = request.body.get("challenge")
        if not isinstance(challenge, str) or not challenge or len(challenge) > MAX_CHALLENGE:
            return "malformed"
    return request


def _is_json_object(text: str, content_type: str | None) -> bool:
    """Whether the body is a JSON object as Bolt reads bodies (JSON, or a form's `payload` field);
    only called once Bolt failed, so the common path parses once."""
    if not (content_type or "").startswith("application/json") and not text.startswith("{"):
        text = dict(parse_qsl(text, keep_blank_values=True)).get("payload", "")
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


# -- gate 2: shapes of signed requests -----------------------------------------------------


class _Shape(BaseModel):
    """Only the fields archbot reads, with Slack's types; other fields are allowed and ignored."""

    model_config = ConfigDict(strict=True, extra="allow")

    @field_validator("*")
    @classmethod
    def _encodable(cls, value: Any) -> Any:
        # JSON may escape a lone surrogate ("\\ud800"); such text can be neither stored nor posted.
        if isinstance(value, str) and not value.isascii():
            value.encode("utf-8")  # UnicodeEncodeError is a ValueError: the shape is refused
        return value


class _MessageEvent(_Shape):
    type: str
    channel: str | None = None
    user: str | None = None
    ts: str | None = None
    thread_ts: str | None = None
    text: str | None = None
    subtype: str | None = None
    channel_type: str | None = None
    bot_id: str | None = None
    team: str | None = None
    user_team: str | None = None
    edited: dict[str, Any] | None = None
    bot_profile: dict[str, Any] | None = None


class _HomeOpened(_Shape):
    type: str
    user: str
    tab: str | None = None


class _AssistantThread(_Shape):
    channel_id: str
    thread_ts: str
    context: dict[str, Any] | None = None


class _AssistantEvent(_Shape):
    type: str
    assistant_thread: _AssistantThread


class _EventCallback(_Shape):
    type: str
    event: dict[str, Any]
    event_id: str | None = None
    team_id: str | None = None


class _Command(_Shape):
    command: str
    text: str | None = None
    channel_id: str
    user_id: str
    trigger_id: str
    team_id: str | None = None
    response_url: str | None = None


class _Id(_Shape):
    id: str


class _Action(_Shape):
    action_id: str | None = None
    value: str | None = None


class _Message(_Shape):
    ts: str | None = None
    thread_ts: str | None = None


class _Container(_Shape):
    channel_id: str | None = None
    message_ts: str | None = None


class _BlockActions(_Shape):
    type: str
    actions: list[_Action]
    user: _Id
    channel: _Id | None = None
    container: _Container | None = None
    message: _Message | None = None
    trigger_id: str | None = None


class _ViewState(_Shape):
    values: dict[str, dict[str, dict[str, Any]]] = {}


class _View(_Shape):
    id: str | None = None
    callback_id: str | None = None
    private_metadata: str | None = None
    state: _ViewState | None = None

    @field_validator("private_metadata")
    @classmethod
    def _json_object(cls, value: str | None) -> str | None:
        if value:
            try:
                parsed = json.loads(value)
            except (ValueError, RecursionError) as exc:
                raise ValueError("private_metadata is not JSON") from exc
            if not isinstance(parsed, dict):
                raise ValueError("private_metadata is not a JSON object")
        return value


class _ViewSubmission(_Shape):
    type: str
    view: _View
    user: _Id
    team: _Id | None = None


_EVENT_SHAPES: dict[str, type[_Shape]] = {
    "app_mention": _MessageEvent,
    "message": _MessageEvent,
    "app_home_opened": _HomeOpened,
    "assistant_thread_started": _AssistantEvent,
    "assistant_thread_context_changed": _AssistantEvent,
}
_REQUEST_SHAPES: dict[str, type[_Shape]] = {"block_actions": _BlockActions, "view_submission": _ViewSubmission}


def body_problem(body: Any) -> str | None:
    """Why a signed request cannot be handled (`malformed` / `unsupported`), or None when it can."""
    if not isinstance(body, dict):
        return "malformed"
    try:
        kind = body.get("type")
        if kind == "event_callback":
            _EventCallback.model_validate(body)
            event_type = body["event"].get("type")
            shape = _EVENT_SHAPES.get(event_type) if isinstance(event_type, str) else None
            if shape is None:
                return "unsupported"
            shape.model_validate(body["event"])
        elif "command" in body and kind is None:
            _Command.model_validate(body)
        elif isinstance(kind, str) and kind in _REQUEST_SHAPES:
            _REQUEST_SHAPES[kind].model_validate(body)
        elif kind is not None and not isinstance(kind, str):
            return "malformed"
    except ValidationError:
        return "malformed"
    return None


class RateLimitedLog:
    """One WARNING per `interval` seconds per reason, with the count since the last one: a flood of
    bad requests is visible in the logs (a wrong signing secret shows up) without a line per request."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._pending: dict[str, int] = {}

    def note(self, reason: str, message: str) -> None:
        now = time.monotonic()
        self._pending[reason] = self._pending.get(reason, 0) + 1
        if now - self._last.get(reason, -self.interval) >= self.interval:
            log.warning(message, extra={"reason": reason, "count": self._pending[reason]})
            self._last[reason] = now
            self._pending[reason] = 0


def screen(body: Any, metrics: Metrics) -> str | None:
    """Count a signed request by kind; the reason to ack and ignore it (counted too), or None to dispatch it."""
    metrics.events.labels(request_label(body) if isinstance(body, dict) else "other").inc()
    problem = body_problem(body)
    if problem is not None:
        metrics.events_ignored.labels(problem).inc()
        log.debug("request ignored", extra={"reason": problem})
    return problem


class ScreenedSocketModeClient(SocketModeClient):
    """slack_sdk's aiohttp Socket Mode client, refusing envelopes it would crash on.

    The SDK parses each frame and builds a request from it; a frame that is not JSON, or an
    envelope whose `payload` is not an object, raises inside the SDK and is logged with a traceback
    (and never acked, so it comes back). Here such a frame is counted and acked (when it names an
    envelope) instead; everything else goes to the SDK unchanged, parsed once."""

    def __init__(self, *args: Any, metrics: Metrics | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics
        self._tasks: set[asyncio.Future[Any]] = set()
        self.received: dict[str, float] = {}  # envelope id → when its frame was read (the ack clock)

    async def enqueue_message(self, message: str) -> None:
        # The ack clock starts when the frame is read, before the SDK's queue: waiting there is
        # part of what Slack waits for.
        found = ENVELOPE_ID.search(message[:2000])
        if found is not None:
            if len(self.received) >= MAX_PENDING_ACKS:
                self.received.pop(next(iter(self.received)))
            self.received[found.group(1)] = time.perf_counter()
        await super().enqueue_message(message)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def process_message(self) -> None:
        raw = await self.message_queue.get()
        if raw is None:
            return
        message: Any = {}
        if raw.startswith("{"):
            try:
                message = json.loads(raw)
            except (ValueError, RecursionError):
                self._refuse(None)
                return
        if "envelope_id" in message and not isinstance(message.get("payload"), dict):
            self._refuse(message.get("envelope_id"))
            return
        self._spawn(self.run_message_listeners(message, raw))

    def _refuse(self, envelope_id: Any) -> None:
        if self.metrics is not None:
            self.metrics.events.labels("other").inc()
            self.metrics.events_ignored.labels("malformed").inc()
        log.debug("socket mode frame ignored")
        if isinstance(envelope_id, str) and envelope_id:
            self._spawn(self.send_socket_mode_response(SocketModeResponse(envelope_id=envelope_id)))


class ScreenedSocketModeHandler(AsyncSocketModeHandler):
    """Bolt's Socket Mode adapter with the intake checks: frames screened by
    `ScreenedSocketModeClient`, envelopes of odd shapes acked and ignored before Bolt sees them."""

    def __init__(self, app: AsyncApp, app_token: str, *, metrics: Metrics, after: AfterAcks | None = None) -> None:
        self.app = app
        self.app_token = app_token
        self.metrics = metrics
        self.after = after  # the listeners' follow-ups wait until this envelope's ack is sent
        self.client = ScreenedSocketModeClient(
            app_token=app_token, logger=app.logger, web_client=app.client, metrics=metrics
        )
        self.client.socket_mode_request_listeners.append(self.handle)  # type: ignore[arg-type]

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        with self.after.acking() if self.after is not None else contextlib.nullcontext():
            await self._handle(client, req)

    async def _handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:
        received: dict[str, float] = getattr(client, "received", {})
        started = received.pop(req.envelope_id, None) or time.perf_counter()
        if screen(req.payload, self.metrics) is not None:
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            self.metrics.ack_seconds.observe(time.perf_counter() - started)
            return
        bolt_resp = await run_async_bolt_app(self.app, req)
        await send_async_response(client, req, bolt_resp, time.time())  # no ack unless 200: Slack redelivers
        if bolt_resp.status == 200:
            self.metrics.ack_seconds.observe(time.perf_counter() - started)
