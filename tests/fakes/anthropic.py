"""A fake Anthropic API: an aiohttp app on 127.0.0.1, port 0, speaking the Messages wire format.

The real `anthropic.AsyncAnthropic(base_url=fake.base_url, api_key=fake.api_key)` talks to it:

- `POST /v1/messages`: JSON, or Server-Sent Events when the body says `"stream": true`
  (`message_start`, `ping`, `content_block_start`, `content_block_delta` with `text_delta`,
  `citations_delta` or `input_json_delta`, `content_block_stop`, `message_delta` with usage and
  `stop_reason`, `message_stop`).
- `POST /v1/messages/count_tokens`, `GET /v1/models`, `GET /v1/models/{id}` (404
  `not_found_error` for an id it does not know).

What it answers, in order: a queued fault (`fail`, `cut_stream_after`, `error_mid_stream`),
else the next scripted reply (`script`), else `default_reply`, which echoes the question,
cites the first `search_result` of the request and calls the request's tool (the forced one, or
the first) with the smallest input its schema accepts.

It checks what the real API rejects and a client gets wrong most easily (empty text blocks,
empty content, more than four `cache_control` marks, a `tool_use` without its `tool_result`,
structured outputs together with citations) and answers those with a 400.

Current models behave as documented for the Claude 5 generation: `THINKING_MODELS` think by
default (each reply starts with a `thinking` block, display omitted, that must be passed back
before a `tool_result`) and reject sampling parameters; `NO_FORCED_TOOL_MODELS` answer a forced
`tool_choice` (`tool` or `any`) or `thinking: disabled` with a 400 and return the text they
write before a tool call as a `thinking` block, not as text.

Prompt caching is emulated: a prefix (tools, then system, then message blocks) ending at a block
marked `cache_control` is written to the cache when it is long enough (`min_cache_tokens`);
a later request whose prefix matches an entry reads it (looking back up to 20 blocks from each
mark, as the API does). Tokens are approximated as characters / 4.

Every request is recorded in `requests` (headers with the key replaced by `[redacted]`, the JSON
body). The key is compared, never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.waiting import WAIT_SECONDS

DEFAULT_API_KEY = "sk-ant-fake-0123456789abcdef"
DEFAULT_MODELS = (
    "claude-sonnet-5-5",
    "claude-opus-5-5",
    "claude-haiku-5-5",
    "claude-sonnet-5",
    "claude-opus-5",
    "claude-fable-5-1",
    "claude-sonnet-4-6",
    "claude-haiku-4-5",
    "claude-haiku-4-5-20251001",
    "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929",
)
THINKING_MODELS = ("claude-sonnet-5", "claude-opus-5", "claude-haiku-5", "claude-fable-5", "claude-mythos-5")
NO_FORCED_TOOL_MODELS = ("claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-5-5")
DEPRECATED = {"claude-sonnet-4-5": "2026-11-30T00:00:00Z", "claude-sonnet-4-5-20250929": "2026-11-30T00:00:00Z"}
SECRET_HEADERS = {"x-api-key", "authorization"}
LOOKBACK_BLOCKS = 20
MAX_CACHE_MARKS = 4

Body = dict[str, Any]


# -- what a test scripts ------------------------------------------------------------------
@dataclass
class Cite:
    """A citation of a `search_result` in the request.

    Give `source` or `search_result_index` (the other is looked up in the request); `cited_text`
    defaults to the result's first text block, `title` to the result's title.
    """

    source: str | None = None
    search_result_index: int | None = None
    cited_text: str | None = None
    title: str | None = None


@dataclass
class Segment:
    """One text block of the reply, with the citations that support it."""

    text: str
    citations: list[Cite | str] = field(default_factory=list)


@dataclass
class ToolUse:
    """A tool call. `raw_json` (sent as is, in pieces) wins over `input`."""

    name: str
    input: dict[str, Any] | None = None
    raw_json: str | None = None
    id: str | None = None


@dataclass
class Reply:
    """One scripted model reply.

    `text` is a string (one text block, carrying `citations`) or a list of `Segment`s (one block
    each). `usage` entries override the computed ones. Delays are in seconds.
    """

    text: str | list[Segment] = ""
    tool_use: ToolUse | dict[str, Any] | list[ToolUse | dict[str, Any]] | None = None
    citations: list[Cite | str] = field(default_factory=list)
    stop_reason: str | None = None
    usage: dict[str, int] | None = None
    delay_first_token: float | None = None
    chunk_delay: float | None = None
    chunk_chars: int = 24


Responder = Callable[[Body], Reply]


@dataclass
class Fault:
    kind: str  # "status" | "cut" | "sse_error"
    times: int
    status: int = 529
    error_type: str = "overloaded_error"
    message: str = ""
    after_events: int = 3
    retry_after: float = 0.001
    skip: int = 0  # message requests to let through before this fault starts


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Body | None
    query: dict[str, str]
    authenticated: bool
    at: float

    @property
    def stream(self) -> bool:
        return bool(self.body and self.body.get("stream"))


class ScriptedError(Exception):
    """A request the fake answers with an API error."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


