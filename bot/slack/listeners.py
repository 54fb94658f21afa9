"""Listeners: check an event, dedupe it, persist a Job, ack. Nothing slow happens here.

Which messages become questions (`classify_message`):
- `app_mention` in a channel, and a `message` that mentions the bot (its twin): a mention.
- Any message in a DM with the bot.
- A reply in a thread the bot takes part in (`threads` table), without a mention.
Never: bots (our own echoes, other apps with `bot_id`, legacy `bot_message`), edits,
deletions and other subtypes, threads the bot never joined.

Deduplication is the store's unique `(channel, ts)`: the mention/message twins and Slack's
redeliveries insert one job. Every subscribed event has a listener, so each one is acked
(an event without a listener would be a 404 and Slack would redeliver it).

`QuestionIntake` does that work for message events, whichever way they come: Bolt's listeners
below (Socket Mode, and anything else Bolt dispatches), and the HTTP fast path in `bot/server.py`,
which takes signed `app_mention`/`message` events without Bolt's dispatch. Concurrent jobs are
committed together (`bot.store_async.GroupCommit`); a job is committed before its ack is sent.
What follows an ack (the 👀 reaction, waking a worker, the log line) waits in `AfterAcks` until a
burst's acks are written, so neither reactions.add calls nor starting jobs delay acking the next
mention. A worker may still claim a job before its 👀 is added (the idle poll, a worker done with
the previous job): the reaction is promised before the commit (`WorkingReactions`), and the job
removes it only once it has been added, so the 👀 never outlives the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import StoreUnavailable
from bot.slack.deps import Deps
from bot.slack.interactions import register_interactions
from bot.slack.post import PromisedReaction
from bot.store_async import GroupCommit

log = logging.getLogger(__name__)

ANSWERABLE_SUBTYPES = {None, "file_share", "thread_broadcast"}


@dataclass(frozen=True)
class Question:
    """A message that must be answered, parsed out of a raw event."""

    kind: str  # mention | dm | followup
    channel: str
    channel_type: str
    ts: str
    thread_ts: str
    user: str
    team: str | None
    text: str


def classify_message(
    event: dict[str, Any],
    *,
    bot_user_id: str | None,
    is_bot_thread: Callable[[str, str], bool],
    event_type: str,
) -> tuple[Question | None, str]:
    """Decide whether an event is a question for us; returns (question, reason when not)."""
    if event.get("bot_id") or event.get("subtype") == "bot_message" or event.get("bot_profile"):
        return None, "bot"
    if event.get("subtype") not in ANSWERABLE_SUBTYPES:
        return None, f"subtype:{event.get('subtype')}"
    if event.get("edited"):
        return None, "edited"
    user = event.get("user")
    channel = event.get("channel")
    ts = event.get("ts")
    if not user or not channel or not ts:
        return None, "incomplete"
    if user == bot_user_id:
        return None, "self"
    text = str(event.get("text") or "")
    thread_ts = str(event.get("thread_ts") or ts)
    # app_mention carries no channel_type: "unknown" until the job asks conversations.info, so a
    # private channel is never mistaken for a public one (the digest publishes public threads only).
    channel_type = str(event.get("channel_type") or ("im" if channel.startswith("D") else "unknown"))
    # The author's workspace: in a Slack Connect channel `user_team`, not the installing team; the
    # stream's recipient_team_id is defined as the recipient user's team.
    team = event.get("user_team") or event.get("team")
    mentioned = bool(bot_user_id) and f"<@{bot_user_id}" in text
    if channel_type == "im":
        kind = "dm"
    elif event_type == "app_mention" or mentioned:
        kind = "mention"
    elif event.get("thread_ts") and event.get("thread_ts") != ts and is_bot_thread(channel, thread_ts):
        kind = "followup"
    else:
        return None, "not_for_us"
    return (
        Question(
            kind=kind,
            channel=channel,
            channel_type=channel_type,
            ts=str(ts),
            thread_ts=thread_ts,
            user=str(user),
            team=str(team) if team else None,
            text=text,
        ),
        "",
    )


class AfterAcks:
    """Work that follows acks, run once a burst's acks are written.

    While a request is being acked (`acking()`), and for `quiet` seconds after the last ack, work
    handed to `later()` waits; then it all runs, in order. So 40 mentions at once are acked before
    the first of their jobs starts competing for the event loop (and, with searches in threads,
    for the GIL). Nothing waits longer than `longest` seconds, however busy the intake."""

    def __init__(self, *, quiet: float = 0.02, longest: float = 0.25) -> None:
        self.quiet = quiet
        self.longest = longest
        self.in_flight = 0
        self._last_ack = 0.0
        self._queue: list[Callable[[], None]] = []
        self._first_queued = 0.0
        self._timer: asyncio.TimerHandle | None = None

    @contextlib.contextmanager
    def acking(self) -> Iterator[None]:
        """Around one request, from its arrival until its ack is written."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._last_ack = asyncio.get_running_loop().time()

    def later(self, work: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        if not self._queue:
            self._first_queued = loop.time()
        self._queue.append(work)
        if self._timer is None:
            self._timer = loop.call_later(self.quiet, self._run)

    def _run(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        busy = self.in_flight > 0 or now - self._last_ack < self.quiet
        if busy and now - self._first_queued < self.longest:
            self._timer = loop.call_later(self.quiet, self._run)
            return
        queue, self._queue = self._queue, []
        for work in queue:
            try:
                work()
            except Exception:  # one failed follow-up never stops the others
                log.exception("work after an ack failed")


@dataclass(frozen=True)
class Taken:
    """A question the intake stored (`job_id`), or found already stored (`job_id` None: a duplicate)."""

    question: Question
    job_id: int | None
    reaction: PromisedReaction | None = None  # the 👀 to add after the ack (a new job only)


class QuestionIntake:
    """Message events → durable jobs: classify, dedupe on `(channel, ts)`, commit, then (after the
    ack) show 👀 and wake a worker. One per process, shared by both ways events come in."""

    def __init__(self, deps: Deps, *, bot_user_id: str | None = None) -> None:
        self.deps = deps
        self.bot_user_id = bot_user_id  # the runtime's auth.test; Bolt's listeners pass their context's
        self.store = deps.store.quick  # the ack path: a locked or lost database is refused fast (503)
        self.commits = GroupCommit(self.store)
        self.after = AfterAcks()
        self._tasks: set[asyncio.Task[None]] = set()

    async def take(
        self,
        body: dict[str, Any],
        event: dict[str, Any],
        *,
        event_type: str,
        bot_user_id: str | None,
        team_id: str | None,
    ) -> Taken | None:
        """The stored question, or None when the event is not one for us (counted). Raises
        `StoreUnavailable` when the job cannot be committed: refuse the event (503), Slack redelivers."""
        metrics = self.deps.metrics
        in_bot_thread = await self._in_bot_thread(event)
        question, reason = classify_message(
            event,
            bot_user_id=bot_user_id or self.bot_user_id,
            is_bot_thread=lambda _channel, _thread: in_bot_thread,
            event_type=event_type,
        )
        if question is None:
            metrics.events_ignored.labels(reason.split(":")[0]).inc()
            return None
        if question.team is None and team_id:
            question = replace(question, team=team_id)
        # Promised before the commit: a worker may claim the job as soon as it is committed.
        reaction = self.deps.reactions.expect(question.channel, question.ts)
        try:
            job_id = await self.commits.enqueue(
                kind=question.kind,
                channel=question.channel,
                ts=question.ts,
                thread_ts=question.thread_ts,
                user=question.user,
                text=question.text,
                channel_type=question.channel_type,
                team=question.team,
                event_id=body.get("event_id"),
            )
        except BaseException:
            self.deps.reactions.drop(reaction)
            raise
        if job_id is None:
            self.deps.reactions.drop(reaction)
            metrics.events_ignored.labels("duplicate").inc()
            return Taken(question, None)
        metrics.queue_depth.inc()
        return Taken(question, job_id, reaction)

    async def _in_bot_thread(self, event: dict[str, Any]) -> bool:
        """Looked up before classifying (the store is async; the rules stay a pure function)."""
        thread_ts, ts, channel = event.get("thread_ts"), event.get("ts"), event.get("channel")
        if not thread_ts or thread_ts == ts or not isinstance(channel, str) or event.get("bot_id"):
            return False
        return bool(await self.store.is_bot_thread(channel, str(thread_ts)))

    def acked(self, taken: Taken | None, client: AsyncWebClient) -> None:
        """Call once the ack is sent (or on its way): the rest waits for the burst's acks."""
        if taken is not None:
            self.after.later(lambda: self._follow_up(taken, client))

    async def close(self, timeout: float = 0.5) -> None:
        """Shutdown: the 👀 adds still on their way are dropped (the jobs are queued; their next run adds it)."""
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def _follow_up(self, taken: Taken, client: AsyncWebClient) -> None:
        question = taken.question
        if taken.job_id is None or taken.reaction is None:
            log.info("duplicate question ignored", extra={"channel": question.channel, "ts": question.ts})
            return
        # The visible sign of work, at once even when the job waits for a free worker (unless the
        # job has already ended: then it is not added).
        task = asyncio.create_task(self.deps.reactions.add(client, taken.reaction))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info(
            "job queued",
            extra={
                "job_id": taken.job_id,
                "kind": question.kind,
                "channel": question.channel,
                "thread_ts": question.thread_ts,
            },
        )
        self.deps.wake.set()


def register_listeners(app: AsyncApp, deps: Deps, intake: QuestionIntake | None = None) -> None:
    """Every listener archbot has, for both transports."""
    intake = intake or QuestionIntake(deps)

    @app.middleware
    async def gate_shutdown(req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]):
        # The ack is timed outside Bolt (bot/server.py, bot/slack/intake.py): a global middleware's
        # next() returns before the listener has run.
        body = req.body  # counted and shape-checked before dispatch (bot/slack/intake.py)
        if not deps.accepting and body.get("type") == "event_callback":
            # Shutting down: refuse, so Slack redelivers the event to the next process.
            return BoltResponse(status=503, body="shutting down")
        return await next()

    async def handle(
        body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext, event_type: str, client: AsyncWebClient
    ) -> BoltResponse | None:
        """Classify and enqueue. Returns a 503 response (Bolt sends it instead of the ack) when the
        store cannot take the job: no ack, so Slack redelivers it and nothing acked is lost."""
        try:
            taken = await intake.take(
                body, event, event_type=event_type, bot_user_id=context.bot_user_id, team_id=context.team_id
            )
        except StoreUnavailable as exc:
            refuse(deps, exc)
            return BoltResponse(status=503, body="database unavailable")
        # Bolt sends the ack when this returns; the follow-up waits for the burst's acks anyway.
        intake.acked(taken, client)
        return None

    @app.event("app_mention")
    async def on_mention(
        body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient
    ) -> BoltResponse | None:
        return await handle(body, event, context, "app_mention", client)

    @app.event("message")
    async def on_message(
        body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient
    ) -> BoltResponse | None:
        return await handle(body, event, context, "message", client)

    # app_home_opened: the Home tab, or (tab == "messages") the DM with archbot opened, which is
    # how the agent messaging experience (manifest `agent_view`) starts a conversation. The
    # listener only starts the work and returns, so the ack never waits on Slack calls.
    home_tasks: set[asyncio.Task[None]] = set()

    @app.event("app_home_opened")
    async def on_home_opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        task = asyncio.create_task(on_home(event, client))
        home_tasks.add(task)
        task.add_done_callback(home_tasks.discard)

    async def on_home(event: dict[str, Any], client: AsyncWebClient) -> None:
        tab = event.get("tab")
        try:
            if tab == "messages":
                from bot.slack.assistant import offer_prompts

                await offer_prompts(
                    client,
                    channel=str(event.get("channel") or ""),
                    thread_ts=None,
                    searcher=deps.searcher,
                    lang=deps.settings.language,
                )
                return
            if tab not in (None, "home"):
                return
            from bot.slack.home import publish_home
            from bot.stats import local_index_summary

            sync_store = deps.store.sync
            info = await asyncio.to_thread(local_index_summary, deps.settings, sync_store)
            await publish_home(client, user_id=event["user"], settings=deps.settings, store=sync_store, index_info=info)
        except Exception:  # cosmetic surface: log, never raise
            log.warning("app home publish failed", exc_info=True)

    # The older assistant side panel (manifest `assistant_view`): still served for apps installed
    # from an older manifest.
    @app.event("assistant_thread_started")
    async def on_assistant_thread(event: dict[str, Any], client: AsyncWebClient) -> None:
        thread = event.get("assistant_thread") or {}
        try:
            from bot.slack.assistant import on_assistant_thread_started

            await on_assistant_thread_started(
                client,
                channel=thread.get("channel_id", ""),
                thread_ts=thread.get("thread_ts", ""),
                settings=deps.settings,
                searcher=deps.searcher,
            )
        except Exception:
            log.warning("assistant thread start failed", exc_info=True)

    @app.event("assistant_thread_context_changed")
    async def on_assistant_context(event: dict[str, Any]) -> None:
        return None

    register_interactions(app, deps)


def refuse(deps: Deps, exc: StoreUnavailable) -> None:
    """Count and log an event refused because the database cannot take it."""
    deps.metrics.events_refused.inc()
    log.warning("database unavailable: event refused (503), Slack will redeliver", extra={"error": str(exc)})
