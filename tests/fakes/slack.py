"""A fake Slack for archbot's tests: the Web API, Socket Mode, and realistic event payloads.

Why it exists: archbot's tests drive the *real* ``slack_sdk`` ``AsyncWebClient`` and the real
``slack_bolt`` ``AsyncApp`` / ``AsyncSocketModeHandler`` against this server, then assert on what
Slack would have received (posts, edits, acks), not on mocked call arguments. The wire formats
follow slack_sdk 3.4x / slack_bolt 1.2x+ (form, query-string and JSON bodies; ``Authorization:
Bearer``; ``{"ok": ...}`` bodies; Socket Mode envelopes and acks).

Quick start::

    async with FakeSlack() as fake:                      # or: await fake.start() / await fake.stop()
        client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
        parent = fake.add_message("C1", "<@UBOT> how do we shard?", user="U1")
        await client.chat_postMessage(channel="C1", thread_ts=parent.ts, text="Like this.")
        call = await fake.wait_for(lambda f: f.calls_to("chat.postMessage"))
        assert fake.thread("C1", parent.ts)[-1].bot_id == "BBOT"

Server (``FakeSlack``)
    ``FakeSlack(*, bot_user_id="UBOT", bot_id="BBOT", team_id="T1", api_app_id="A1",
    bot_token="xoxb-fake-bot-token", app_token="xapp-fake-app-token",
    signing_secret="fake-signing-secret", scopes=None (manifest.yml's bot scopes),
    enforce_scopes=True, channels=None, users=None, redeliver_after=3.0, max_redeliveries=3,
    echo_bot_messages=False)``; 127.0.0.1, port 0 (never a fixed port).

    - ``await start() -> str``: the Web API base URL (``http://127.0.0.1:<port>/api/``), also
      ``fake.api_url``; ``fake.port``. ``await stop()`` closes sockets and the server.
    - ``env(socket_mode=True) -> dict[str, str]``: the contract's ``SLACK_*`` variables for this fake.

Web API: ``POST|GET /api/<method>``
    - Every call is recorded as ``Call(method, args, token, at, http_verb, status, ok, error,
      failed, response)`` in ``fake.calls``. ``args`` merges query string, form and JSON body;
      JSON-encoded form fields (``blocks``, ``chunks``, ``metadata``, ``view``, ...) are decoded;
      other query/form values stay strings, as on the wire (``limit="2"``, ``as_user="1"``).
      ``at`` is ``time.monotonic()``. ``failed`` is True for any ``ok: false`` or non-200 answer.
    - ``calls_to(method, *, include_failed=False) -> list[Call]``.
    - ``await wait_for(predicate, timeout=5.0)``: waits until ``predicate(fake)`` is truthy and
      returns that value; wakes on every change to the fake (and at least every 50 ms, so a
      predicate may also look at outside state). Raises ``TimeoutError`` with a dump of recent calls.
    - Tokens: only ``fake.valid_tokens`` (default: the bot and app tokens) are accepted; otherwise
      ``invalid_auth`` (no token: ``not_authed``). ``xapp-`` tokens work only for
      ``apps.connections.open`` and ``auth.test``; that method refuses other tokens
      (``not_allowed_token_type``). ``revoke(token)`` simulates a revoked token.
    - Scopes: every response carries ``x-oauth-scopes``; with ``enforce_scopes`` a call whose scope is
      missing answers ``missing_scope`` (``needed``/``provided``), history scopes by channel kind.
    - Implemented methods: auth.test, apps.connections.open, chat.postMessage, chat.update,
      chat.delete, chat.postEphemeral, chat.getPermalink, chat.startStream, chat.appendStream,
      chat.stopStream, conversations.replies, conversations.history, conversations.info,
      conversations.open, users.info, users.conversations, team.info, reactions.add,
      reactions.remove, views.open, views.push, views.update, views.publish,
      assistant.threads.setStatus / setSuggestedPrompts / setTitle. Any other method answers
      ``{"ok": true}`` and is recorded.
    - Streams: ``task_display_mode`` must be ``timeline`` or ``plan``; ``chunks`` are checked by
      ``validate_chunks`` (markdown_text, task_update with a known status, plan_update, blocks);
      ``StoredMessage.chunks`` keeps the non-text chunks, ``StoredMessage.tasks()`` folds them.
    - Validation like Slack's: ``no_text``, ``msg_too_long`` (> 40 000 chars), ``invalid_blocks``
      (> 50 blocks, section text > 3000, header > 150, ...), ``invalid_arguments`` for views
      (title > 24 chars, ...), ``message_not_found``, ``thread_not_found``, ``cant_update_message``,
      ``already_reacted``, ``expired_trigger_id`` (registered via ``expire_trigger`` or already used
      once), ``message_not_in_streaming_state``, ``invalid_cursor``, ``user_not_found``,
      ``is_archived`` / ``not_in_channel`` (from the channel map).

Conversation state
    - Bot posts are stored as the bot's (``user=bot_user_id``, ``bot_id``); ``ts`` values are unique
      and increasing (``"1700000100.000100"``, ...), always after any seeded ``ts``.
    - ``add_message(channel, text, user, ts=None, thread_ts=None, bot_id=None, *, subtype=None,
      blocks=None) -> StoredMessage`` seeds a message. ``message(channel, ts)``,
      ``messages(channel)`` (all, ts order), ``thread(channel, thread_ts)`` (parent first),
      ``bot_messages(channel=None)``, ``fake.ephemerals``, ``fake.views``, ``fake.home_views``,
      ``fake.assistant_threads[(channel, thread_ts)]``; prompts set without ``thread_ts`` (only in a
      DM: the agent view's Messages tab) land in ``fake.pinned_prompts[channel]``.
    - ``channels``: ``{id: {"is_private": bool, "is_im": bool, "is_mpim": bool, "name": str,
      "is_member": bool, "is_archived": bool, "user": str}}``; unknown ids are public channels.
      ``add_channel(id, **flags)``. ``users``: ``add_user(id, real_name=..., display_name=...,
      is_bot=False, tz="UTC")``; unknown users answer ``user_not_found``.

Failure scripting
    - ``fail(method, *, status=None, times=2, retry_after=0, error=None, extra=None) -> FailureRule``:
      the next ``times`` calls to ``method`` (``times=None``: until ``clear_failures()``) answer
      HTTP 429 + ``Retry-After`` (default), or HTTP 200 ``{"ok": false, "error": error}`` when only
      ``error`` is given, or the given HTTP status (e.g. 500/503). Rules queue per method.
    - ``fail(..., after_success=True)``: the call takes effect (the message is posted, edited...) and
      only then is the failure answered: Slack's 500-after-success, where the caller cannot know.
      ``fail(..., seconds=S)``: every call for ``S`` seconds fails (``times`` is ignored); ``method="*"``
      matches every method (an outage).
    - ``hold(method) -> asyncio.Event``: calls to ``method`` wait unanswered until the event is set
      (``fake.held_calls[method]`` counts them), to show what happens before Slack answers.
    - ``respond(method, body, *, times=1)``: the next calls answer exactly ``body`` with HTTP 200 and
      change nothing (e.g. ``{"ok": true}`` without a ``ts``, as a misbehaving proxy would).
    - ``expire_streams(True)``: from now on appendStream/stopStream answer
      ``message_not_in_streaming_state`` (startStream still works, like a stream that expires).
    - ``expire_trigger(trigger_id)``.

Socket Mode: ``GET /socket`` (the URL apps.connections.open hands out)
    - On connect the fake sends ``hello``. ``fake.socket_connected`` (``asyncio.Event``) is set while
      a connection is open; ``fake.socket_connection_count`` counts connections ever accepted.
    - ``await socket_send_event(payload, retry_attempt=0) -> envelope_id``,
      ``await socket_send_slash_command(payload)``, ``await socket_send_interactive(payload)``: send
      an envelope on the newest connection (waiting up to ``connect_timeout`` for one).
      ``fake.envelopes`` lists every delivery (``Envelope``), redeliveries included.
    - Acks land in ``fake.acks`` (``Ack(envelope_id, payload, at, envelope)``; ``payload`` is the ack's
      response payload, ``envelope`` the delivery acked). ``await wait_for_ack(envelope_id, timeout)``.
    - Redelivery: an ``events_api`` envelope not acked within ``redeliver_after`` seconds is sent again
      (same ``envelope_id``, ``retry_attempt`` + 1, ``retry_reason="timeout"``) until
      ``retry_attempt`` reaches ``max_redeliveries``. ``redeliver_after=None`` disables it.
    - ``await socket_send_raw(frame)`` sends a text frame as-is (robustness tests: frames Slack never sends).
    - ``await socket_disconnect(reason="refresh_requested")`` sends ``{"type": "disconnect"}``; the
      slack_sdk client then reconnects. ``await socket_drop()`` closes connections from the server side.
    - ``echo_bot_messages=True`` pushes ``message`` events for the bot's own posts, edits and
      deletions over Socket Mode, as Slack does (off by default). Bolt acks these but, by default
      (``ignoring_self_events_enabled``), never dispatches them to listeners.
    - Bolt's Socket Mode adapter drops ``retry_attempt``/``retry_reason`` before dispatch; a listener
      sees a redelivery only as the same ``event_id`` again.
    - Close the Socket Mode handler *before* ``stop()``: a connected client otherwise keeps trying
      to reconnect to the stopped server (harmless, but noisy in logs).

Payload builders (pure functions, exactly Slack's shapes)
    ``event_callback(event, *, event_id=None, team="T1", api_app_id="A1", bot_user_id="UBOT")``,
    ``mention_event(text, *, channel, user, ts, thread_ts=None)``,
    ``message_event(text, *, channel, user, ts, thread_ts=None, channel_type="channel", subtype=None,
    bot_id=None, edited=None, ...)``, ``message_changed_event``, ``message_deleted_event``,
    ``assistant_thread_started_event``, ``app_home_opened_event``, ``slash_command_payload``,
    ``block_actions_payload``, ``view_submission_payload``, ``url_verification_payload``.
    Text is Slack wire text: already escaped (``&lt;``) with mentions as ``<@U123>``.
    HTTP signing and posting helpers live in ``tests.fakes.signing``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

import yaml
from aiohttp import WSMsgType, web

from tests.fakes.waiting import WAIT_SECONDS

log = logging.getLogger(__name__)

T = TypeVar("T")
ChannelKind = Literal["public", "private", "im", "mpim"]
EnvelopeType = Literal["events_api", "slash_commands", "interactive"]

MANIFEST = Path(__file__).resolve().parents[2] / "manifest.yml"
FALLBACK_SCOPES: tuple[str, ...] = (
    "app_mentions:read",
    "assistant:write",
    "channels:history",
    "channels:read",
    "chat:write",
    "commands",
    "groups:history",
    "im:history",
    "im:write",
    "reactions:write",
    "users:read",
)
# Form/query fields that slack_sdk JSON-encodes; decoded so `Call.args` holds Python objects.
JSON_FIELDS = frozenset(
    {
        "attachments",
        "blocks",
        "chunks",
        "loading_messages",
        "metadata",
        "prompts",
        "unfurls",
        "user_auth_blocks",
        "view",
    }
)
FIRST_TS_MICROS = 1_700_000_100 * 1_000_000
TS_STEP_MICROS = 100

# Slack's documented limits (PROTOCOL_NOTES.md).
MAX_TEXT = 40_000
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_MARKDOWN_TOTAL = 12_000
MAX_VIEW_TITLE = 24
MAX_VIEW_BLOCKS = 100
MAX_PRIVATE_METADATA = 3000


def default_scopes() -> list[str]:
    """The bot scopes declared in manifest.yml (a fixed copy when the file can't be read)."""
    try:
        manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
        scopes = manifest["oauth_config"]["scopes"]["bot"]
        return [str(s) for s in scopes]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return list(FALLBACK_SCOPES)


# --------------------------------------------------------------------------------------------
# Records


@dataclass
class Call:
    """One Web API request the fake received (successful or not)."""

    method: str
    args: dict[str, Any]
    token: str | None = field(repr=False)  # fake tokens, but keep the habit: no secrets in test output
    at: float
    http_verb: str = "POST"
    status: int = 200
    ok: bool = True
    error: str | None = None
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """True when the call did not succeed (scripted failure or a real Slack error)."""
        return not self.ok or self.status != 200


@dataclass
class StoredMessage:
    """A message in the fake's conversation state."""

    channel: str
    ts: str
    text: str
    user: str | None
    bot_id: str | None = None
    thread_ts: str | None = None
    subtype: str | None = None
    blocks: list[dict[str, Any]] | None = None
    attachments: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None
    chunks: list[dict[str, Any]] = field(default_factory=list)
    stream_state: Literal["streaming", "stopped"] | None = None
    task_display_mode: str | None = None  # chat.startStream's, for a streamed message
    edited: dict[str, str] | None = None
    reply_broadcast: bool = False
    reactions: dict[str, list[str]] = field(default_factory=dict)

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    def tasks(self) -> dict[str, dict[str, Any]]:
        """The streamed message's tasks as a person sees them: each task_update chunk, by id, the
        latest fields winning (what a plan / timeline shows), in the order the tasks first appeared."""
        out: dict[str, dict[str, Any]] = {}
        for chunk in self.chunks:
            if chunk.get("type") == "task_update":
                out.setdefault(chunk["id"], {}).update({k: v for k, v in chunk.items() if k != "type"})
        return out


@dataclass
class Ephemeral:
    """A chat.postEphemeral message (never part of the conversation state)."""

    channel: str
    user: str
    text: str
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None
    message_ts: str


@dataclass
class Envelope:
    """One Socket Mode delivery (a redelivery is another `Envelope` with the same id)."""

    envelope_id: str
    type: EnvelopeType
    payload: dict[str, Any]
    accepts_response_payload: bool
    retry_attempt: int | None
    retry_reason: str | None
    sent_at: float
    connection: int

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "envelope_id": self.envelope_id,
            "payload": self.payload,
            "type": self.type,
            "accepts_response_payload": self.accepts_response_payload,
        }
        if self.type == "events_api":
            wire["retry_attempt"] = self.retry_attempt or 0
            wire["retry_reason"] = self.retry_reason or ""
        return wire


