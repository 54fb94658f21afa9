"""Posting to Slack: the only module that writes to Slack (messages, streams, views, statuses).

Every write passes the output neutraliser (`bot/slack/neutralise.py`) here, right before it goes
out, in the format of each field: no broadcast, mention or hidden link target reaches Slack
unless the bot composed it, and no credential (it is redacted there too).
`tests/test_neutralise.py` checks that no other module calls a Slack write method.

`ReplyPoster` shows one answer in one thread while it is being written:
- `stream` mode uses Slack's chat streaming API (`chat.startStream` → `chat.appendStream` →
  `chat.stopStream`); text is appended as it arrives.
- `update` mode posts a message with the first words and edits it with `chat.update`, at
  most once per `update_interval` (chat.update is rate-limited).
- `auto` starts in stream mode and falls back to update mode, on the same message, whenever
  streaming is refused (`message_not_in_streaming_state` after Slack's ~5 minute limit, an
  older workspace, a rewrite of text already shown after a model retry).

Slack calls happen in a background flusher, so a slow Slack never stalls the model stream;
the model side only hands over "the full text so far". The first message's ts is reported
through `on_first_post` as soon as it exists, so a job resumed after a crash edits that
message instead of posting a second answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import SlackPostError
from bot.metrics import Metrics
from bot.redaction import settled
from bot.slack.neutralise import (
    neutralise_blocks,
    neutralise_chunks,
    neutralise_markdown,
    neutralise_mrkdwn,
    neutralise_plain,
    neutralise_view,
    stable_markdown_prefix,
)
from bot.slack.render import MARKDOWN_BLOCK_LIMIT, build_fallback_text, build_progress_text
from bot.slack.retry import is_transient, message_metadata, post_exactly_once

log = logging.getLogger(__name__)

WORKING_REACTION = "eyes"  # on the question while its job is queued or running
_TS = re.compile(r"\d+\.\d+")  # a message timestamp, e.g. 1700000000.000100
StreamMode = Literal["auto", "stream", "update"]
TaskStatus = Literal["pending", "in_progress", "complete", "error"]  # a task_update chunk's status
TASK_TEXT = 256  # a task's title / output, at most
STEP_INTERVAL = 0.5  # seconds between two step calls on an open stream, at least
FIRST_WORDS_WAIT = 1.0  # seconds the model side waits for the first words to be shown (see update)
_STREAM_REFUSALS = {
    "message_not_in_streaming_state",
    "method_not_supported_for_channel_type",
    "not_allowed_token_type",
    "unknown_method",
    "streaming_not_supported",
    "invalid_arguments",
    "msg_too_long",
}


def _error_code(exc: SlackApiError) -> str:
    try:
        return str(exc.response.get("error") or "")
    except Exception:  # a non-JSON body
        return ""


async def post_message(
    client: AsyncWebClient,
    *,
    channel: str,
    text: str,
    blocks: list[dict] | None = None,
    thread_ts: str | None = None,
    metrics: Metrics | None = None,
    metadata: dict[str, Any] | None = None,
) -> str:
    """Post one message; returns its ts. Raises SlackPostError when Slack refuses for good, or
    still fails after the retry window. `metadata` (`message_metadata(job_id, part)`) names the
    message, so an ambiguous failure never posts it twice (`bot/slack/retry.py`)."""

    async def send() -> Any:
        return await client.chat_postMessage(
            channel=channel,
            text=neutralise_mrkdwn(text),
            blocks=neutralise_blocks(blocks),
            thread_ts=thread_ts,
            metadata=metadata,
            unfurl_links=False,
            unfurl_media=False,
        )

    try:
        resp = await post_exactly_once(send, client=client, channel=channel, thread_ts=thread_ts, metadata=metadata)
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
        if metrics:
            metrics.slack_errors.labels("chat.postMessage").inc()
        error = _error_code(exc) if isinstance(exc, SlackApiError) else type(exc).__name__
        raise SlackPostError("chat.postMessage failed", channel=channel, thread_ts=thread_ts, error=error) from exc
    return message_ts(resp, "chat.postMessage", channel=channel, thread_ts=thread_ts)


def message_ts(resp: Any, method: str, *, channel: str, thread_ts: str | None) -> str:
    """The `ts` of the message Slack made; SlackPostError (`no_ts`) when the answer has none (a
    proxy's reply, a truncated body): a reply is never recorded under a made-up ts."""
    ts = resp.get("ts")
    if not isinstance(ts, str) or not _TS.fullmatch(ts):
        raise SlackPostError(
            f"{method} answered without a message ts", channel=channel, thread_ts=thread_ts, error="no_ts"
        )
    return ts


async def update_message(
    client: AsyncWebClient,
    *,
    channel: str,
    ts: str,
    text: str,
    blocks: list[dict] | None = None,
    metrics: Metrics | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Edit a message (retried by the client over the retry window: an edit is safe to repeat)."""
    try:
        await client.chat_update(
            channel=channel,
            ts=ts,
            text=neutralise_mrkdwn(text),
            blocks=neutralise_blocks(blocks or []),
            metadata=metadata,
        )
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
        if metrics:
            metrics.slack_errors.labels("chat.update").inc()
        error = _error_code(exc) if isinstance(exc, SlackApiError) else type(exc).__name__
        raise SlackPostError("chat.update failed", channel=channel, thread_ts=ts, error=error) from exc


async def stop_stream(client: AsyncWebClient, *, channel: str, ts: str, metadata: dict[str, Any] | None = None) -> bool:
    """End a stream left open (a job resumed after a crash mid-stream); False when there was none
    (`message_not_in_streaming_state`) or Slack refused."""
    try:
        await client.chat_stopStream(channel=channel, ts=ts, metadata=metadata)
        return True
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
        error = _error_code(exc) if isinstance(exc, SlackApiError) else type(exc).__name__
        log.info("stopStream refused", extra={"channel": channel, "error": error})
        return False


async def post_ephemeral(
    client: AsyncWebClient, *, channel: str, user: str, text: str, thread_ts: str | None = None
) -> bool:
    """A message only `user` sees; False (logged) when Slack refuses."""
    try:
        await client.chat_postEphemeral(channel=channel, user=user, text=neutralise_mrkdwn(text), thread_ts=thread_ts)
        return True
    except SlackApiError as exc:
        log.warning("ephemeral message failed", extra={"channel": channel, "error": _error_code(exc)})
        return False


async def send_response_url(response_url: str, *, text: str) -> bool:
    """An ephemeral reply through a slash command's `response_url`; False when it did not go through."""
    from slack_sdk.webhook.async_client import AsyncWebhookClient

    try:
        sent = await AsyncWebhookClient(response_url).send(text=neutralise_mrkdwn(text), response_type="ephemeral")
    except Exception:
        log.info("response_url reply failed", exc_info=True)
        return False
    return sent.status_code == 200


async def open_view(client: AsyncWebClient, *, trigger_id: str, view: dict) -> None:
    """views.open (a modal). Raises SlackApiError, like the SDK: the caller knows what to tell the user."""
    await client.views_open(trigger_id=trigger_id, view=neutralise_view(view))


async def publish_view(client: AsyncWebClient, *, user_id: str, view: dict) -> None:
    """views.publish (the App Home tab). Raises SlackApiError."""
    await client.views_publish(user_id=user_id, view=neutralise_view(view))


async def set_assistant_status(client: AsyncWebClient, *, channel: str, thread_ts: str, status: str) -> None:
    """assistant.threads.setStatus. Raises SlackApiError."""
    await client.assistant_threads_setStatus(channel_id=channel, thread_ts=thread_ts, status=neutralise_plain(status))


async def set_suggested_prompts(
    client: AsyncWebClient, *, channel: str, thread_ts: str | None, title: str, prompts: list[dict[str, str]]
) -> None:
    """assistant.threads.setSuggestedPrompts; a prompt's `message` is posted as the user's own words.
    Without `thread_ts` the prompts are pinned at the top of the DM's Messages tab (agent view)."""
    await client.assistant_threads_setSuggestedPrompts(
        channel_id=channel,
        thread_ts=thread_ts,
        title=neutralise_plain(title),
        prompts=[
            {"title": neutralise_plain(p.get("title", "")), "message": neutralise_mrkdwn(p.get("message", ""))}
            for p in prompts
        ],
    )


async def add_reaction(client: AsyncWebClient, *, channel: str, ts: str, name: str) -> None:
    """Cosmetic: a failure is logged, never raised."""
    try:
        await client.reactions_add(channel=channel, timestamp=ts, name=name)
    except SlackApiError as exc:
        if _error_code(exc) != "already_reacted":
            log.info("reaction failed", extra={"channel": channel, "error": _error_code(exc)})


async def remove_reaction(client: AsyncWebClient, *, channel: str, ts: str, name: str) -> None:
    try:
        await client.reactions_remove(channel=channel, timestamp=ts, name=name)
    except SlackApiError as exc:
        if _error_code(exc) != "no_reaction":
            log.info("reaction removal failed", extra={"channel": channel, "error": _error_code(exc)})


class PromisedReaction:
    """The 👀 the intake will add to one question (`WorkingReactions.expect`)."""

    __slots__ = ("done", "holders", "key", "started", "void")

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        self.holders = 0  # intakes of this (channel, ts) that have not yet added or given up
        self.started = False  # reactions.add is on its way
        self.void = False  # the job ended without it: the add is not made any more
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # answered, or not needed


class WorkingReactions:
    """The 👀 on the questions this process takes: added, then removed, never the other way round.

    The intake promises the add before the job is committed (`expect`) and makes it after the
    burst's acks (`add`), but a worker may claim the job before then (the idle poll, a worker done
    with the previous job) and a quick one (a bare mention's help) would remove the reaction before
    it is there, leaving it for good. So the job's `remove` first waits for this process's add of
    the same 👀 to be answered, at most `wait` seconds; an add that has not started by then is not
    made at all."""

    def __init__(self, *, wait: float = 10.0) -> None:
        self.wait = wait
        self._promised: dict[tuple[str, str], PromisedReaction] = {}

    @property
    def pending(self) -> int:
        """Questions whose 👀 is promised or being added."""
        return len(self._promised)

    def expect(self, channel: str, ts: str) -> PromisedReaction:
        """An add will follow: call before the job is committed. Hand the result to `add`, or to
        `drop` when the event turns out not to be a new job (a duplicate, a refused commit)."""
        key = (channel, ts)
        promised = self._promised.get(key)
        if promised is None:
            promised = self._promised[key] = PromisedReaction(key)
        promised.holders += 1
        return promised

    def drop(self, promised: PromisedReaction) -> None:
        """No add from this intake after all."""
        promised.holders -= 1
        if promised.holders <= 0 and not promised.started:
            self._settle(promised)

    async def add(self, client: AsyncWebClient, promised: PromisedReaction) -> None:
        if promised.void or promised.started:
            self.drop(promised)  # the job ended without waiting for it (or a twin is adding it)
            return
        promised.holders -= 1
        promised.started = True
        try:
            channel, ts = promised.key
            await add_reaction(client, channel=channel, ts=ts, name=WORKING_REACTION)
        finally:
            self._settle(promised)

    async def remove(self, client: AsyncWebClient, *, channel: str, ts: str) -> None:
        """The job's end: reactions.remove, once this process's add of the same 👀 is answered."""
        promised = self._promised.get((channel, ts))
        if promised is not None:
            try:
                await asyncio.wait_for(asyncio.shield(promised.done), timeout=self.wait)
            except TimeoutError:
                promised.void = not promised.started
        await remove_reaction(client, channel=channel, ts=ts, name=WORKING_REACTION)

    def _settle(self, promised: PromisedReaction) -> None:
        if not promised.done.done():
            promised.done.set_result(None)
        if self._promised.get(promised.key) is promised:
            del self._promised[promised.key]


class ReplyPoster:
    """Shows one answer in one thread while it streams, then its final form."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        thread_ts: str,
        mode: StreamMode = "auto",
        recipient_user_id: str | None = None,
        recipient_team_id: str | None = None,
        existing_ts: str | None = None,
        on_first_post: Callable[[str], Awaitable[None]] | None = None,
        metrics: Metrics | None = None,
        update_interval: float = 1.0,
        append_interval: float = 0.25,
        job_id: int | None = None,
    ) -> None:
        self.client = client
        self.job_id = job_id
        self.channel = channel
        self.thread_ts = thread_ts
        self.mode: Literal["stream", "update"] = "update" if mode == "update" or existing_ts else "stream"
        self.allow_fallback = mode == "auto" or existing_ts is not None
        self.recipient_user_id = recipient_user_id
        self.recipient_team_id = recipient_team_id
        self.ts: str | None = existing_ts
        self.on_first_post = on_first_post
        self.metrics = metrics
        self.update_interval = update_interval
        self.append_interval = append_interval
        self.first_visible_at: float | None = None
        self._latest = ""  # full text so far, as handed over by the model side
        self._shown = ""  # what Slack shows now
        self._streaming = False  # a stream is open on self.ts
        self._dirty = asyncio.Event()
        self._closed = False
        self._closed_event = asyncio.Event()
        self._first_flush = asyncio.Event()  # the flusher has tried to show text once
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._steps = True  # show the work's steps in the stream (task_update chunks) while it can
        self._step_chunks: list[dict[str, str]] = []  # steps handed over, not sent yet
        self._step_sender: asyncio.Task[None] | None = None
        self._last_step_at: float | None = None

    # -- the steps of the work (streaming only) ----------------------------------------------
    async def step(self, task_id: str, title: str, status: TaskStatus, *, output: str | None = None) -> None:
        """Show one step of the work (reading the thread, searching, writing) as a task in the
        stream's plan: the first step starts the stream (`task_display_mode` "plan"), the next ones
        update it. Cosmetic: without a stream (update mode, a refusal) it does nothing, never raises.

        Returns at once: the step goes out from a background task, in order, and steps that queue up
        meanwhile share one `chat.appendStream`; the work (the search, the model request) never waits
        on Slack for them. The answer's text and the final form go out after every step sent before."""
        if self.mode != "stream" or not self._steps or self._closed:
            return
        chunk: dict[str, str] = {"type": "task_update", "id": task_id, "title": title[:TASK_TEXT], "status": status}
        if output:
            chunk["output"] = output[:TASK_TEXT]
        self._step_chunks.append(chunk)
        if self._step_sender is None or self._step_sender.done():
            self._step_sender = asyncio.create_task(self._send_steps(), name=f"steps-{self.channel}-{self.thread_ts}")

    async def _send_steps(self) -> None:
        while self._step_chunks:
            # Once the stream is open, one step call every STEP_INTERVAL at most: the steps that come
            # meanwhile share it (fewer Slack calls while the answer is being prepared).
            if self.ts is not None and self._last_step_at is not None:
                pause = STEP_INTERVAL - (time.monotonic() - self._last_step_at)
                if pause > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._closed_event.wait(), timeout=pause)
            async with self._lock:
                await self._flush_steps(one_call=True)

    async def settle(self) -> None:
        """Wait until the steps handed over so far are out (or given up): after it, `ts` names the
        stream they opened, if any (and `on_first_post` has been told)."""
        sender = self._step_sender
        if sender is not None and not sender.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(sender)

    async def _flush_steps(self, *, one_call: bool = False) -> None:
        """Send the pending steps (the lock is held): the first opens the stream, the rest are appended
        together (`one_call`: only the first of those two calls)."""
        while self._step_chunks:
            if self.mode != "stream" or not self._steps:
                self._step_chunks.clear()
                return
            if self.ts is None:
                chunks, self._step_chunks = self._step_chunks[:1], self._step_chunks[1:]
            else:
                chunks, self._step_chunks = self._step_chunks, []
            try:
                if self.ts is None:
                    try:
                        resp = await self.client.chat_startStream(
                            channel=self.channel,
                            thread_ts=self.thread_ts,
                            task_display_mode="plan",
                            chunks=neutralise_chunks(chunks),
                            **self._recipients(),
                        )
                        ts = message_ts(resp, "chat.startStream", channel=self.channel, thread_ts=self.thread_ts)
                    except Exception as exc:
                        # As for text: a stream Slack made although the call failed is adopted, not doubled.
                        found = await self._find_started_stream("") if is_transient(exc) else None
                        if found is None:
                            raise
                        ts = found
                    self._streaming = True
                    await self._first_post(ts, visible=False)
                elif self._streaming:
                    await self.client.chat_appendStream(
                        channel=self.channel, ts=self.ts, chunks=neutralise_chunks(chunks)
                    )
                self._last_step_at = time.monotonic()
            except Exception as exc:  # cosmetic: a refusal or a network error only ends the steps
                if isinstance(exc, SlackApiError):
                    code = _error_code(exc)
                else:
                    code = getattr(exc, "error", None) or type(exc).__name__
                log.info("work steps not shown", extra={"channel": self.channel, "error": code})
                if isinstance(exc, SlackApiError):
                    log.debug("steps refused", extra={"channel": self.channel, "response": exc.response.data})
                self._steps = False
                self._step_chunks.clear()
                if self.ts is None and self.allow_fallback:
                    self.mode = "update"  # the text will not stream here either
            if one_call:
                return

    def _recipients(self) -> dict[str, str]:
        if self.recipient_user_id and self.recipient_team_id:
            return {"recipient_user_id": self.recipient_user_id, "recipient_team_id": self.recipient_team_id}
        return {}

    def _meta(self, part: int | str = 0) -> dict[str, Any] | None:
        """Message metadata naming this job's message `part` (None for callers without a job)."""
        return message_metadata(self.job_id, part) if self.job_id is not None else None

    # -- the model side ------------------------------------------------------------------
    async def update(self, full_text: str) -> None:
        """Hand over the answer text so far (not a delta). Returns at once."""
        if self._closed:
            return
        self._latest = full_text
        self._dirty.set()
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_loop(), name=f"flush-{self.channel}-{self.thread_ts}")
            # The first words go out before the model side goes on (reading the rest of a stream that
            # arrived at once, sending the record request): they are what the asker waits for. Bounded:
            # a slow Slack holds the model side back this once, at most FIRST_WORDS_WAIT.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first_flush.wait(), timeout=FIRST_WORDS_WAIT)

    # -- the Slack side ------------------------------------------------------------------
    async def _flush_loop(self) -> None:
        while not self._closed:
            await self._dirty.wait()
            self._dirty.clear()
            if self._closed:
                return
            started = time.monotonic()
            try:
                async with self._lock:
                    await self._flush_steps()  # the steps handed over before the text go out first
                    await self._show_progress(self._latest)
            except SlackApiError as exc:  # progress is best effort; the final render reports for real
                log.warning("progress update failed", extra={"channel": self.channel, "error": _error_code(exc)})
                log.debug("progress update refused", extra={"channel": self.channel, "response": exc.response.data})
            except SlackPostError as exc:  # Slack said no (not_in_channel...): its error, not a traceback
                log.warning("progress update failed", extra={"channel": self.channel, "error": exc.error})
            except Exception:
                log.warning("progress update failed", exc_info=True, extra={"channel": self.channel})
            finally:
                self._first_flush.set()
            interval = self.append_interval if self.mode == "stream" else self.update_interval
            wait = interval - (time.monotonic() - started)
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed_event.wait(), timeout=wait)

    async def _show_progress(self, text: str) -> None:
        # Whole words only, and not a line where a credential may still be being written: the
        # neutraliser redacts what it is given, so a value is never shown before all of it arrived.
        text = settled(text[:MARKDOWN_BLOCK_LIMIT])
        if not text.strip():
            return
        if self.mode == "stream":
            # Only the settled part streams: a link or token is shown once it is complete, neutralised.
            safe = neutralise_markdown(stable_markdown_prefix(text))
            if not safe.strip() or safe == self._shown or await self._stream_to(safe):
                return
        progress = build_progress_text(text)
        if neutralise_markdown(progress) != self._shown:
            await self._update_to(progress)

    async def _stream_to(self, text: str) -> bool:
        """Make the stream show `text` (already neutralised: deltas of it go out as they are);
        False when streaming is refused (the caller falls back)."""
        if not text.startswith(self._shown) or (self.ts and not self._streaming):
            return self._fall_back("rewrite")
        delta = text[len(self._shown) :]
        if not delta:
            return True
        try:
            if self.ts is None:
                kwargs: dict[str, str] = {}
                if self.recipient_user_id and self.recipient_team_id:
                    kwargs = {"recipient_user_id": self.recipient_user_id, "recipient_team_id": self.recipient_team_id}
                try:
                    resp = await self.client.chat_startStream(
                        channel=self.channel, thread_ts=self.thread_ts, markdown_text=delta, **kwargs
                    )
                    ts = message_ts(resp, "chat.startStream", channel=self.channel, thread_ts=self.thread_ts)
                except Exception as exc:
                    # The stream may exist although Slack answered 5xx or the connection dropped: adopt it
                    # rather than leave it open beside a second message.
                    found = await self._find_started_stream(delta) if is_transient(exc) else None
                    if found is None:
                        raise
                    ts = found
                self._streaming = True
                await self._first_post(ts)
            else:
                await self.client.chat_appendStream(channel=self.channel, ts=self.ts, markdown_text=delta)
                if self.first_visible_at is None:  # the stream was opened by the work's steps
                    self.first_visible_at = time.monotonic()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Unknown whether the text was appended: show the whole text by editing instead (an edit is idempotent).
            log.info(
                "stream write failed, falling back to updates",
                extra={"channel": self.channel, "error": type(exc).__name__},
            )
            return self._fall_back(type(exc).__name__)
        except SlackApiError as exc:
            code = _error_code(exc)
            if self.metrics:
                self.metrics.slack_errors.labels("chat.stream").inc()
            log.info("streaming refused, falling back to updates", extra={"channel": self.channel, "error": code})
            if self.allow_fallback and (code in _STREAM_REFUSALS or exc.response.status_code >= 400):
                self._streaming = False
                return self._fall_back(code)
            raise
        self._shown = text
        return True

    async def _find_started_stream(self, first_text: str) -> str | None:
        """After an ambiguous chat.startStream failure: the stream message it may have made (ours, in
        this thread, still without metadata, showing exactly the text sent), or None."""
        try:
            resp = await self.client.conversations_replies(
                channel=self.channel, ts=self.thread_ts, include_all_metadata=True, limit=200
            )
        except Exception:
            return None
        for message in reversed(resp.get("messages") or []):
            if (
                isinstance(message, dict)
                and message.get("bot_id")
                and not message.get("metadata")
                and message.get("text") == first_text
                and message.get("ts") != self.thread_ts
            ):
                log.info("chat.startStream had gone through; adopting its stream", extra={"channel": self.channel})
                return str(message["ts"])
        return None

    def _fall_back(self, reason: str) -> bool:
        if not self.allow_fallback:
            raise SlackPostError(f"streaming refused: {reason}", channel=self.channel, thread_ts=self.thread_ts)
        self.mode = "update"
        return False

    async def _update_to(self, text: str) -> None:
        """Show partial text the plain way: post the reply message, or edit it."""
        await self._put(text=build_fallback_text(text), blocks=[{"type": "markdown", "text": text}])
        self._shown = neutralise_markdown(text)

    async def _put(self, *, text: str, blocks: list[dict]) -> None:
        """Make the reply message show this: post it when there is none yet, else close any stream and edit it."""
        if self.ts is None:
            ts = await post_message(
                self.client,
                channel=self.channel,
                text=text,
                blocks=blocks,
                thread_ts=self.thread_ts,
                metrics=self.metrics,
                metadata=self._meta(0),
            )
            await self._first_post(ts)
            return
        if self._streaming:
            await self._stop_stream()
        await update_message(
            self.client,
            channel=self.channel,
            ts=self.ts,
            text=text,
            blocks=blocks,
            metrics=self.metrics,
            metadata=self._meta(0),
        )
        if self.first_visible_at is None:
            self.first_visible_at = time.monotonic()

    async def _first_post(self, ts: str, *, visible: bool = True) -> None:
        """The reply message exists; `visible`: it shows answer text (not only the work's steps)."""
        self.ts = ts
        if visible:
            self.first_visible_at = time.monotonic()
        if self.on_first_post:
            await self.on_first_post(ts)

    async def _stop_stream(self, *, blocks: list[dict] | None = None) -> bool:
        self._streaming = False
        if self.ts is None:
            return False
        if blocks is None:
            return await stop_stream(self.client, channel=self.channel, ts=self.ts, metadata=self._meta(0))
        try:
            await self.client.chat_stopStream(
                channel=self.channel, ts=self.ts, blocks=neutralise_blocks(blocks), metadata=self._meta(0)
            )
            return True
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            error = _error_code(exc) if isinstance(exc, SlackApiError) else type(exc).__name__
            log.info("stopStream refused", extra={"channel": self.channel, "error": error})
            return False

    async def _close_flusher(self) -> None:
        self._closed = True
        self._closed_event.set()
        self._dirty.set()
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
            self._flusher = None

    # -- the end -------------------------------------------------------------------------
    async def abandon(self) -> None:
        """Shutdown: stop at once, sending nothing more. Slack keeps what it shows (an open stream,
        a partial answer); the job's next run stops that stream and edits that message."""
        self._closed = True
        self._closed_event.set()
        self._step_chunks.clear()
        tasks = [t for t in (self._flusher, self._step_sender) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=0.5)

    async def finish(self, parts: list[tuple[str, list[dict]]]) -> list[str]:
        """Show the final answer: `parts` are (fallback text, blocks) per message. Returns their ts."""
        await self._close_flusher()
        async with self._lock:
            await self._flush_steps()
            return await self._finish(parts)

    async def _finish(self, parts: list[tuple[str, list[dict]]]) -> list[str]:
        first_text, first_blocks = parts[0]
        first_markdown = next((b["text"] for b in first_blocks if b.get("type") == "markdown"), None)
        if first_markdown is not None:
            first_markdown = neutralise_markdown(first_markdown)  # the stream's last delta goes out as is
        extra_blocks = [b for b in first_blocks if b.get("type") != "markdown"]
        done = False
        if (
            self.mode == "stream"
            and self._streaming
            and first_markdown is not None
            and first_markdown.startswith(self._shown)
        ):
            delta = first_markdown[len(self._shown) :]
            try:
                if delta:
                    await self.client.chat_appendStream(channel=self.channel, ts=self.ts, markdown_text=delta)
                self._shown = first_markdown
                done = await self._stop_stream(blocks=extra_blocks or None)
            except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
                error = _error_code(exc) if isinstance(exc, SlackApiError) else type(exc).__name__
                log.info("final append refused", extra={"channel": self.channel, "error": error})
        if not done:
            await self._put(text=first_text, blocks=first_blocks)
        if self.first_visible_at is None:  # a stream opened by the work's steps: the text shows now
            self.first_visible_at = time.monotonic()
        assert self.ts is not None
        out = [self.ts]
        for part, (text, blocks) in enumerate(parts[1:], start=1):
            out.append(
                await post_message(
                    self.client,
                    channel=self.channel,
                    text=text,
                    blocks=blocks,
                    thread_ts=self.thread_ts,
                    metrics=self.metrics,
                    metadata=self._meta(part),
                )
            )
        return out

    async def fail(self, text: str, blocks: list[dict]) -> str:
        """Replace whatever was shown with an explicit failure message; when the partial answer
        cannot be edited, post the failure after it (a partial answer never stands alone)."""
        await self._close_flusher()
        async with self._lock:
            await self._flush_steps()
            if self._streaming:
                await self._stop_stream()
            if self.ts is not None:
                try:
                    await update_message(
                        self.client,
                        channel=self.channel,
                        ts=self.ts,
                        text=text,
                        blocks=blocks,
                        metrics=self.metrics,
                        metadata=self._meta(0),
                    )
                    return self.ts
                except SlackPostError:
                    log.warning(
                        "could not edit the partial answer; posting the failure", extra={"channel": self.channel}
                    )
            ts = await post_message(
                self.client,
                channel=self.channel,
                text=text,
                blocks=blocks,
                thread_ts=self.thread_ts,
                metrics=self.metrics,
                metadata=self._meta(0 if self.ts is None else "failure"),
            )
            if self.ts is None:
                await self._first_post(ts)
            return ts
