"""Riding out Slack failures: retries over a window, and posting a message exactly once.

Slack answers 5xx or drops connections for short spells. Every Web API call is retried by
slack_sdk's retry handlers with exponential backoff spread over `ARCHBOT_SLACK_RETRY_SECONDS`
(60 s by default), so a spell shorter than that costs a delay, not an answer. Rate limits (429)
are retried honouring `Retry-After`.

A write that creates something (`chat.postMessage`, `chat.startStream`, `chat.appendStream`) is
*not* repeated blindly: a 500 or a timeout does not say whether Slack stored it, and repeating
it would show the answer twice. The SDK handlers retry those only when the request never reached
Slack (connection refused); otherwise `post_exactly_once` takes over. Every bot message carries
its job in Slack message metadata (`message_metadata`); after an ambiguous failure the job reads
its thread (`conversations.replies` with `include_all_metadata`) and, when its message is there,
uses it instead of posting again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.jitter import Jitter
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 60.0
RETRIES = 7  # doublings within the window: the last wait is about half of it
MESSAGE_EVENT_TYPE = "archbot_message"
# Methods whose repetition after an unknown outcome would show something twice.
NOT_REPEATABLE = frozenset({"chat.postMessage", "chat.startStream", "chat.appendStream", "chat.postEphemeral"})
SERVER_ERRORS = frozenset({500, 502, 503, 504})


def message_metadata(job_id: int, part: int | str = 0) -> dict[str, Any]:
    """Slack message metadata naming the job (and which of its messages) a bot message belongs to."""
    return {"event_type": MESSAGE_EVENT_TYPE, "event_payload": {"job_id": job_id, "part": part}}


class _ProportionalJitter(Jitter):
    """±20 %: replicas that failed together do not retry in lockstep (the SDK's default adds up to 1 s)."""

    def recalculate(self, duration: float) -> float:
        return duration * random.uniform(0.8, 1.2)


def window_backoff(window: float) -> BackoffRetryIntervalCalculator:
    """Exponential backoff whose `RETRIES` waits add up to about `window` seconds."""
    return BackoffRetryIntervalCalculator(backoff_factor=window / (2**RETRIES - 1), jitter=_ProportionalJitter())


def _method(request: HttpRequest) -> str:
    return request.url.rstrip("/").rsplit("/", 1)[-1]


class _ServerErrorRetry(AsyncServerErrorRetryHandler):
    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if _method(request) in NOT_REPEATABLE:
            return False
        if response is not None:
            return response.status_code in SERVER_ERRORS
        # A 5xx whose body is not JSON (a proxy's error page) surfaces as SlackApiError.
        return isinstance(error, SlackApiError) and getattr(error.response, "status_code", 0) in SERVER_ERRORS


class _ConnectionErrorRetry(AsyncConnectionErrorRetryHandler):
    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if isinstance(error, aiohttp.ClientConnectorError):
            return True  # never reached Slack: always safe to repeat
        if not isinstance(error, (aiohttp.ClientConnectionError, TimeoutError)):
            return False
        return _method(request) not in NOT_REPEATABLE


def build_retry_handlers(window: float = DEFAULT_WINDOW) -> list[AsyncRetryHandler]:
    backoff = window_backoff(window)
    return [
        _ConnectionErrorRetry(max_retry_count=RETRIES, interval_calculator=backoff),
        AsyncRateLimitErrorRetryHandler(max_retry_count=5),
        _ServerErrorRetry(max_retry_count=RETRIES, interval_calculator=backoff),
    ]


class ArchbotWebClient(AsyncWebClient):
    """slack_sdk's client, knowing the retry window our own exactly-once posting uses."""

    def __init__(self, *args: Any, retry_window: float = DEFAULT_WINDOW, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_window = retry_window


def retry_window(client: AsyncWebClient) -> float:
    return float(getattr(client, "retry_window", DEFAULT_WINDOW))


def is_transient(exc: BaseException) -> bool:
    """A failure worth another try: Slack 5xx or rate limit, a dropped connection, a timeout."""
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 0)
        return status in SERVER_ERRORS or status == 429
    return isinstance(exc, (aiohttp.ClientError, TimeoutError))


def _is_ours(message: dict[str, Any], metadata: dict[str, Any]) -> bool:
    found = message.get("metadata")
    return (
        isinstance(found, dict)
        and found.get("event_type") == metadata["event_type"]
        and found.get("event_payload") == metadata["event_payload"]
    )


async def find_own_message(
    client: AsyncWebClient, *, channel: str, thread_ts: str | None, metadata: dict[str, Any]
) -> str | None:
    """The ts of the bot message carrying `metadata` in the thread (or the channel's recent
    top-level messages when there is no thread), or None."""
    cursor: str | None = None
    for _ in range(10):  # threads are short; ten pages of 200 is plenty
        if thread_ts:
            resp = await client.conversations_replies(
                channel=channel, ts=thread_ts, include_all_metadata=True, limit=200, cursor=cursor
            )
        else:
            resp = await client.conversations_history(channel=channel, include_all_metadata=True, limit=50)
        for message in resp.get("messages") or []:
            if isinstance(message, dict) and _is_ours(message, metadata):
                return str(message["ts"])
        cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
        if not thread_ts or not cursor:
            return None
    return None


async def post_exactly_once(
    send: Callable[[], Awaitable[Any]],
    *,
    client: AsyncWebClient,
    channel: str,
    thread_ts: str | None,
    metadata: dict[str, Any] | None,
) -> Any:
    """Call `send` (one chat.postMessage) until it succeeds or the retry window ends. After a
    failure that may have posted anyway (5xx, timeout, dropped connection), look for the message
    by its metadata first; when it is there, return ``{"ts": ...}`` for it instead of posting again.
    Raises the last error when the window is over, or at once for a definite refusal."""
    loop = asyncio.get_running_loop()
    window = retry_window(client)
    deadline = loop.time() + window
    backoff = window_backoff(window)
    attempt = 0
    while True:
        try:
            return await send()
        except Exception as exc:
            if not is_transient(exc):
                raise
            last: Exception = exc
        while True:
            delay = backoff.calculate_sleep_duration(attempt)
            attempt += 1
            if loop.time() + delay > deadline:
                raise last
            log.info(
                "Slack post failed; checking before posting again",
                extra={"channel": channel, "error": type(last).__name__, "attempt": attempt},
            )
            await asyncio.sleep(delay)
            if metadata is None:
                break
            try:
                found = await find_own_message(client, channel=channel, thread_ts=thread_ts, metadata=metadata)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                last = exc
                continue  # Slack still failing: wait again before looking
            if found:
                log.info("the post had gone through; not posting again", extra={"channel": channel, "ts": found})
                return {"ts": found}
            break