@dataclass
class Ack:
    """An ack received over Socket Mode."""

    envelope_id: str
    payload: dict[str, Any] | None
    at: float
    envelope: Envelope | None


@dataclass
class FailureRule:
    """A scripted failure for the next `remaining` calls to `method` (None: until cleared)."""

    method: str
    status: int
    error: str
    retry_after: int | None
    remaining: int | None
    extra: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None  # answer exactly this (see `FakeSlack.respond`)
    after_success: bool = False  # do the work, then answer the failure (the outcome is unknown to the caller)
    until: float | None = None  # time.monotonic() after which the rule no longer applies

    def matches(self, method: str) -> bool:
        if self.until is not None and time.monotonic() >= self.until:
            return False
        return self.method in (method, "*") and (self.remaining is None or self.remaining > 0)


class _ApiError(Exception):
    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass
class _Request:
    method: str
    args: dict[str, Any]
    token: str | None

    def get(self, name: str) -> Any:
        value = self.args.get(name)
        return None if value in (None, "") else value

    def require(self, name: str, error: str | None = None) -> str:
        value = self.get(name)
        if value is None:
            raise _ApiError(error or "invalid_arguments", response_metadata={"messages": [f"missing {name}"]})
        return str(value)


@dataclass
class _Socket:
    number: int
    ws: web.WebSocketResponse


# --------------------------------------------------------------------------------------------
# Helpers


def _ts_key(ts: str) -> int:
    seconds, _, micros = ts.partition(".")
    return int(seconds) * 1_000_000 + int((micros or "0").ljust(6, "0")[:6])


def _ts_from_key(key: int) -> str:
    return f"{key // 1_000_000}.{key % 1_000_000:06d}"


def _encode_cursor(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts.replace('.', '')}".encode()).decode()


def _decode_cursor(cursor: str) -> str:
    try:
        raw = base64.b64decode(cursor.encode(), validate=True).decode()
    except ValueError as exc:
        raise _ApiError("invalid_cursor") from exc
    prefix, _, digits = raw.partition(":")
    if prefix != "next_ts" or not digits.isdigit() or len(digits) <= 6:
        raise _ApiError("invalid_cursor")
    return f"{digits[:-6]}.{digits[-6:]}"


def _int_arg(value: Any, default: int, *, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise _ApiError("invalid_limit") from exc
    return max(low, min(high, number)) if number > 0 else default


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


def _plain_len(text_obj: Any) -> int:
    if isinstance(text_obj, dict):
        return len(str(text_obj.get("text", "")))
    return 0


TASK_STATUSES = frozenset({"pending", "in_progress", "complete", "error"})
TASK_DISPLAY_MODES = frozenset({"timeline", "plan"})
TASK_TEXT_LIMIT = 256


def validate_chunks(chunks: Any) -> list[str]:
    """Problems with a chat.*Stream ``chunks`` array (empty list: valid). The chunk types slack_sdk's
    ``Chunk.parse`` knows: markdown_text (text), task_update (id, title, status, optional details /
    output / sources), plan_update (title), blocks (blocks)."""
    if not isinstance(chunks, list):
        return ["chunks must be an array"]
    problems: list[str] = []
    for i, chunk in enumerate(chunks):
        kind = chunk.get("type") if isinstance(chunk, dict) else None
        where = f"chunks[{i}]"
        if kind == "markdown_text":
            if not isinstance(chunk.get("text"), str):
                problems.append(f"{where}: markdown_text needs text")
        elif kind == "task_update":
            if not (isinstance(chunk.get("id"), str) and chunk["id"]):
                problems.append(f"{where}: task_update needs an id")
            if not (isinstance(chunk.get("title"), str) and chunk["title"]):
                problems.append(f"{where}: task_update needs a title")
            if chunk.get("status") not in TASK_STATUSES:
                problems.append(f"{where}: status must be one of {sorted(TASK_STATUSES)}")
            for name in ("details", "output"):
                value = chunk.get(name)
                if value is not None and (not isinstance(value, str) or len(value) > TASK_TEXT_LIMIT):
                    problems.append(f"{where}: {name} must be a string of at most {TASK_TEXT_LIMIT} characters")
            unknown = set(chunk) - {"type", "id", "title", "status", "details", "output", "sources"}
            if unknown:
                problems.append(f"{where}: unknown fields {sorted(unknown)}")
        elif kind == "plan_update":
            if not (isinstance(chunk.get("title"), str) and chunk["title"]):
                problems.append(f"{where}: plan_update needs a title")
        elif kind == "blocks":
            problems.extend(f"{where}: {p}" for p in validate_blocks(chunk.get("blocks")))
        else:
            problems.append(f"{where}: unknown chunk type {kind!r}")
    return problems


def validate_blocks(blocks: Any) -> list[str]:
    """Problems Slack would report as `invalid_blocks` for a message's blocks (empty: fine)."""
    if not isinstance(blocks, list):
        return ["blocks must be an array"]
    problems: list[str] = []
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]")
    seen_ids: set[str] = set()
    markdown_total = 0
    for i, block in enumerate(blocks):
        where = f"[json-pointer:/blocks/{i}]"
        if not isinstance(block, dict) or "type" not in block:
            problems.append(f"missing required field: type {where}")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if block_id in seen_ids:
                problems.append(f"duplicate block_id {where}")
            seen_ids.add(block_id)
        kind = block["type"]
        if kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"must provide text or fields {where}")
            if _plain_len(block.get("text")) > MAX_SECTION_TEXT:
                problems.append(f"must be less than {MAX_SECTION_TEXT + 1} characters {where[:-1]}/text]")
            fields = block.get("fields") or []
            if len(fields) > MAX_SECTION_FIELDS:
                problems.append(f"no more than {MAX_SECTION_FIELDS} items allowed {where[:-1]}/fields]")
            if any(_plain_len(f) > MAX_FIELD_TEXT for f in fields):
                problems.append(f"must be less than {MAX_FIELD_TEXT + 1} characters {where[:-1]}/fields]")
        elif kind == "header":
            text = block.get("text")
            if not isinstance(text, dict) or text.get("type") != "plain_text":
                problems.append(f"must be a plain_text object {where[:-1]}/text]")
            elif _plain_len(text) > MAX_HEADER_TEXT:
                problems.append(f"must be less than {MAX_HEADER_TEXT + 1} characters {where[:-1]}/text]")
        elif kind == "context":
            if len(block.get("elements") or []) > MAX_CONTEXT_ELEMENTS:
                problems.append(f"no more than {MAX_CONTEXT_ELEMENTS} items allowed {where[:-1]}/elements]")
        elif kind == "actions":
            if len(block.get("elements") or []) > MAX_ACTIONS_ELEMENTS:
                problems.append(f"no more than {MAX_ACTIONS_ELEMENTS} items allowed {where[:-1]}/elements]")
        elif kind == "markdown":
            markdown_total += len(str(block.get("text", "")))
    if markdown_total > MAX_MARKDOWN_TOTAL:
        problems.append(f"markdown blocks exceed {MAX_MARKDOWN_TOTAL} characters in total [json-pointer:/blocks]")
    return problems


