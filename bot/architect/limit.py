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

Slots are kept for answers on their way: a job that will ask the model holds a reservation from
its start until its answer's request is sent (`reserve()`), and optional requests (the rewrite,
sent within `waiting_at_most`) start only while the slots in flight plus those reserved leave
room (jobs signalled but not yet claimed count as reserved too). Jobs that arrive after the
rewrites took their slots are served all the same: an answer (or its record) that finds no free
slot takes one from an optional request still waiting for the model's reply, which is abandoned
(`Preempted`, as if it had found no slot: the search goes on without it). Without this, a burst's
rewrites (started as each job is claimed) took the slots its answers needed a moment later, and
the answers queued behind them for a whole rewrite round trip: 40 mentions at once with a 2 s
model, the answers' requests went out 2.5 s after the events instead of under 1 s
(bench/vs_template.py).

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


class Preempted(NoSlot):
    """An optional request gave its slot up to an answer before the model replied: abandoned."""


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
        self.reserved = 0  # answers on their way (jobs before their model request): see `reserve`
        # Jobs about to start (signalled, not yet claimed): kept free too (JobRunner sets it).
        self.expected: Callable[[], int] = lambda: 0
        self._optional: list[asyncio.Future[None]] = []  # one per optional request in flight: set = give it up
        self.overloads = 0
        self._clock = clock
        self._on_change = on_change
        # Three queues, served in order: answers being streamed (someone waits for the first words),
        # then the rest of an answer (its record), then optional requests (rewrites), which also
        # leave the reserved slots free.
        self._waiters: tuple[collections.deque[asyncio.Future[None]], ...] = (
            collections.deque(),
            collections.deque(),
            collections.deque(),
        )
        self._paused_until = 0.0
        self._cut_at = float("-inf")
        self._timer: asyncio.TimerHandle | None = None

    @property
    def allowed(self) -> int:
        return max(self.floor, int(self.limit))

    @property
    def waiting(self) -> tuple[int, int]:
        """Requests queued for a slot: (urgent, others)."""
        urgent, others, optional = self._waiters
        return sum(not f.done() for f in urgent), sum(not f.done() for f in [*others, *optional])

    def reserve(self) -> Reservation:
        """Keep a slot for an answer still being prepared: other requests leave it free."""
        self.reserved += 1
        return Reservation(self)

    def _unreserve(self) -> None:
        self.reserved = max(0, self.reserved - 1)
        self._wake()

    async def acquire(self, *, urgent: bool = True, timeout: float | None = None, optional: bool = False) -> None:
        """Wait for a slot: first come, first served, urgent requests before the others, optional ones
        last (and only beside the reserved slots). With a `timeout`, raise TimeoutError (holding no
        slot) when none was granted within it."""
        kind = 0 if urgent else 2 if optional else 1
        if not any(self._waiters[: kind + 1]) and self._can_start(kind):
            self.in_flight += 1
            self._changed()
            return
        if timeout is not None and timeout <= 0:
            raise TimeoutError
        queue = self._waiters[kind]
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(future)
        self._wake()
        if kind < 2 and not future.done() and self._clock() >= self._paused_until:
            self._preempt()
        try:
            async with asyncio.timeout(timeout):
                await future
        except (asyncio.CancelledError, TimeoutError):
            if future.done() and not future.cancelled():
                self.release("other")  # granted just as we were cancelled or gave up: give the slot back
            elif future in queue:
                queue.remove(future)
            raise

    def optional_hold(self) -> asyncio.Future[None]:
        """For an optional request in flight: resolved when an answer needs its slot."""
        hold: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._optional.append(hold)
        return hold

    def drop_hold(self, hold: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._optional.remove(hold)

    def _preempt(self) -> None:
        """Ask the newest optional request still waiting for its reply to give its slot up."""
        for hold in reversed(self._optional):
            if not hold.done():
                hold.set_result(None)
                return

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

    def _can_start(self, kind: int) -> bool:
        if self._clock() < self._paused_until:
            return False
        if kind == 2:  # optional: beside the slots that answers on their way will need
            return self.in_flight + self.reserved + max(0, self.expected()) < self.allowed
        return self.in_flight < self.allowed

    def _wake(self) -> None:
        while True:
            for queue in self._waiters:
                while queue and queue[0].done():  # gave up or was cancelled while queued
                    queue.popleft()
            kind = next((k for k, queue in enumerate(self._waiters) if queue), None)
            if kind is None or not self._can_start(kind):
                break  # the head waits, and everything behind it
            self._waiters[kind].popleft().set_result(None)
            self.in_flight += 1
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


class Reservation:
    """A slot kept for an answer on its way (`AdaptiveLimit.reserve`); `release()` once its request
    is about to be sent, or when the job ends without one. Releasing twice is harmless."""

    __slots__ = ("_limit",)

    def __init__(self, limit: AdaptiveLimit) -> None:
        self._limit: AdaptiveLimit | None = limit

    def release(self) -> None:
        limit, self._limit = self._limit, None
        if limit is not None:
            limit._unreserve()


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
            await self.limit.acquire(urgent=_is_stream(request), timeout=timeout, optional=deadline is not None)
        except TimeoutError:
            raise NoSlot("no model request slot was free in time: not sent") from None
        try:
            if deadline is None:
                response = await self.inner.handle_async_request(request)
            else:
                response = await self._optional_request(request)
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

    async def _optional_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send an optional request, abandoning it if an answer needs its slot before the reply."""
        hold = self.limit.optional_hold()
        sending = asyncio.ensure_future(self.inner.handle_async_request(request))
        try:
            await asyncio.wait({sending, hold}, return_when=asyncio.FIRST_COMPLETED)
            if not sending.done():
                sending.cancel()
                with contextlib.suppress(BaseException):
                    await sending
                if sending.cancelled() or sending.exception() is not None:
                    raise Preempted("gave its model request slot up to an answer: abandoned")
            return sending.result()  # (the reply came just as it was given up: used after all)
        except BaseException:
            sending.cancel()
            raise
        finally:
            self.limit.drop_hold(hold)

    async def aclose(self) -> None:
        await self.inner.aclose()