# -- the server ---------------------------------------------------------------------------
class FakeAnthropic:
    """An in-process fake of the Anthropic API for tests and benchmarks."""

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        models: tuple[str, ...] | list[str] = DEFAULT_MODELS,
        first_token_latency: float = 0.0,
        chunk_delay: float = 0.0,
        min_cache_tokens: int = 1024,
        max_in_flight: int | None = None,
        rate_limit_retry_after: float = 1.0,
    ) -> None:
        self._key_digest = hashlib.sha256(api_key.encode()).digest()
        self.models = list(models)
        self.retirements: dict[str, str] = {m: d for m, d in DEPRECATED.items() if m in self.models}
        self.first_token_latency = first_token_latency
        self.chunk_delay = chunk_delay
        self.min_cache_tokens = min_cache_tokens
        self.default_reply: Responder = default_reply
        self.requests: list[RecordedRequest] = []
        self.cache: set[str] = set()
        self.usages: list[dict[str, int]] = []  # the usage reported for each message reply, in order
        self.in_flight = 0
        # A concurrency rate limit, as an account's would be: a message request arriving while
        # `max_in_flight` are being answered gets 429 rate_limit_error with retry-after.
        self.max_in_flight = max_in_flight
        self.rate_limit_retry_after = rate_limit_retry_after
        self.rate_limited = 0  # how many requests got that 429
        self.peak_in_flight = 0
        self._script: list[Reply | Responder] = []
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._gate = asyncio.Event()
        self._gate.set()
        self._stream_gate = asyncio.Event()  # streamed replies only (see hold_streams)
        self._stream_gate.set()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_get("/v1/models", self._models_list)
        app.router.add_get("/v1/models/{model_id}", self._models_get)
        # A client that goes away ends its request, as the API stops generating for it: no longer in
        # flight (a request the bot abandons frees the concurrency it took).
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[union-attr]
        port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        self._gate.set()
        self._stream_gate.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeAnthropic:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- scripting -----------------------------------------------------------------------
    def script(self, *replies: Reply | Responder) -> None:
        """Queue replies (or functions of the request body returning one), used in order."""
        self._script.extend(replies)

    def fail(
        self,
        status: int = 529,
        *,
        times: int = 1,
        error_type: str | None = None,
        message: str | None = None,
        retry_after: float = 0.001,
        skip: int = 0,
    ) -> None:
        """The next `times` message requests (after `skip` good ones) get an HTTP error.

        The error carries a near-zero `retry-after-ms`, so the SDK's own retries are fast.
        """
        kind = error_type or _ERROR_TYPES.get(status, "api_error")
        self._faults.append(
            Fault(
                "status",
                times,
                status=status,
                error_type=kind,
                message=message or kind,
                retry_after=retry_after,
                skip=skip,
            )
        )

    def cut_stream_after(self, n_events: int, *, times: int = 1) -> None:
        """The next `times` streamed replies drop the connection after `n_events` SSE events."""
        self._faults.append(Fault("cut", times, after_events=n_events))

    def error_mid_stream(self, after_events: int = 3, *, error_type: str = "overloaded_error", times: int = 1) -> None:
        """The next `times` streamed replies send an SSE `error` event after `after_events` events."""
        self._faults.append(Fault("sse_error", times, error_type=error_type, after_events=after_events))

    def pause(self) -> None:
        """Hold every reply before its first token until `resume()`."""
        self._gate.clear()

    def resume(self) -> None:
        self._gate.set()

    def hold_streams(self) -> None:
        """Hold streamed replies (answers) before their first token until `release_streams()`;
        other message requests are answered meanwhile. A held stream counts as in flight."""
        self._stream_gate.clear()

    def release_streams(self) -> None:
        self._stream_gate.set()

    def reset(self) -> None:
        self._script.clear()
        self._faults.clear()
        self.requests.clear()
        self.usages.clear()
        self.cache.clear()

    @property
    def pending_script(self) -> int:
        return len(self._script)

    # -- observing -----------------------------------------------------------------------
    @property
    def message_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path == "/v1/messages"]

    async def wait_for(
        self, predicate: Callable[[RecordedRequest], bool] = lambda r: True, timeout: float = WAIT_SECONDS
    ) -> RecordedRequest:
        """The first recorded request matching `predicate`, waiting up to `timeout` seconds for it."""

        def found() -> RecordedRequest | None:
            return next((r for r in self.requests if predicate(r)), None)

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: found() is not None), timeout)
        hit = found()
        assert hit is not None
        return hit

    async def wait_for_count(self, n: int, *, path: str = "/v1/messages", timeout: float = WAIT_SECONDS) -> None:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: sum(r.path == path for r in self.requests) >= n), timeout
            )

    async def wait_in_flight(self, n: int, *, timeout: float = WAIT_SECONDS) -> None:
        """Until exactly `n` message requests are being answered (a request whose client went away
        ends as the server notices)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.in_flight == n), timeout)

    async def _flight_changed(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- handlers ------------------------------------------------------------------------
    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        body: Body | None = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        headers = {k.lower(): ("[redacted]" if k.lower() in SECRET_HEADERS else v) for k, v in request.headers.items()}
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            headers=headers,
            body=body,
            query=dict(request.query),
            authenticated=self._authenticated(request),
            at=time.monotonic(),
        )
        self.requests.append(record)
        async with self._changed:
            self._changed.notify_all()
        return record

    def _authenticated(self, request: web.Request) -> bool:
        candidates = [request.headers.get("x-api-key", "")]
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            candidates.append(auth[7:])
        return any(c and hmac.compare_digest(hashlib.sha256(c.encode()).digest(), self._key_digest) for c in candidates)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        record = await self._record(request)
        try:
            body = self._check(record)
            if self.max_in_flight is not None and self.in_flight >= self.max_in_flight:
                self.rate_limited += 1
                return _error_response(
                    429,
                    "rate_limit_error",
                    "Number of concurrent requests has exceeded your rate limit.",
                    retry_after=self.rate_limit_retry_after,
                )
            fault = self._next_fault()
            if fault is not None and fault.kind == "status":
                return _error_response(fault.status, fault.error_type, fault.message, retry_after=fault.retry_after)
            reply = self._next_reply(body, consume=fault is None)
            message = build_message(body, reply, next(self._ids))
            usage = self._usage(body, message, reply)
        except ScriptedError as exc:
            return _error_response(exc.status, exc.error_type, exc.message)
        message["usage"] = usage
        self.usages.append(usage)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        await self._flight_changed()
        try:
            if body.get("stream"):
                return await self._stream(request, message, reply, fault)
            await self._first_token_wait(reply)
            return web.json_response(message, headers=_request_id_header(message))
        finally:
            self.in_flight -= 1
            asyncio.get_running_loop().create_task(self._flight_changed())

    async def _count_tokens(self, request: web.Request) -> web.Response:
        record = await self._record(request)
        try:
            body = self._check(record, count_only=True)
        except ScriptedError as exc:
            return _error_response(exc.status, exc.error_type, exc.message)
        total = sum(tokens for _, tokens in _segments(body))
        return web.json_response({"input_tokens": total})

    async def _models_list(self, request: web.Request) -> web.Response:
        record = await self._record(request)
        if not record.authenticated:
            return _error_response(401, "authentication_error", "invalid x-api-key")
        ids = list(self.models)
        limit = int(request.query.get("limit", "20"))
        after, before = request.query.get("after_id"), request.query.get("before_id")
        if after in ids:
            ids = ids[ids.index(after) + 1 :]
        elif before in ids:
            ids = ids[: ids.index(before)][-limit:]
        page, more = ids[:limit], len(ids) > limit
        data = [_model_info(m, self.retirements.get(m)) for m in page]
        return web.json_response(
            {
                "data": data,
                "has_more": more,
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
            }
        )

    async def _models_get(self, request: web.Request) -> web.Response:
        record = await self._record(request)
        if not record.authenticated:
            return _error_response(401, "authentication_error", "invalid x-api-key")
        model_id = request.match_info["model_id"]
        if model_id not in self.models:
            return _error_response(404, "not_found_error", f"model: {model_id}")
        return web.json_response(_model_info(model_id, self.retirements.get(model_id)))

    # -- replies -------------------------------------------------------------------------
    def _next_fault(self) -> Fault | None:
        if not self._faults:
            return None
        fault = self._faults[0]
        if fault.skip > 0:
            fault.skip -= 1
            return None
        fault.times -= 1
        if fault.times <= 0:
            self._faults.pop(0)
        return fault

    def _next_reply(self, body: Body, *, consume: bool) -> Reply:
        """The scripted reply; a faulted attempt peeks, so the retry gets the same reply."""
        item = (self._script.pop(0) if consume else self._script[0]) if self._script else self.default_reply
        return item(body) if callable(item) else item

    def _check(self, record: RecordedRequest, *, count_only: bool = False) -> Body:
        if not record.authenticated:
            raise ScriptedError(401, "authentication_error", "invalid x-api-key")
        body = record.body
        if not isinstance(body, dict):
            raise ScriptedError(400, "invalid_request_error", "the body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ScriptedError(400, "invalid_request_error", "model: field required")
        if not count_only and not isinstance(body.get("max_tokens"), int):
            raise ScriptedError(400, "invalid_request_error", "max_tokens: field required")
        if model not in self.models:
            raise ScriptedError(404, "not_found_error", f"model: {model}")
        validate_messages_body(body)
        if not count_only:
            validate_for_model(body)
        return body

    def _usage(self, body: Body, message: Body, reply: Reply) -> dict[str, int]:
        read, created, total = self._cache_usage(body)
        out_chars = 0
        for block in message["content"]:
            if block["type"] == "text":
                out_chars += len(block["text"])
            elif block["type"] == "tool_use":
                out_chars += len(json.dumps(block["input"]))
        usage = {
            "input_tokens": max(1, total - read - created),
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": created,
            "output_tokens": max(1, math.ceil(out_chars / 4)),
        }
        usage.update(reply.usage or {})
        return usage

    def _cache_usage(self, body: Body) -> tuple[int, int, int]:
        """(cache read, cache creation, total input) tokens for this request, updating the cache."""
        segments = _segments(body)
        hashes: list[str] = []
        cumulative: list[int] = []
        digest = hashlib.sha256(str(body.get("model")).encode())
        running = 0
        marks: list[int] = []
        # tool_choice and thinking settings only invalidate the cache of message blocks (as documented)
        message_settings = _canonical({"tool_choice": body.get("tool_choice"), "thinking": body.get("thinking")})
        first_message = next((i for i, (seg, _) in enumerate(segments) if isinstance(seg, dict) and "role" in seg), -1)
        for i, (segment, tokens) in enumerate(segments):
            if i == first_message:
                digest.update(message_settings.encode())
            digest.update(_canonical(segment).encode())
            hashes.append(digest.copy().hexdigest())
            running += tokens
            cumulative.append(running)
            if isinstance(segment, dict) and segment.get("cache_control"):
                marks.append(i)
        read_upto = -1
        for mark in marks:
            for j in range(mark, max(-1, mark - LOOKBACK_BLOCKS), -1):
                if hashes[j] in self.cache:
                    read_upto = max(read_upto, j)
                    break
        read = cumulative[read_upto] if read_upto >= 0 else 0
        written = [m for m in marks if m > read_upto and cumulative[m] >= self.min_cache_tokens]
        for m in written:
            self.cache.add(hashes[m])
        created = cumulative[max(written)] - read if written else 0
        return read, created, running

    async def _first_token_wait(self, reply: Reply) -> None:
        await self._gate.wait()
        delay = reply.delay_first_token if reply.delay_first_token is not None else self.first_token_latency
        if delay > 0:
            await asyncio.sleep(delay)

    async def _stream(
        self, request: web.Request, message: Body, reply: Reply, fault: Fault | None
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={"content-type": "text/event-stream", "cache-control": "no-cache", **_request_id_header(message)},
        )
        await response.prepare(request)
        chunk_delay = reply.chunk_delay if reply.chunk_delay is not None else self.chunk_delay
        waited = False
        for sent, (name, data) in enumerate(stream_events(message, reply.chunk_chars)):
            if fault is not None and sent >= fault.after_events:
                if fault.kind == "cut":
                    transport = request.transport
                    if transport is not None:
                        transport.abort()  # no terminating chunk: the client sees a broken body
                    return response
                if fault.kind == "sse_error":
                    err = {"type": "error", "error": {"type": fault.error_type, "message": fault.error_type}}
                    await response.write(_sse("error", err))
                    await response.write_eof()
                    return response
            if name == "content_block_start" and not waited and data["content_block"]["type"] != "thinking":
                await self._stream_gate.wait()
                await self._first_token_wait(reply)
                waited = True
            elif name == "content_block_delta" and chunk_delay > 0:
                await asyncio.sleep(chunk_delay)
            try:
                await response.write(_sse(name, data))
            except (ConnectionResetError, RuntimeError):
                return response  # the client went away
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write_eof()
        return response


# -- wire format --------------------------------------------------------------------------
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    529: "overloaded_error",
}


def _sse(event: str, data: Body) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _request_id_header(message: Body) -> dict[str, str]:
    return {"request-id": "req_" + message["id"].removeprefix("msg_")}


def _error_response(status: int, error_type: str, message: str, *, retry_after: float | None = None) -> web.Response:
    headers = {"request-id": f"req_err_{int(time.monotonic() * 1e6)}"}
    if retry_after is not None:
        headers["retry-after-ms"] = f"{retry_after * 1000:g}"
        headers["retry-after"] = str(math.ceil(retry_after))
        headers["x-should-retry"] = "true" if status in (408, 409, 429) or status >= 500 else "false"
    body = {"type": "error", "error": {"type": error_type, "message": message}, "request_id": headers["request-id"]}
    return web.json_response(body, status=status, headers=headers)


def _model_info(model_id: str, retires_at: str | None = None) -> Body:
    family = next((f for f in ("opus", "sonnet", "haiku", "fable") if f in model_id), "claude")
    info: Body = {
        "type": "model",
        "id": model_id,
        "display_name": f"Claude {family.title()} (fake)",
        "created_at": "2025-09-29T00:00:00Z",
        "lifecycle": "active",
        "deprecated_at": None,
        "retires_at": None,
    }
    if retires_at:
        info.update(lifecycle="deprecated", deprecated_at="2026-09-28T00:00:00Z", retires_at=retires_at)
    return info


def stream_events(message: Body, chunk_chars: int = 24) -> list[tuple[str, Body]]:
    """A complete message as the SSE events the API sends for it."""
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**message["usage"], "output_tokens": 1}
    events: list[tuple[str, Body]] = [("message_start", {"type": "message_start", "message": start})]
    events.append(("ping", {"type": "ping"}))
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opening: Body = {"type": "text", "text": ""}
            if block.get("citations"):
                opening["citations"] = []
            events.append(
                ("content_block_start", {"type": "content_block_start", "index": index, "content_block": opening})
            )
            for piece in _chunks(block["text"], chunk_chars):
                delta = {"type": "text_delta", "text": piece}
                events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
            # As the API documents it: the cited text first, then its citations, then the block's stop.
            for citation in block.get("citations") or []:
                delta = {"type": "citations_delta", "citation": citation}
                events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        elif block["type"] == "thinking":
            opening = {"type": "thinking", "thinking": "", "signature": ""}
            events.append(
                ("content_block_start", {"type": "content_block_start", "index": index, "content_block": opening})
            )
            if block["thinking"]:
                delta = {"type": "thinking_delta", "thinking": block["thinking"]}
                events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
            delta = {"type": "signature_delta", "signature": block["signature"]}
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        elif block["type"] == "tool_use":
            opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            events.append(
                ("content_block_start", {"type": "content_block_start", "index": index, "content_block": opening})
            )
            raw = block.get("_raw_json") or json.dumps(block["input"])
            for piece in ["", *_chunks(raw, chunk_chars * 2)]:
                delta = {"type": "input_json_delta", "partial_json": piece}
                events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    usage = dict(message["usage"])
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or []


def build_message(body: Body, reply: Reply, n: int) -> Body:
    """The response `Message` (without usage) for a reply to a request."""
    results = search_results(body)
    content: list[Body] = []
    segments = reply.text if isinstance(reply.text, list) else [Segment(reply.text, list(reply.citations))]
    for segment in segments:
        if not segment.text:
            continue
        block: Body = {"type": "text", "text": segment.text}
        if segment.citations:
            block["citations"] = [_resolve_citation(c, results) for c in segment.citations]
        content.append(block)
    tools = reply.tool_use if isinstance(reply.tool_use, list) else [reply.tool_use] if reply.tool_use else []
    for i, tool in enumerate(tools):
        call = tool if isinstance(tool, ToolUse) else ToolUse(**tool)
        block = {
            "type": "tool_use",
            "id": call.id or f"toolu_fake_{n}_{i}",
            "name": call.name,
            "input": call.input or {},
        }
        if call.raw_json is not None:
            block["_raw_json"] = call.raw_json
            with contextlib.suppress(ValueError):
                block["input"] = json.loads(call.raw_json)
        content.append(block)
    model = body["model"]
    if rejects_forced_tools(model) and tools:
        first_tool = next(i for i, b in enumerate(content) if b["type"] == "tool_use")
        for i in range(first_tool):  # text before a tool call comes back as (omitted) thinking
            content[i] = {"type": "thinking", "thinking": "", "signature": f"fake-sig-{n}-{i}"}
    if thinks_by_default(model):
        content.insert(0, {"type": "thinking", "thinking": "", "signature": f"fake-sig-{n}"})
    if not any(b["type"] != "thinking" for b in content):
        content.append({"type": "text", "text": "…"})
    stop = reply.stop_reason or ("tool_use" if tools else "end_turn")
    message = {
        "id": f"msg_fake_{n:06d}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
    }
    if not body.get("stream"):  # the private raw JSON only matters to the SSE writer
        for block in content:
            block.pop("_raw_json", None)
    return message


def thinks_by_default(model: str) -> bool:
    return model.startswith(THINKING_MODELS)


def rejects_forced_tools(model: str) -> bool:
    return model.startswith(NO_FORCED_TOOL_MODELS)


def validate_for_model(body: Body) -> None:
    """The 400s of the Claude 5 generation: forced tools, disabled thinking, sampling, lost thinking."""
    model = body["model"]
    choice = (body.get("tool_choice") or {}).get("type")
    if rejects_forced_tools(model):
        if choice in ("tool", "any"):
            raise ScriptedError(
                400,
                "invalid_request_error",
                f"tool_choice.type: {choice!r} is not supported on {model}; use auto or none",
            )
        if (body.get("thinking") or {}).get("type") == "disabled":
            raise ScriptedError(
                400, "invalid_request_error", "thinking.type: 'disabled' is not supported; use between_tools"
            )
    if not thinks_by_default(model):
        return
    for name in ("temperature", "top_p", "top_k"):
        if name in body:
            raise ScriptedError(400, "invalid_request_error", f"{name}: only the default value is supported on {model}")
    messages = body.get("messages", [])
    for i, message in enumerate(messages[1:], 1):
        blocks = _content_blocks(message)
        if not any(b.get("type") == "tool_result" for b in blocks):
            continue
        previous = _content_blocks(messages[i - 1])
        if previous and previous[0].get("type") not in ("thinking", "redacted_thinking"):
            raise ScriptedError(
                400,
                "invalid_request_error",
                f"messages.{i - 1}.content.0.type: expected `thinking` or `redacted_thinking` before tool use "
                "(pass thinking blocks back unchanged)",
            )


def _resolve_citation(cite: Cite | str, results: list[Body]) -> Body:
    if isinstance(cite, str):
        cite = Cite(source=cite)
    index = cite.search_result_index
    if index is None:
        index = next((i for i, r in enumerate(results) if r.get("source") == cite.source), None)
        if index is None:
            raise ScriptedError(500, "api_error", f"fake: no search_result with source {cite.source!r} to cite")
    if not 0 <= index < len(results):
        raise ScriptedError(500, "api_error", f"fake: search_result_index {index} out of range")
    result = results[index]
    texts = [b.get("text", "") for b in result.get("content", [])]
    return {
        "type": "search_result_location",
        "source": cite.source or result.get("source", ""),
        "title": cite.title if cite.title is not None else result.get("title"),
        "cited_text": cite.cited_text if cite.cited_text is not None else (texts[0] if texts else ""),
        "search_result_index": index,
        "start_block_index": 0,
        "end_block_index": 1,
    }


# -- reading a request --------------------------------------------------------------------
def _content_blocks(message: Body) -> list[Body]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content or [])


def search_results(body: Body) -> list[Body]:
    """Every `search_result` block of the request, in the order the API numbers them."""
    found: list[Body] = []
    for message in body.get("messages", []):
        for block in _content_blocks(message):
            if block.get("type") == "search_result":
                found.append(block)
            elif block.get("type") == "tool_result" and isinstance(block.get("content"), list):
                found.extend(b for b in block["content"] if b.get("type") == "search_result")
    return found


def last_user_text(body: Body) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") != "user":
            continue
        texts = [b.get("text", "") for b in _content_blocks(message) if b.get("type") == "text"]
        if texts:
            return texts[-1]
    return ""


def system_text(body: Body) -> str:
    system = body.get("system")
    if isinstance(system, str):
        return system
    return "\n".join(b.get("text", "") for b in system or [])


def _segments(body: Body) -> list[tuple[Any, int]]:
    """The request's cacheable prefix order: tools, system blocks, message blocks; with tokens."""
    out: list[Any] = list(body.get("tools") or [])
    system = body.get("system")
    if isinstance(system, str):
        out.append({"type": "text", "text": system})
    else:
        out.extend(system or [])
    for message in body.get("messages", []):
        for block in _content_blocks(message):
            out.append({"role": message.get("role"), **block})
    return [(s, max(1, math.ceil(len(_canonical(s)) / 4))) for s in out]