def validate_view(view: Any, *, allowed: Iterable[str]) -> list[str]:
    """Problems Slack would report as `invalid_arguments` for a view (empty: fine)."""
    if not isinstance(view, dict):
        return ["view must be an object [json-pointer:/view]"]
    problems: list[str] = []
    kind = view.get("type")
    if kind not in set(allowed):
        problems.append(f"unsupported view type {kind!r} [json-pointer:/view/type]")
    if kind == "modal":
        title = view.get("title")
        if not isinstance(title, dict) or title.get("type") != "plain_text":
            problems.append("missing required field: title [json-pointer:/view/title]")
        elif _plain_len(title) > MAX_VIEW_TITLE:
            problems.append(f"must be less than {MAX_VIEW_TITLE + 1} characters [json-pointer:/view/title/text]")
        for key in ("submit", "close"):
            if _plain_len(view.get(key)) > MAX_VIEW_TITLE:
                problems.append(f"must be less than {MAX_VIEW_TITLE + 1} characters [json-pointer:/view/{key}/text]")
    blocks = view.get("blocks")
    if not isinstance(blocks, list):
        problems.append("missing required field: blocks [json-pointer:/view/blocks]")
    elif len(blocks) > MAX_VIEW_BLOCKS:
        problems.append(f"no more than {MAX_VIEW_BLOCKS} items allowed [json-pointer:/view/blocks]")
    if len(str(view.get("private_metadata", ""))) > MAX_PRIVATE_METADATA:
        problems.append(
            f"must be less than {MAX_PRIVATE_METADATA + 1} characters [json-pointer:/view/private_metadata]"
        )
    return problems


# --------------------------------------------------------------------------------------------
# The server


