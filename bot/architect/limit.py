"""How many model requests one replica sends at once: a limit that adapts (AIMD).

`ARCHBOT_CONCURRENCY` is the ceiling. The limit starts there, grows by about one for each
`limit` successful requests (additive increase), and on a 429, 529 or 503 falls to what the
API was still accepting when it refused: never above half of what it was before the cut, never
above the requests still in flight (multiplicative decrease). New requests also wait out the
response's `retry-after`. Waiting for a slot is not an attempt: the SDK's bounded retries
(`ARCHBOT_MODEL_RETRIES`) are spent only on requests that reached the API.

The limit sits in the HTTP transport of the Anthropic client (`LimitedTransport`), so every
request of every job of this process passes through the same one, retries included, and the
streamed answer holds its slot until its body is fully read. It is exposed as the
`archbot_model_concurrency_limit` gauge, with `archbot_model_in_flight`.

A request that is only worth making soon (the query rewrite, bot/retrieval/rewrite.py) is sent
inside `waiting_at_most(seconds)`: if no slot is free by then it is not sent at all, and the call
raises `NoSlot` (an `AnthropicError` the SDK does not retry).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Literal

import anthropic
import httpx2

log = logging.getLogger(__name__)

Outcome = Literal["ok", "overloaded", "other"]
OVERLOAD_STATUSES = (429, 503, 529)
MAX_PAUSE = 30.0  # seconds: a retry-after beyond this is not honoured for every request

# The event-loop time after which a request made in this context gives up waiting for a slot.
_slot_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("archbot_slot_deadline", default=None)


class NoSlot(anthropic.AnthropicError):
    """No slot of the limit was free within the time the request was worth waiting: it was not sent."""


@contextlib.contextmanager
def waiting_at_most(seconds: float) -> Iterator[None]:
    """Model requests made inside (in this task) wait at most `seconds` from now for a slot; a
    request that gets none by then is not sent and raises `NoSlot`. Needs a running event loop."""
    token = _slot_deadline.set(asyncio.get_running_loop().time() + max(0.0, seconds))
    try:
        yield
    finally:
        _slot_deadline.reset(token)


class AdaptiveLimit:
    """An AIMD concurrency limit shared by every model request of one process."""

    def __init__(
        self,
        ceiling: int,
        *,
        floor: int = 1,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[AdaptiveLimit], None] | None = None,
    ) -> None:
        self.ceiling = max(1, ceiling)
        self.floor = max(1, min(floor, self.ceiling))
        self.limit = float(self.ceiling)
        self.in_flight = 0
        self.overloads = 0
        self._clock = clock
        self._on_change = on_change
        # Two queues: answers being streamed first (someone waits for the first words), then the rest
        # (the record of an answer already shown, rewrites).
        self._waiters: tuple[collections.deque[asyncio.Future[None]], ...] = (collections.deque(), collections.deque())
        self._paused_until = 0.0
        self._cut_at = float("-inf")
        self._timer: asyncio.TimerHandle | None = None

    @property
    def allowed(self) -> int:
        return max(self.floor, int(self.limit))

    @property
    def waiting(self) -> tuple[int, int]:
        """Requests queued for a slot: (urgent, others)."""
        urgent, others = self._waiters
        return sum(not f.done() for f in urgent), sum(not f.done() for f in others)

    async def acquire(self, *, urgent: bool = True, timeout: float | None = None) -> None:
        """Wait for a slot: first come, first served, urgent requests before the others. With a
        `timeout`, raise TimeoutError (holding no slot) when none was granted within it."""
        if not any(self._waiters) and self._can_start():
            self.in_flight += 1
            self._changed()
            return
        if timeout is not None and timeout <= 0:
            raise TimeoutError
        queue = self._waiters[0 if urgent else 1]
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(future)
        self._schedule_wake()
        try:
            async with asyncio.timeout(timeout):
                await future
        except (asyncio.CancelledError, TimeoutError):
            if future.done() and not future.cancelled():
                self.release("other")  # granted just as we were cancelled or gave up: give the slot back
            elif future in queue:
                queue.remove(future)
            raise

    def release(self, outcome: Outcome, *, retry_after: float | None = None) -> None:
        """Give a slot back, saying how the request went."""
        self.in_flight = max(0, self.in_flight - 1)
        now = self._clock()
        if outcome == "ok":
            self.limit = min(float(self.ceiling), self.limit + 1.0 / max(self.limit, 1.0))
        elif outcome == "overloaded":
            self.overloads += 1
            # One halving per wave of refusals (a wave lasts about one retry-after), and never more
            # than the API was still accepting: the requests in flight now are the ones it took.
            halved = self.limit * 0.5 if now - self._cut_at > max(retry_after or 0.0, 1.0) else self.limit
            if halved < self.limit:
                self._cut_at = now
            new_limit = max(float(self.floor), min(halved, float(max(self.in_flight, self.floor))))
            if new_limit < self.limit:
                log.info(
                    "model overloaded: fewer requests at once",
                    extra={"limit": round(new_limit, 2), "was": round(self.limit, 2), "retry_after": retry_after},
                )
            self.limit = new_limit
            if retry_after:
                self._paused_until = max(self._paused_until, now + min(retry_after, MAX_PAUSE))
        self._changed()
        self._wake()

    def _can_start(self) -> bool:
        return self.in_flight < self.allowed and self._clock() >= self._paused_until

    def _wake(self) -> None:
        while any(self._waiters) and self._can_start():
            queue = self._waiters[0] or self._waiters[1]
            future = queue.popleft()
            if future.done():
                continue
            self.in_flight += 1
            future.set_result(None)
        self._changed()
        self._schedule_wake()

    def _schedule_wake(self) -> None:
        """While paused by a retry-after, wake the queue when the pause ends."""
        if not any(self._waiters) or self._timer is not None:
            return
        delay = self._paused_until - self._clock()
        if delay <= 0:
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timer = None
            self._wake()

        self._timer = loop.call_later(delay, fire)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self)


def retry_after_seconds(headers: httpx2.Headers) -> float | None:
    """`retry-after-ms`, else `retry-after` in seconds (the API's headers); None when absent."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


class _ReleasingStream(httpx2.AsyncByteStream):
    """The response body; its slot goes back once the body is closed (read to the end or abandoned)."""

    def __init__(self, inner: httpx2.AsyncByteStream, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


def _is_stream(request: httpx2.Request) -> bool:
    try:
        body = request.content
    except httpx2.RequestNotRead:
        return True
    return b'"stream":true' in body or b'"stream": true' in body


class LimitedTransport(httpx2.AsyncBaseTransport):
    """An httpx transport that passes message requests through an `AdaptiveLimit`."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, limit: AdaptiveLimit) -> None:
        self.inner = inner
        self.limit = limit

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method != "POST" or not request.url.path.endswith("/messages"):
            return await self.inner.handle_async_request(request)
        # A streamed answer is what a person waits for; other requests (the answer's record, the query
        # rewrite) yield to it.
        deadline = _slot_deadline.get()
        timeout = None if deadline is None else deadline - asyncio.get_running_loop().time()
        try:
            await self.limit.acquire(urgent=_is_stream(request), timeout=timeout)
        except TimeoutError:
            raise NoSlot("no model request slot was free in time: not sent") from None
        try:
            response = await self.inner.handle_async_request(request)
        except BaseException:
            self.limit.release("other")
            raise
        status = response.status_code
        if status in OVERLOAD_STATUSES:
            outcome: Outcome = "overloaded"
        elif status < 400:
            outcome = "ok"
        else:
            outcome = "other"
        wait = retry_after_seconds(response.headers) if outcome == "overloaded" else None
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        return httpx2.Response(
            status_code=status,
            headers=response.headers,
            stream=_ReleasingStream(response.stream, lambda: self.limit.release(outcome, retry_after=wait)),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()