def _canonical(segment: Any) -> str:
    if isinstance(segment, dict):
        segment = {k: v for k, v in segment.items() if k != "cache_control"}
    return json.dumps(segment, sort_keys=True, ensure_ascii=False)


def validate_messages_body(body: Body) -> None:
    """What the real API rejects with a 400 that a client easily gets wrong."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ScriptedError(400, "invalid_request_error", "messages: at least one message is required")
    marks = 0
    for spot in itertools.chain(
        body.get("tools") or [], [] if isinstance(body.get("system"), str) else body.get("system") or []
    ):
        marks += bool(isinstance(spot, dict) and spot.get("cache_control"))
        if isinstance(spot, dict) and spot.get("type") == "text" and not str(spot.get("text", "")).strip():
            raise ScriptedError(400, "invalid_request_error", "system: text content blocks must be non-empty")
    citations_on = False
    pending_tool_ids: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise ScriptedError(400, "invalid_request_error", f"messages.{i}.role: must be user or assistant")
        content = message.get("content")
        if content is None or content == "" or content == []:
            raise ScriptedError(400, "invalid_request_error", f"messages.{i}: content must be non-empty")
        if isinstance(content, str) and not content.strip():
            raise ScriptedError(400, "invalid_request_error", f"messages.{i}: text content must be non-whitespace")
        ids_here: set[str] = set()
        for j, block in enumerate(_content_blocks(message)):
            marks += bool(block.get("cache_control"))
            kind = block.get("type")
            if kind == "text" and not str(block.get("text", "")).strip():
                raise ScriptedError(
                    400, "invalid_request_error", f"messages.{i}.content.{j}: text content blocks must be non-empty"
                )
            if kind == "search_result":
                if not block.get("source") or not block.get("content"):
                    raise ScriptedError(
                        400,
                        "invalid_request_error",
                        f"messages.{i}.content.{j}: search_result needs source and content",
                    )
                citations_on = citations_on or bool((block.get("citations") or {}).get("enabled"))
            if kind == "tool_use":
                if role != "assistant":
                    raise ScriptedError(400, "invalid_request_error", f"messages.{i}: tool_use only in assistant turns")
                ids_here.add(block.get("id", ""))
            if kind == "tool_result":
                pending_tool_ids.discard(block.get("tool_use_id", ""))
        if pending_tool_ids:
            raise ScriptedError(
                400,
                "invalid_request_error",
                f"messages.{i}: tool_use ids were found without tool_result blocks immediately after: "
                + ", ".join(sorted(pending_tool_ids)),
            )
        pending_tool_ids = ids_here
    if pending_tool_ids and messages[-1].get("role") != "assistant":  # pragma: no cover - defensive
        raise ScriptedError(400, "invalid_request_error", "tool_use without tool_result")
    if marks > MAX_CACHE_MARKS:
        raise ScriptedError(
            400, "invalid_request_error", f"A maximum of {MAX_CACHE_MARKS} blocks with cache_control may be provided"
        )
    output_config = body.get("output_config") or {}
    if citations_on and (output_config.get("format") or body.get("output_format")):
        raise ScriptedError(400, "invalid_request_error", "citations cannot be combined with structured outputs")
    choice = body.get("tool_choice") or {}
    names = {t.get("name") for t in body.get("tools") or []}
    if choice.get("type") == "tool" and choice.get("name") not in names:
        raise ScriptedError(400, "invalid_request_error", f"tool_choice: no tool named {choice.get('name')!r}")


# -- the default responder ----------------------------------------------------------------
def default_reply(body: Body) -> Reply:
    """Echo the question, cite the first search result, call the request's tool minimally."""
    choice = body.get("tool_choice") or {}
    tools = body.get("tools") or []
    forced = choice.get("type") in ("tool", "any")
    segments: list[Segment] = []
    if not forced:
        question = " ".join(last_user_text(body).split())[:300]
        segments.append(Segment(f"Echo: {question}\n\n"))
        results = search_results(body)
        if results:
            title = results[0].get("title") or results[0].get("source")
            segments.append(Segment(f"The docs cover this under {title}.", [Cite(search_result_index=0)]))
    tool_use: ToolUse | None = None
    if tools and choice.get("type") != "none":
        name = choice.get("name") if choice.get("type") == "tool" else tools[0].get("name")
        tool = next((t for t in tools if t.get("name") == name), tools[0])
        tool_use = ToolUse(name=tool["name"], input=minimal_input(tool.get("input_schema") or {}))
    return Reply(text=segments, tool_use=tool_use)


def minimal_input(schema: Body, defs: Body | None = None) -> Any:
    """The smallest value a (simple) JSON schema accepts: required properties only."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return minimal_input(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), defs)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return minimal_input(options[0], defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object":
        props = schema.get("properties", {})
        return {name: minimal_input(props.get(name, {}), defs) for name in schema.get("required", [])}
    if kind == "array":
        return [minimal_input(schema.get("items", {}), defs) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return "echo"[: schema.get("maxLength", 4)] or "x"
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return None