class FakeSlack:
    """A local, scriptable Slack: Web API under ``/api/``, Socket Mode under ``/socket``.

    See the module docstring for the full API.
    """

    def __init__(
        self,
        *,
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        bot_name: str = "archbot",
        team_id: str = "T1",
        team_name: str = "Fake Team",
        api_app_id: str = "A1",
        bot_token: str = "xoxb-fake-bot-token",
        app_token: str = "xapp-fake-app-token",
        signing_secret: str = "fake-signing-secret",
        tokens: Iterable[str] | None = None,
        scopes: Iterable[str] | None = None,
        enforce_scopes: bool = True,
        channels: Mapping[str, Mapping[str, Any]] | None = None,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        redeliver_after: float | None = 3.0,
        max_redeliveries: int = 3,
        connect_timeout: float = 5.0,
        echo_bot_messages: bool = False,
    ) -> None:
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.bot_name = bot_name
        self.team_id = team_id
        self.team_name = team_name
        self.api_app_id = api_app_id
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.valid_tokens: set[str] = set(tokens) if tokens is not None else {bot_token, app_token}
        self.scopes: list[str] = list(scopes) if scopes is not None else default_scopes()
        self.enforce_scopes = enforce_scopes
        self.redeliver_after = redeliver_after
        self.max_redeliveries = max_redeliveries
        self.connect_timeout = connect_timeout
        self.echo_bot_messages = echo_bot_messages

        self.channels: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (channels or {}).items()}
        self.users: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (users or {}).items()}
        self.users.setdefault(bot_user_id, {"real_name": bot_name, "display_name": bot_name, "is_bot": True})

        # Records a test can read.
        self.calls: list[Call] = []
        self.ephemerals: list[Ephemeral] = []
        self.views: dict[str, dict[str, Any]] = {}
        self.home_views: dict[str, dict[str, Any]] = {}
        self.assistant_threads: dict[tuple[str, str], dict[str, Any]] = {}
        self.pinned_prompts: dict[str, dict[str, Any]] = {}  # DM channel -> prompts on its Messages tab
        self._holds: dict[str, asyncio.Event] = {}
        self.held_calls: dict[str, int] = {}  # calls waiting (or that waited) on a hold
        self.envelopes: list[Envelope] = []
        self.acks: list[Ack] = []
        self.socket_connected = asyncio.Event()
        self.socket_connection_count = 0

        self._messages: dict[str, dict[str, StoredMessage]] = {}
        self._clock = FIRST_TS_MICROS
        self._failures: list[FailureRule] = []
        self._streams_expired = False
        self._expired_triggers: set[str] = set()
        self._used_triggers: set[str] = set()
        self._tickets: set[str] = set()
        self._sockets: list[_Socket] = []
        self._ack_events: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Event()
        self._view_ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0

        self._handlers: dict[str, Callable[[_Request], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "chat.startStream": self._chat_start_stream,
            "chat.appendStream": self._chat_append_stream,
            "chat.stopStream": self._chat_stop_stream,
            "conversations.replies": self._conversations_replies,
            "conversations.history": self._conversations_history,
            "conversations.info": self._conversations_info,
            "conversations.open": self._conversations_open,
            "users.info": self._users_info,
            "users.conversations": self._users_conversations,
            "team.info": self._team_info,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "views.open": self._views_open,
            "views.push": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "assistant.threads.setStatus": self._assistant_set_status,
            "assistant.threads.setSuggestedPrompts": self._assistant_set_prompts,
            "assistant.threads.setTitle": self._assistant_set_title,
        }

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> str:
        """Listen on 127.0.0.1 (an unused port) and return the Web API base URL."""
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_get("/socket", self._handle_socket)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.api_url

    async def stop(self) -> None:
        """Close every socket, cancel redeliveries and shut the server down."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sock in list(self._sockets):
            with contextlib.suppress(Exception):
                await sock.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """Base URL for ``AsyncWebClient(base_url=...)`` / ``SLACK_API_URL``; ends in ``/api/``."""
        return f"{self.root_url}/api/"

    def env(self, *, socket_mode: bool = True) -> dict[str, str]:
        """The contract's Slack variables pointing at this fake (no app token: HTTP mode)."""
        env = {
            "SLACK_BOT_TOKEN": self.bot_token,
            "SLACK_SIGNING_SECRET": self.signing_secret,
            "SLACK_API_URL": self.api_url,
        }
        if socket_mode:
            env["SLACK_APP_TOKEN"] = self.app_token
        return env

    # ---------------------------------------------------------------- waiting

    def _touch(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait_for(self, predicate: Callable[[FakeSlack], T | None], timeout: float = WAIT_SECONDS) -> T:
        """Wait until ``predicate(self)`` is truthy and return its value (TimeoutError with a dump)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._changed
            value = predicate(self)
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"FakeSlack.wait_for: condition not met within {timeout:.1f}s\n{self.dump()}")
            # Wake on any change; the 50 ms cap also lets predicates look at outside state.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, 0.05))

    async def wait_for_ack(self, envelope_id: str, timeout: float = WAIT_SECONDS) -> Ack:
        """Wait for the first ack of ``envelope_id``."""
        return await self.wait_for(
            lambda f: next((a for a in f.acks if a.envelope_id == envelope_id), None), timeout=timeout
        )

    def dump(self, last: int = 25) -> str:
        """A readable summary of recent traffic (never includes tokens)."""
        lines = [f"calls ({len(self.calls)} total, last {last}):"]
        for call in self.calls[-last:]:
            status = "ok" if not call.failed else f"{call.status} {call.error}"
            args = json.dumps(call.args, default=str, ensure_ascii=False)
            lines.append(f"  {call.method} [{status}] {args[:200]}")
        lines.append(
            f"socket: connected={self.socket_connected.is_set()} connections={self.socket_connection_count} "
            f"envelopes={len(self.envelopes)} acks={len(self.acks)}"
        )
        for env in self.envelopes[-10:]:
            acked = any(a.envelope_id == env.envelope_id for a in self.acks)
            lines.append(f"  {env.type} {env.envelope_id} retry={env.retry_attempt} acked={acked}")
        return "\n".join(lines)

    # ---------------------------------------------------------------- state helpers for tests

    def calls_to(self, method: str, *, include_failed: bool = False) -> list[Call]:
        """Calls to ``method``; successful ones only unless ``include_failed``."""
        return [c for c in self.calls if c.method == method and (include_failed or not c.failed)]

    def add_channel(self, channel_id: str, **flags: Any) -> None:
        """Configure a conversation: ``is_private``, ``is_im``, ``is_mpim``, ``name``, ``user``, ..."""
        self.channels.setdefault(channel_id, {}).update(flags)

    def add_user(
        self,
        user_id: str,
        *,
        real_name: str,
        display_name: str = "",
        is_bot: bool = False,
        tz: str = "UTC",
        deleted: bool = False,
    ) -> None:
        self.users[user_id] = {
            "real_name": real_name,
            "display_name": display_name,
            "is_bot": is_bot,
            "tz": tz,
            "deleted": deleted,
        }

    def add_message(
        self,
        channel: str,
        text: str,
        user: str | None,
        ts: str | None = None,
        thread_ts: str | None = None,
        bot_id: str | None = None,
        *,
        subtype: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> StoredMessage:
        """Seed a message (a thread reply when ``thread_ts`` is given) and return it."""
        if ts is None:
            ts = self._next_ts()
        else:
            self._clock = max(self._clock, _ts_key(ts))
        message = StoredMessage(
            channel=channel,
            ts=ts,
            text=text,
            user=user,
            bot_id=bot_id,
            thread_ts=thread_ts,
            subtype=subtype,
            blocks=blocks,
        )
        self._messages.setdefault(channel, {})[ts] = message
        self._touch()
        return message

    def message(self, channel: str, ts: str) -> StoredMessage | None:
        return self._messages.get(channel, {}).get(ts)

    def messages(self, channel: str) -> list[StoredMessage]:
        """Every stored message in ``channel`` (replies included), oldest first."""
        return sorted(self._messages.get(channel, {}).values(), key=lambda m: _ts_key(m.ts))

    def thread(self, channel: str, thread_ts: str) -> list[StoredMessage]:
        """The parent (when present) then its replies, oldest first."""
        return [m for m in self.messages(channel) if m.ts == thread_ts or m.thread_ts == thread_ts]

    def bot_messages(self, channel: str | None = None) -> list[StoredMessage]:
        channels = [channel] if channel is not None else list(self._messages)
        found = [m for ch in channels for m in self.messages(ch) if m.bot_id == self.bot_id]
        return sorted(found, key=lambda m: _ts_key(m.ts))

    def channel_kind(self, channel_id: str) -> ChannelKind:
        conf = self.channels.get(channel_id, {})
        if conf.get("is_im"):
            return "im"
        if conf.get("is_mpim"):
            return "mpim"
        return "private" if conf.get("is_private") else "public"

    # ---------------------------------------------------------------- scripting

    def fail(
        self,
        method: str,
        *,
        status: int | None = None,
        times: int | None = 2,
        retry_after: int | None = 0,
        error: str | None = None,
        extra: Mapping[str, Any] | None = None,
        after_success: bool = False,
        seconds: float | None = None,
    ) -> FailureRule:
        """Make the next ``times`` calls to ``method`` fail (see the module docstring)."""
        if status is None:
            status = 200 if error is not None else 429
        if error is None:
            error = {429: "ratelimited", 500: "internal_error", 503: "service_unavailable"}.get(status, "fatal_error")
        rule = FailureRule(
            method=method,
            status=status,
            error=error,
            retry_after=retry_after if status == 429 else None,
            remaining=None if seconds is not None else times,
            extra=dict(extra or {}),
            after_success=after_success,
            until=time.monotonic() + seconds if seconds is not None else None,
        )
        self._failures.append(rule)
        return rule

    def respond(self, method: str, body: Mapping[str, Any], *, times: int | None = 1) -> FailureRule:
        """Answer the next ``times`` calls to ``method`` with exactly ``body`` (HTTP 200), doing
        nothing else: what a proxy or a truncated answer looks like (e.g. ``{"ok": true}``)."""
        rule = FailureRule(method=method, status=200, error="", retry_after=None, remaining=times, body=dict(body))
        self._failures.append(rule)
        return rule

    def hold(self, method: str) -> asyncio.Event:
        """Calls to ``method`` wait (unanswered) until the returned event is set: a slow Slack, on cue.
        They are recorded once answered."""
        gate = self._holds[method] = asyncio.Event()
        return gate

    def clear_failures(self) -> None:
        self._failures.clear()

    def expire_streams(self, expired: bool = True) -> None:
        """While set, chat.appendStream / chat.stopStream answer ``message_not_in_streaming_state``."""
        self._streams_expired = expired

    def expire_trigger(self, trigger_id: str) -> None:
        """views.open / views.push with this trigger answer ``expired_trigger_id``."""
        self._expired_triggers.add(trigger_id)

    def revoke(self, token: str) -> None:
        """Stop accepting ``token`` (its calls answer ``invalid_auth``)."""
        self.valid_tokens.discard(token)

    def _take_failure(self, method: str) -> FailureRule | None:
        for rule in self._failures:
            if rule.matches(method):
                if rule.remaining is not None:
                    rule.remaining -= 1
                return rule
        return None

    # ---------------------------------------------------------------- HTTP plumbing

    async def _read_args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            content_type = request.content_type
            if content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError as exc:
                    raise _ApiError("invalid_json") from exc
                if isinstance(body, dict):
                    args.update(body)
            else:
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        args[key] = {"filename": value.filename, "size": len(value.file.read())}
                    else:
                        args[key] = value
        for key in JSON_FIELDS & args.keys():
            value = args[key]
            if isinstance(value, str) and value[:1] in ("[", "{"):
                with contextlib.suppress(ValueError):
                    args[key] = json.loads(value)
        return args

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        gate = self._holds.get(method)
        if gate is not None:
            self.held_calls[method] = self.held_calls.get(method, 0) + 1
            self._touch()
            await gate.wait()
        try:
            args = await self._read_args(request)
        except _ApiError as exc:
            return web.json_response({"ok": False, "error": exc.error})
        token: str | None = None
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth.removeprefix("Bearer ").strip() or None
        body_token = args.pop("token", None)
        if token is None and body_token:
            token = str(body_token)

        call = Call(method=method, args=args, token=token, at=time.monotonic(), http_verb=request.method)
        headers = {"x-oauth-scopes": ",".join(self.scopes), "x-slack-req-id": uuid.uuid4().hex}
        rule = self._take_failure(method)
        if rule is not None and rule.body is not None:
            status, body = 200, dict(rule.body)
        elif rule is not None:
            if rule.after_success:  # Slack did the work; only the answer is lost
                with contextlib.suppress(_ApiError):
                    req = _Request(method=method, args=args, token=token)
                    self._authorize(req)
                    handler = self._handlers.get(method)
                    if handler:
                        handler(req)
            status, body = rule.status, {"ok": False, "error": rule.error, **rule.extra}
            if rule.retry_after is not None:
                headers["Retry-After"] = str(rule.retry_after)
        else:
            status = 200
            req = _Request(method=method, args=args, token=token)
            try:
                needed = self._authorize(req)
                if needed:
                    headers["x-accepted-oauth-scopes"] = needed
                handler = self._handlers.get(method)
                body = {"ok": True, **(handler(req) if handler else {})}
            except _ApiError as exc:
                body = {"ok": False, "error": exc.error, **exc.extra}
        call.status = status
        call.ok = bool(body.get("ok"))
        call.error = body.get("error")
        call.response = body
        self.calls.append(call)
        self._touch()
        return web.json_response(body, status=status, headers=headers)

    def _authorize(self, req: _Request) -> str | None:
        """Check the token and scope; return the scope the method needs (for the header)."""
        if req.token is None:
            raise _ApiError("not_authed")
        if req.token not in self.valid_tokens:
            raise _ApiError("invalid_auth")
        is_app_token = req.token.startswith("xapp-")
        if req.method == "apps.connections.open":
            if not is_app_token:
                raise _ApiError("not_allowed_token_type")
            return None
        if is_app_token and req.method != "auth.test":
            raise _ApiError("not_allowed_token_type")
        needed = self._needed_scope(req)
        if needed and self.enforce_scopes and needed not in self.scopes:
            raise _ApiError("missing_scope", needed=needed, provided=",".join(self.scopes))
        return needed

    def _needed_scope(self, req: _Request) -> str | None:
        method = req.method
        if method.startswith("chat.") and method != "chat.getPermalink":
            return "chat:write"
        channel = str(req.get("channel") or req.get("channel_id") or "")
        kind = self.channel_kind(channel) if channel else "public"
        prefix = {"public": "channels", "private": "groups", "im": "im", "mpim": "mpim"}[kind]
        if method in ("conversations.history", "conversations.replies"):
            return f"{prefix}:history"
        if method == "conversations.info":
            return f"{prefix}:read"
        fixed = {
            "users.info": "users:read",
            "users.conversations": "channels:read",
            "team.info": "team:read",
            "reactions.add": "reactions:write",
            "reactions.remove": "reactions:write",
            "conversations.open": "im:write",
        }
        if method in fixed:
            return fixed[method]
        if method.startswith("assistant.threads."):
            return "assistant:write"
        return None

    # ---------------------------------------------------------------- message state internals

    def _next_ts(self) -> str:
        self._clock += TS_STEP_MICROS
        return _ts_from_key(self._clock)

    def _find(self, channel: str, ts: str) -> StoredMessage:
        message = self.message(channel, ts)
        if message is None:
            raise _ApiError("message_not_found")
        return message

    def _check_postable(self, channel: str) -> None:
        conf = self.channels.get(channel, {})
        if conf.get("is_archived"):
            raise _ApiError("is_archived")
        if conf.get("is_member") is False:
            # A bot can't even see a private conversation it isn't in.
            raise _ApiError("not_in_channel" if self.channel_kind(channel) == "public" else "channel_not_found")

    @staticmethod
    def _check_metadata(metadata: Any) -> None:
        """Slack's message metadata: ``{"event_type": str, "event_payload": object}``."""
        if metadata is None:
            return
        if not isinstance(metadata, dict) or not isinstance(metadata.get("event_type"), str):
            raise _ApiError("invalid_metadata_format")
        if not isinstance(metadata.get("event_payload"), dict):
            raise _ApiError("invalid_metadata_schema")

    def _check_content(self, text: str, blocks: Any) -> None:
        if len(text) > MAX_TEXT:
            raise _ApiError("msg_too_long")
        if blocks is not None:
            problems = validate_blocks(blocks)
            if problems:
                raise _ApiError("invalid_blocks", errors=problems, response_metadata={"messages": problems})

    def render_message(self, message: StoredMessage, *, include_metadata: bool = True) -> dict[str, Any]:
        """The message as Slack's history/replies APIs return it (their ``metadata`` only when the
        call asked for ``include_all_metadata``, as Slack does)."""
        out: dict[str, Any] = {"type": "message", "ts": message.ts, "text": message.text}
        if message.subtype:
            out["subtype"] = message.subtype
        if message.user is not None:
            out["user"] = message.user
        if message.bot_id is not None:
            out["bot_id"] = message.bot_id
            if message.bot_id == self.bot_id:
                out["app_id"] = self.api_app_id
                out["bot_profile"] = {
                    "id": self.bot_id,
                    "app_id": self.api_app_id,
                    "name": self.bot_name,
                    "deleted": False,
                    "team_id": self.team_id,
                }
        if message.user is not None:
            out["team"] = self.team_id
        if message.blocks is not None:
            out["blocks"] = message.blocks
        if message.attachments is not None:
            out["attachments"] = message.attachments
        if message.metadata is not None and include_metadata:
            out["metadata"] = message.metadata
        if message.edited is not None:
            out["edited"] = dict(message.edited)
        if message.reactions:
            out["reactions"] = [
                {"name": name, "users": list(users), "count": len(users)} for name, users in message.reactions.items()
            ]
        if message.is_reply:
            out["thread_ts"] = message.thread_ts
            parent = self.message(message.channel, message.thread_ts or "")
            if parent is not None and parent.user is not None:
                out["parent_user_id"] = parent.user
        else:
            replies = [m for m in self.messages(message.channel) if m.is_reply and m.thread_ts == message.ts]
            if replies:
                reply_users = list(dict.fromkeys(r.user for r in replies if r.user))
                out.update(
                    thread_ts=message.ts,
                    reply_count=len(replies),
                    reply_users_count=len(reply_users),
                    latest_reply=replies[-1].ts,
                    reply_users=reply_users,
                    is_locked=False,
                    subscribed=False,
                )
        return out

    def _bot_message(self, req: _Request, channel: str, *, text: str, thread_ts: str | None) -> StoredMessage:
        message = StoredMessage(
            channel=channel,
            ts=self._next_ts(),
            text=text,
            user=self.bot_user_id,
            bot_id=self.bot_id,
            thread_ts=thread_ts,
            blocks=req.get("blocks"),
            attachments=req.get("attachments"),
            metadata=req.get("metadata"),
            reply_broadcast=_truthy(req.get("reply_broadcast")),
        )
        self._messages.setdefault(channel, {})[message.ts] = message
        return message

    def _append_stream_content(self, message: StoredMessage, req: _Request) -> None:
        markdown = req.get("markdown_text")
        if markdown:
            message.text += str(markdown)
        for chunk in req.get("chunks") or []:
            if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
                message.text += str(chunk.get("text", ""))
            elif isinstance(chunk, dict):
                message.chunks.append(chunk)

    def _check_chunks(self, req: _Request) -> None:
        chunks = req.get("chunks")
        if chunks is not None:
            problems = validate_chunks(chunks)
            if problems:
                raise _ApiError("invalid_arguments", response_metadata={"messages": problems})

    def _streaming(self, req: _Request) -> StoredMessage:
        channel = req.require("channel", "channel_not_found")
        message = self._find(channel, req.require("ts", "message_not_found"))
        if message.stream_state != "streaming" or self._streams_expired:
            raise _ApiError("message_not_in_streaming_state")
        return message

    def _thread_root(self, channel: str, ts: str) -> StoredMessage:
        message = self.message(channel, ts)
        if message is None:
            raise _ApiError("thread_not_found")
        if message.is_reply:
            parent = self.message(channel, message.thread_ts or "")
            if parent is not None:
                return parent
        return message

    # ---------------------------------------------------------------- Web API methods

    def _auth_test(self, req: _Request) -> dict[str, Any]:
        return {
            "url": "https://fake.slack/",
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, req: _Request) -> dict[str, Any]:
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        return {"url": f"ws://127.0.0.1:{self.port}/socket?ticket={ticket}&app_id={self.api_app_id}"}

    def _chat_post_message(self, req: _Request) -> dict[str, Any]:
        channel = req.require("channel", "channel_not_found")
        text = str(req.get("text") or "")
        if not text and not req.get("blocks") and not req.get("attachments"):
            raise _ApiError("no_text")
        self._check_postable(channel)
        self._check_content(text, req.get("blocks"))
        self._check_metadata(req.get("metadata"))
        message = self._bot_message(req, channel, text=text, thread_ts=req.get("thread_ts"))
        rendered = self.render_message(message)
        self._echo(message, rendered)
        return {"channel": channel, "ts": message.ts, "message": rendered}

    def _chat_update(self, req: _Request) -> dict[str, Any]:
        channel = req.require("channel", "channel_not_found")
        message = self._find(channel, req.require("ts", "message_not_found"))
        if message.bot_id != self.bot_id:
            raise _ApiError("cant_update_message")
        text = str(req.args["text"]) if "text" in req.args and req.args["text"] is not None else message.text
        blocks = req.args.get("blocks", message.blocks)
        self._check_content(text, blocks if blocks else None)
        if not text and not blocks and not message.attachments:
            raise _ApiError("no_text")
        self._check_metadata(req.get("metadata"))
        previous = self.render_message(message)
        message.text = text
        message.blocks = blocks if blocks != [] else None
        if "attachments" in req.args:
            message.attachments = req.args["attachments"]
        if req.get("metadata") is not None:
            message.metadata = req.get("metadata")
        message.edited = {"user": self.bot_user_id, "ts": self._next_ts()}
        rendered = self.render_message(message)
        self._echo_changed(message, rendered, previous)
        return {"channel": channel, "ts": message.ts, "text": message.text, "message": rendered}

    def _chat_delete(self, req: _Request) -> dict[str, Any]:
        channel = req.require("channel", "channel_not_found")
        message = self._find(channel, req.require("ts", "message_not_found"))
        if message.bot_id != self.bot_id:
            raise _ApiError("cant_delete_message")
        previous = self.render_message(message)
        has_replies = not message.is_reply and any(
            m.is_reply and m.thread_ts == message.ts for m in self.messages(channel)
        )
        if has_replies:
            # Slack keeps a tombstone so the thread stays readable.
            message.text, message.subtype, message.user, message.bot_id = (
                "This message was deleted.",
                "tombstone",
                "USLACKBOT",
                None,
            )
            message.blocks = None
        else:
            del self._messages[channel][message.ts]
        self._echo_deleted(channel, message.ts, previous)
        return {"channel": channel, "ts": message.ts}

    def _chat_post_ephemeral(self, req: _Request) -> dict[str, Any]:
        channel = req.require("channel", "channel_not_found")
        user = req.require("user", "user_not_found")
        text = str(req.get("text") or "")
        if not text and not req.get("blocks") and not req.get("attachments"):
            raise _ApiError("no_text")
        self._check_content(text, req.get("blocks"))
        message_ts = self._next_ts()
        self.ephemerals.append(
            Ephemeral(
                channel=channel,
                user=user,
                text=text,
                blocks=req.get("blocks"),
                thread_ts=req.get("thread_ts"),
                message_ts=message_ts,
            )
        )
        return {"message_ts": message_ts}

    def _chat_get_permalink(self, req: _Request) -> dict[str, Any]:
        channel = req.require("channel", "channel_not_found")
        message = self._find(channel, req.require("message_ts", "message_not_found"))
        link = f"https://fake.slack/archives/{channel}/p{message.ts.replace('.', '')}"
        if message.is_reply:
            link += f"?thread_ts={message.thread_ts}&cid={channel}"
        return {"channel": channel, "permalink": link}

    def _chat_start_stream(self, req: _Request) -> dict[str, Any]:
        channel = req.require("channel", "channel_not_found")
        thread_ts = req.require("thread_ts")
        self._check_postable(channel)
        if self.channel_kind(channel) != "im" and not (req.get("recipient_user_id") and req.get("recipient_team_id")):
            # Slack documents both as required outside DMs.
            raise _ApiError(
                "invalid_arguments",
                response_metadata={"messages": ["recipient_user_id and recipient_team_id are required in channels"]},
            )
        mode = req.get("task_display_mode")
        if mode is not None and mode not in TASK_DISPLAY_MODES:
            raise _ApiError(
                "invalid_arguments", response_metadata={"messages": ["task_display_mode: timeline or plan"]}
            )
        self._check_chunks(req)
        message = self._bot_message(req, channel, text="", thread_ts=thread_ts)
        message.blocks = None
        message.stream_state = "streaming"
        message.task_display_mode = str(mode or "timeline")
        self._append_stream_content(message, req)
        return {"channel": channel, "ts": message.ts}

    def _chat_append_stream(self, req: _Request) -> dict[str, Any]:
        message = self._streaming(req)
        if req.get("markdown_text") is None and not req.get("chunks"):
            raise _ApiError("invalid_arguments", response_metadata={"messages": ["markdown_text or chunks required"]})
        self._check_chunks(req)
        self._append_stream_content(message, req)
        if len(message.text) > MAX_TEXT:
            raise _ApiError("msg_too_long")
        return {"channel": message.channel, "ts": message.ts}

    def _chat_stop_stream(self, req: _Request) -> dict[str, Any]:
        message = self._streaming(req)
        blocks = req.get("blocks")
        self._check_content(message.text, blocks)
        self._check_metadata(req.get("metadata"))
        self._check_chunks(req)
        self._append_stream_content(message, req)
        if blocks is not None:
            message.blocks = blocks
        if req.get("metadata") is not None:
            message.metadata = req.get("metadata")
        message.stream_state = "stopped"
        rendered = self.render_message(message)
        self._echo(message, rendered)
        return {"channel": message.channel, "ts": message.ts, "message": rendered}

    def _conversations_replies(self, req: _Request) -> dict[str, Any]:
        channel = req.require("channel", "channel_not_found")
        with_metadata = _truthy(req.get("include_all_metadata"))
        root = self._thread_root(channel, req.require("ts", "thread_not_found"))
        thread = self.thread(channel, root.ts)
        thread = self._time_window(thread, req)
        limit = _int_arg(req.get("limit"), 1000, low=1, high=1000)
        start = 0
        cursor = req.get("cursor")
        if cursor:
            after = _ts_key(_decode_cursor(str(cursor)))
            start = next((i for i, m in enumerate(thread) if _ts_key(m.ts) >= after), len(thread))
        page = thread[start : start + limit]
        has_more = start + limit < len(thread)
        next_cursor = _encode_cursor(thread[start + limit].ts) if has_more else ""
        return {
            "messages": [self.render_message(m, include_metadata=with_metadata) for m in page],
            "has_more": has_more,
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _conversations_history(self, req: _Request) -> dict[str, Any]:
        channel = req.require("channel", "channel_not_found")
        with_metadata = _truthy(req.get("include_all_metadata"))
        top = [m for m in self.messages(channel) if not m.is_reply or m.reply_broadcast]
        top = list(reversed(self._time_window(top, req)))
        limit = _int_arg(req.get("limit"), 100, low=1, high=999)
        start = 0
        cursor = req.get("cursor")
        if cursor:
            before = _ts_key(_decode_cursor(str(cursor)))
            start = next((i for i, m in enumerate(top) if _ts_key(m.ts) <= before), len(top))
        page = top[start : start + limit]
        has_more = start + limit < len(top)
        next_cursor = _encode_cursor(top[start + limit].ts) if has_more else ""
        return {
            "messages": [self.render_message(m, include_metadata=with_metadata) for m in page],
            "has_more": has_more,
            "pin_count": 0,
            "response_metadata": {"next_cursor": next_cursor},
        }

    @staticmethod
    def _time_window(messages: list[StoredMessage], req: _Request) -> list[StoredMessage]:
        inclusive = _truthy(req.get("inclusive"))
        oldest, latest = req.get("oldest"), req.get("latest")
        kept = messages
        if oldest:
            low = _ts_key(str(oldest))
            kept = [m for m in kept if _ts_key(m.ts) > low or (inclusive and _ts_key(m.ts) == low)]
        if latest:
            high = _ts_key(str(latest))
            kept = [m for m in kept if _ts_key(m.ts) < high or (inclusive and _ts_key(m.ts) == high)]
        return kept

    def conversation_info(self, channel_id: str) -> dict[str, Any]:
        """The conversation object conversations.info returns for ``channel_id``."""
        conf = self.channels.get(channel_id, {})
        kind = self.channel_kind(channel_id)
        if kind == "im":
            return {
                "id": channel_id,
                "created": 1_700_000_000,
                "is_im": True,
                "is_org_shared": False,
                "user": conf.get("user", "U1"),
                "is_user_deleted": False,
                "priority": 0,
            }
        name = str(conf.get("name", channel_id.lower()))
        return {
            "id": channel_id,
            "name": name,
            "name_normalized": name,
            "is_channel": kind in ("public", "private"),
            "is_group": False,
            "is_im": False,
            "is_mpim": kind == "mpim",
            "is_private": kind != "public",
            "created": 1_700_000_000,
            "creator": "U0",
            "is_archived": bool(conf.get("is_archived", False)),
            "is_general": bool(conf.get("is_general", False)),
            "unlinked": 0,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "is_pending_ext_shared": False,
            "is_member": bool(conf.get("is_member", True)),
            "topic": {"value": str(conf.get("topic", "")), "creator": "", "last_set": 0},
            "purpose": {"value": str(conf.get("purpose", "")), "creator": "", "last_set": 0},
            "context_team_id": self.team_id,
        }

    def _conversations_info(self, req: _Request) -> dict[str, Any]:
        return {"channel": self.conversation_info(req.require("channel", "channel_not_found"))}

    def _conversations_open(self, req: _Request) -> dict[str, Any]:
        users = [u for u in str(req.get("users") or "").split(",") if u]
        if req.get("channel"):
            return {"channel": {"id": req.get("channel")}, "no_op": True, "already_open": True}
        if len(users) != 1:
            raise _ApiError("users_list_not_supplied" if not users else "invalid_arguments")
        channel_id = f"D{users[0].lstrip('UW')}"
        already = channel_id in self.channels
        self.add_channel(channel_id, is_im=True, user=users[0])
        return {"no_op": already, "already_open": already, "channel": {"id": channel_id}}

    def _users_info(self, req: _Request) -> dict[str, Any]:
        user_id = req.require("user", "user_not_found")
        conf = self.users.get(user_id)
        if conf is None:
            raise _ApiError("user_not_found")
        real_name = str(conf.get("real_name", ""))
        display_name = str(conf.get("display_name", ""))
        is_bot = bool(conf.get("is_bot", False))
        profile: dict[str, Any] = {
            "real_name": real_name,
            "real_name_normalized": real_name,
            "display_name": display_name,
            "display_name_normalized": display_name,
            "team": self.team_id,
        }
        if is_bot and user_id == self.bot_user_id:
            profile["bot_id"] = self.bot_id
        return {
            "user": {
                "id": user_id,
                "team_id": self.team_id,
                "name": display_name or real_name.lower().replace(" ", ".") or user_id.lower(),
                "deleted": bool(conf.get("deleted", False)),
                "real_name": real_name,
                "tz": conf.get("tz", "UTC"),
                "is_bot": is_bot,
                "is_app_user": False,
                "profile": profile,
            }
        }

    def _users_conversations(self, req: _Request) -> dict[str, Any]:
        wanted = set(str(req.get("types") or "public_channel").split(","))
        names = {"public": "public_channel", "private": "private_channel", "im": "im", "mpim": "mpim"}
        channels = [
            self.conversation_info(cid)
            for cid, conf in self.channels.items()
            if conf.get("is_member", True) and names[self.channel_kind(cid)] in wanted
        ]
        return {"channels": channels, "response_metadata": {"next_cursor": ""}}

    def _team_info(self, req: _Request) -> dict[str, Any]:
        return {
            "team": {
                "id": self.team_id,
                "name": self.team_name,
                "domain": "fake",
                "email_domain": "",
                "icon": {"image_default": True},
            }
        }

    def _reactions_add(self, req: _Request) -> dict[str, Any]:
        channel = req.require("channel", "channel_not_found")
        name = req.require("name", "invalid_name")
        message = self._find(channel, req.require("timestamp", "message_not_found"))
        users = message.reactions.setdefault(name, [])
        if self.bot_user_id in users:
            raise _ApiError("already_reacted")
        users.append(self.bot_user_id)
        return {}

    def _reactions_remove(self, req: _Request) -> dict[str, Any]:
        channel = req.require("channel", "channel_not_found")
        name = req.require("name", "invalid_name")
        message = self._find(channel, req.require("timestamp", "message_not_found"))
        users = message.reactions.get(name, [])
        if self.bot_user_id not in users:
            raise _ApiError("no_reaction")
        users.remove(self.bot_user_id)
        if not users:
            del message.reactions[name]
        return {}

    def _render_view(self, view_id: str, view: dict[str, Any], *, previous: str | None = None) -> dict[str, Any]:
        return {
            "id": view_id,
            "team_id": self.team_id,
            "type": view.get("type"),
            "title": view.get("title"),
            "submit": view.get("submit"),
            "close": view.get("close"),
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "root_view_id": view_id,
            "previous_view_id": previous,
            "app_id": self.api_app_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }

    def _validated_view(self, req: _Request, *, allowed: Iterable[str]) -> dict[str, Any]:
        view = req.get("view")
        problems = validate_view(view, allowed=allowed)
        if problems:
            raise _ApiError("invalid_arguments", response_metadata={"messages": [f"[ERROR] {p}" for p in problems]})
        assert isinstance(view, dict)
        return view

    def _views_open(self, req: _Request) -> dict[str, Any]:
        trigger_id = req.require("trigger_id", "invalid_trigger_id")
        if trigger_id in self._expired_triggers or trigger_id in self._used_triggers:
            raise _ApiError("expired_trigger_id")
        view = self._validated_view(req, allowed=("modal",))
        self._used_triggers.add(trigger_id)
        view_id = f"V{next(self._view_ids):08d}"
        rendered = self._render_view(view_id, view)
        self.views[view_id] = rendered
        return {"view": rendered}

    def _views_update(self, req: _Request) -> dict[str, Any]:
        view_id = req.get("view_id")
        external_id = req.get("external_id")
        current = self.views.get(str(view_id)) if view_id else None
        if current is None and external_id:
            current = next((v for v in self.views.values() if v.get("external_id") == external_id), None)
        if current is None:
            raise _ApiError("not_found")
        expected_hash = req.get("hash")
        if expected_hash and expected_hash != current["hash"]:
            raise _ApiError("hash_conflict")
        view = self._validated_view(req, allowed=("modal",))
        rendered = self._render_view(current["id"], view, previous=current.get("previous_view_id"))
        self.views[current["id"]] = rendered
        return {"view": rendered}

    def _views_publish(self, req: _Request) -> dict[str, Any]:
        user_id = req.require("user_id", "invalid_arguments")
        view = self._validated_view(req, allowed=("home",))
        view_id = self.home_views.get(user_id, {}).get("id") or f"V{next(self._view_ids):08d}"
        rendered = self._render_view(view_id, view)
        self.home_views[user_id] = rendered
        return {"view": rendered}

    def _assistant_thread(self, req: _Request) -> dict[str, Any]:
        channel = req.require("channel_id", "channel_not_found")
        thread_ts = req.require("thread_ts", "invalid_arguments")
        return self.assistant_threads.setdefault((channel, thread_ts), {})

    def _assistant_set_status(self, req: _Request) -> dict[str, Any]:
        state = self._assistant_thread(req)
        status = req.args.get("status")
        if status is None:
            raise _ApiError("invalid_arguments", response_metadata={"messages": ["missing status"]})
        state["status"] = status
        state.setdefault("status_history", []).append(status)
        if req.get("loading_messages") is not None:
            state["loading_messages"] = req.get("loading_messages")
        return {}

    def _assistant_set_prompts(self, req: _Request) -> dict[str, Any]:
        if req.get("thread_ts") is None:
            # The agent messaging experience: prompts pinned at the top of the DM's Messages tab.
            # Only a DM with the app has one; elsewhere the thread is still required.
            channel = req.require("channel_id", "channel_not_found")
            if self.channel_kind(channel) != "im":
                raise _ApiError("invalid_arguments", response_metadata={"messages": ["thread_ts is required here"]})
            state = self.pinned_prompts.setdefault(channel, {})
        else:
            state = self._assistant_thread(req)
        prompts = req.get("prompts")
        if not isinstance(prompts, list) or not prompts:
            raise _ApiError("invalid_arguments", response_metadata={"messages": ["prompts must be a non-empty array"]})
        state["suggested_prompts"] = prompts
        if req.get("title") is not None:
            state["prompts_title"] = req.get("title")
        return {}

    def _assistant_set_title(self, req: _Request) -> dict[str, Any]:
        self._assistant_thread(req)["title"] = req.require("title")
        return {}

    # ---------------------------------------------------------------- echoes of the bot's own messages

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _echo_event(self, event: dict[str, Any]) -> None:
        if self.echo_bot_messages and self._open_sockets():
            payload = event_callback(event, team=self.team_id, api_app_id=self.api_app_id, bot_user_id=self.bot_user_id)
            self._spawn(self.socket_send_event(payload))

    def _channel_type(self, channel: str) -> str:
        return {"public": "channel", "private": "group", "im": "im", "mpim": "mpim"}[self.channel_kind(channel)]

    def _echo(self, message: StoredMessage, rendered: dict[str, Any]) -> None:
        event = {**rendered, "channel": message.channel, "event_ts": message.ts}
        event["channel_type"] = self._channel_type(message.channel)
        self._echo_event(event)

    def _echo_changed(self, message: StoredMessage, rendered: dict[str, Any], previous: dict[str, Any]) -> None:
        edit_ts = (message.edited or {}).get("ts", message.ts)
        self._echo_event(
            message_changed_event(
                channel=message.channel,
                message=rendered,
                previous_message=previous,
                ts=edit_ts,
                channel_type=self._channel_type(message.channel),
            )
        )

    def _echo_deleted(self, channel: str, deleted_ts: str, previous: dict[str, Any]) -> None:
        self._echo_event(
            message_deleted_event(
                channel=channel,
                deleted_ts=deleted_ts,
                previous_message=previous,
                ts=self._next_ts(),
                channel_type=self._channel_type(channel),
            )
        )

    # ---------------------------------------------------------------- Socket Mode

    def _open_sockets(self) -> list[_Socket]:
        return [s for s in self._sockets if not s.ws.closed]

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.socket_connection_count += 1
        sock = _Socket(number=self.socket_connection_count, ws=ws)
        self._sockets.append(sock)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._open_sockets()),
                "debug_info": {
                    "host": f"applink-fake-{sock.number}",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.api_app_id},
            }
        )
        self.socket_connected.set()
        self._touch()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_socket_text(msg.data)
        finally:
            self._sockets.remove(sock)
            if not self._open_sockets():
                self.socket_connected.clear()
            self._touch()
        return ws

    def _on_socket_text(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            log.warning("fake slack: non-JSON socket message %r", data[:200])
            return
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        if not envelope_id:
            return
        delivered = next((e for e in reversed(self.envelopes) if e.envelope_id == envelope_id), None)
        self.acks.append(
            Ack(envelope_id=envelope_id, payload=message.get("payload"), at=time.monotonic(), envelope=delivered)
        )
        if envelope_id in self._ack_events:
            self._ack_events[envelope_id].set()
        self._touch()

    async def _deliver(self, envelope: Envelope) -> None:
        """Send on the newest open connection, waiting for one if the client is reconnecting."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        broken: set[int] = set()
        while True:
            sockets = [s for s in self._open_sockets() if s.number not in broken]
            if sockets:
                sock = sockets[-1]
                envelope.connection = sock.number
                envelope.sent_at = time.monotonic()
                try:
                    await sock.ws.send_str(json.dumps(envelope.to_wire()))
                except ConnectionError:
                    broken.add(sock.number)  # closing under us: try another connection
                    continue
                self.envelopes.append(envelope)
                self._touch()
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise RuntimeError(f"no Socket Mode connection within {self.connect_timeout}s\n{self.dump()}")
            with contextlib.suppress(TimeoutError):
                await self.wait_for(
                    lambda f: [s for s in f._open_sockets() if s.number not in broken], timeout=remaining
                )

    async def _send_envelope(
        self,
        kind: EnvelopeType,
        payload: dict[str, Any],
        *,
        retry_attempt: int | None = None,
        accepts_response_payload: bool,
    ) -> str:
        envelope = Envelope(
            envelope_id=str(uuid.uuid4()),
            type=kind,
            payload=payload,
            accepts_response_payload=accepts_response_payload,
            retry_attempt=retry_attempt,
            retry_reason=("timeout" if retry_attempt else "") if kind == "events_api" else None,
            sent_at=0.0,
            connection=0,
        )
        self._ack_events[envelope.envelope_id] = asyncio.Event()
        await self._deliver(envelope)
        if kind == "events_api" and self.redeliver_after is not None:
            self._spawn(self._redeliver(envelope))
        return envelope.envelope_id

    async def _redeliver(self, first: Envelope) -> None:
        acked = self._ack_events[first.envelope_id]
        attempt = first.retry_attempt or 0
        while attempt < self.max_redeliveries:
            assert self.redeliver_after is not None
            try:
                await asyncio.wait_for(acked.wait(), self.redeliver_after)
                return
            except TimeoutError:
                pass
            attempt += 1
            retry = Envelope(
                envelope_id=first.envelope_id,
                type=first.type,
                payload=first.payload,
                accepts_response_payload=first.accepts_response_payload,
                retry_attempt=attempt,
                retry_reason="timeout",
                sent_at=0.0,
                connection=0,
            )
            try:
                await self._deliver(retry)
            except RuntimeError:
                log.warning("fake slack: gave up redelivering %s (no connection)", first.envelope_id)
                return

    async def socket_send_event(self, payload: dict[str, Any], retry_attempt: int = 0) -> str:
        """Push an ``events_api`` envelope (an ``event_callback`` payload); return its envelope id."""
        return await self._send_envelope(
            "events_api", payload, retry_attempt=retry_attempt, accepts_response_payload=False
        )

    async def socket_send_slash_command(self, payload: dict[str, Any]) -> str:
        """Push a ``slash_commands`` envelope (see ``slash_command_payload``)."""
        return await self._send_envelope("slash_commands", payload, accepts_response_payload=True)

    async def socket_send_interactive(self, payload: dict[str, Any]) -> str:
        """Push an ``interactive`` envelope (block_actions, view_submission, ...)."""
        return await self._send_envelope("interactive", payload, accepts_response_payload=True)

    async def socket_send_raw(self, frame: str) -> None:
        """Send ``frame`` as-is on the newest connection: for robustness tests, frames Slack never
        sends (not JSON, an envelope whose ``payload`` is a list...). Acks of such frames still land
        in ``fake.acks`` when they name an ``envelope_id``."""
        sockets = await self.wait_for(lambda f: f._open_sockets(), timeout=self.connect_timeout)
        await sockets[-1].ws.send_str(frame)

    async def socket_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask connected clients to reconnect, as Slack does before recycling a connection."""
        for sock in self._open_sockets():
            with contextlib.suppress(ConnectionError):
                await sock.ws.send_json(
                    {"type": "disconnect", "reason": reason, "debug_info": {"host": f"applink-fake-{sock.number}"}}
                )

    async def socket_drop(self) -> None:
        """Close every connection from the server side (the client should reconnect on its own)."""
        for sock in self._open_sockets():
            await sock.ws.close()


# --------------------------------------------------------------------------------------------
# Payload builders: what Slack sends to an app (Events API, slash commands, interactivity)

_event_ids = itertools.count(1)
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


def new_event_id() -> str:
    """A unique, Slack-looking event id (``Ev...``)."""
    return f"Ev{next(_event_ids):010d}FAKE"


def rich_text_blocks(text: str) -> list[dict[str, Any]]:
    """The ``rich_text`` block Slack attaches to a user's message (mentions become user elements)."""
    elements: list[dict[str, Any]] = []
    position = 0
    for match in _MENTION.finditer(text):
        if match.start() > position:
            elements.append({"type": "text", "text": text[position : match.start()]})
        elements.append({"type": "user", "user_id": match.group(1)})
        position = match.end()
    if position < len(text):
        elements.append({"type": "text", "text": text[position:]})
    return [
        {
            "type": "rich_text",
            "block_id": uuid.uuid4().hex[:5],
            "elements": [{"type": "rich_text_section", "elements": elements}],
        }
    ]


def event_callback(
    event: dict[str, Any],
    *,
    event_id: str | None = None,
    team: str = "T1",
    api_app_id: str = "A1",
    bot_user_id: str = "UBOT",
    event_time: int | None = None,
) -> dict[str, Any]:
    """Wrap an event in the ``event_callback`` envelope the Events API posts."""
    return {
        "token": "fake-verification-token",
        "team_id": team,
        "context_team_id": team,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or new_event_id(),
        "event_time": event_time if event_time is not None else int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-fake-{uuid.uuid4().hex[:12]}",
    }


def mention_event(
    text: str,
    *,
    channel: str,
    user: str,
    ts: str,
    thread_ts: str | None = None,
    parent_user_id: str | None = None,
    team: str = "T1",
    user_team: str | None = None,
) -> dict[str, Any]:
    """An ``app_mention`` event (Slack sends no ``channel_type`` on these). ``user_team``: a Slack
    Connect channel, where the author belongs to another workspace (``user_team``/``source_team``)."""
    event: dict[str, Any] = {
        "client_msg_id": str(uuid.uuid4()),
        "type": "app_mention",
        "text": text,
        "user": user,
        "ts": ts,
        "blocks": rich_text_blocks(text),
        "team": team,
        "channel": channel,
        "event_ts": ts,
    }
    if user_team is not None:
        event["user_team"] = event["source_team"] = user_team
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
        if parent_user_id is not None:
            event["parent_user_id"] = parent_user_id
    return event


def message_event(
    text: str,
    *,
    channel: str,
    user: str | None,
    ts: str,
    thread_ts: str | None = None,
    channel_type: str = "channel",
    subtype: str | None = None,
    bot_id: str | None = None,
    edited: dict[str, str] | None = None,
    parent_user_id: str | None = None,
    app_id: str | None = None,
    files: list[dict[str, Any]] | None = None,
    team: str = "T1",
) -> dict[str, Any]:
    """A ``message`` event (``channel_type``: channel | group | im | mpim).

    A person's message carries ``client_msg_id`` and rich-text ``blocks``; a modern bot's carries
    ``bot_id`` (and ``user``); a legacy bot's has ``subtype="bot_message"`` and ``user=None``.
    """
    event: dict[str, Any] = {"type": "message"}
    if subtype is not None:
        event["subtype"] = subtype
    event["text"] = text
    if user is not None:
        event["user"] = user
    event["ts"] = ts
    if bot_id is None and subtype is None:
        event["client_msg_id"] = str(uuid.uuid4())
        event["blocks"] = rich_text_blocks(text)
    if bot_id is not None:
        event["bot_id"] = bot_id
        event["app_id"] = app_id or "A1"
        event["bot_profile"] = {"id": bot_id, "app_id": app_id or "A1", "name": "bot", "deleted": False}
    if files is not None:
        event["files"] = files
    if edited is not None:
        event["edited"] = edited
    if user is not None or bot_id is not None:
        event["team"] = team
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
        if parent_user_id is not None:
            event["parent_user_id"] = parent_user_id
    event["channel"] = channel
    event["event_ts"] = ts
    event["channel_type"] = channel_type
    return event


def message_changed_event(
    *,
    channel: str,
    message: dict[str, Any],
    previous_message: dict[str, Any],
    ts: str,
    channel_type: str = "channel",
) -> dict[str, Any]:
    """``message`` / ``message_changed``: an edit (``message`` is the new version)."""
    return {
        "type": "message",
        "subtype": "message_changed",
        "message": message,
        "previous_message": previous_message,
        "channel": channel,
        "hidden": True,
        "ts": ts,
        "event_ts": ts,
        "channel_type": channel_type,
    }


def message_deleted_event(
    *,
    channel: str,
    deleted_ts: str,
    previous_message: dict[str, Any] | None,
    ts: str,
    channel_type: str = "channel",
) -> dict[str, Any]:
    """``message`` / ``message_deleted``."""
    event: dict[str, Any] = {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "deleted_ts": deleted_ts,
        "channel": channel,
        "ts": ts,
        "event_ts": ts,
        "channel_type": channel_type,
    }
    if previous_message is not None:
        event["previous_message"] = previous_message
    return event


def assistant_thread_started_event(
    *, channel: str, user: str, thread_ts: str, context_channel: str | None = None, team: str = "T1"
) -> dict[str, Any]:
    """``assistant_thread_started`` (a user opened the AI app's side panel)."""
    context: dict[str, Any] = {}
    if context_channel is not None:
        context = {"channel_id": context_channel, "team_id": team, "enterprise_id": None}
    return {
        "type": "assistant_thread_started",
        "assistant_thread": {
            "user_id": user,
            "context": context,
            "channel_id": channel,
            "thread_ts": thread_ts,
        },
        "event_ts": thread_ts,
    }


def app_home_opened_event(*, user: str, channel: str, tab: str = "home") -> dict[str, Any]:
    return {"type": "app_home_opened", "user": user, "channel": channel, "tab": tab, "event_ts": str(time.time())}


def slash_command_payload(
    command: str,
    text: str,
    *,
    user: str,
    channel: str,
    trigger_id: str | None = None,
    team: str = "T1",
    api_app_id: str = "A1",
    user_name: str = "user",
    channel_name: str = "general",
) -> dict[str, str]:
    """The fields of a slash command (form fields over HTTP; the envelope payload in Socket Mode)."""
    return {
        "token": "fake-verification-token",
        "team_id": team,
        "team_domain": "fake",
        "channel_id": channel,
        "channel_name": channel_name,
        "user_id": user,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": f"https://hooks.fake.slack/commands/{team}/{uuid.uuid4().hex[:10]}",
        "trigger_id": trigger_id or new_trigger_id(),
    }


def new_trigger_id() -> str:
    return f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex}"


def block_actions_payload(
    *,
    action_id: str,
    value: str | None,
    user: str,
    channel: str,
    message_ts: str,
    thread_ts: str | None = None,
    block_id: str = "actions",
    action_type: str = "button",
    message: dict[str, Any] | None = None,
    trigger_id: str | None = None,
    team: str = "T1",
    api_app_id: str = "A1",
) -> dict[str, Any]:
    """A ``block_actions`` payload for a click on a message's interactive element."""
    container: dict[str, Any] = {
        "type": "message",
        "message_ts": message_ts,
        "channel_id": channel,
        "is_ephemeral": False,
    }
    if thread_ts is not None:
        container["thread_ts"] = thread_ts
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id,
        "type": action_type,
        "action_ts": str(time.time()),
    }
    if value is not None:
        action["value"] = value
    return {
        "type": "block_actions",
        "user": {"id": user, "username": "user", "name": "user", "team_id": team},
        "api_app_id": api_app_id,
        "token": "fake-verification-token",
        "container": container,
        "trigger_id": trigger_id or new_trigger_id(),
        "team": {"id": team, "domain": "fake"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "general"},
        "message": message or {"type": "message", "ts": message_ts, "text": ""},
        "state": {"values": {}},
        "response_url": f"https://hooks.fake.slack/actions/{team}/{uuid.uuid4().hex[:10]}",
        "actions": [action],
    }


def view_submission_payload(
    *,
    callback_id: str,
    values: dict[str, dict[str, dict[str, Any]]],
    user: str,
    private_metadata: str = "",
    view_id: str = "V00000001",
    team: str = "T1",
    api_app_id: str = "A1",
) -> dict[str, Any]:
    """A ``view_submission`` payload; ``values`` is ``{block_id: {action_id: {"type": ..., "value": ...}}}``."""
    return {
        "type": "view_submission",
        "team": {"id": team, "domain": "fake"},
        "user": {"id": user, "username": "user", "name": "user", "team_id": team},
        "api_app_id": api_app_id,
        "token": "fake-verification-token",
        "trigger_id": new_trigger_id(),
        "view": {
            "id": view_id,
            "team_id": team,
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": private_metadata,
            "state": {"values": values},
            "hash": f"{int(time.time())}.fake",
            "title": {"type": "plain_text", "text": "Form"},
            "blocks": [],
            "app_id": api_app_id,
            "root_view_id": view_id,
            "previous_view_id": None,
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def url_verification_payload(challenge: str) -> dict[str, str]:
    """The handshake Slack posts when the events URL is configured."""
    return {"token": "fake-verification-token", "challenge": challenge, "type": "url_verification"}
