"""The worker pool: claim a Job from the store, run the pipeline, end the job exactly once.

    job → context (thread turns) → retrieval (hits) → model (Answer) → render → post → store

Guarantees:
- At most `ARCHBOT_CONCURRENCY` jobs run at once (one model call each).
- A job ends once: with an answer in its thread, or an explicit failure message there.
  A model failure (after the client's bounded retries) becomes a friendly message; any
  other exception too; nothing escapes a worker.
- A job interrupted by a crash is claimed again (orphan recovery at start, or its lease
  expiring); its reply message, if it had one, is edited rather than posted twice.
- On shutdown, running jobs get `shutdown_grace` seconds to finish; the rest are cancelled
  and put back in the queue (their lease released) for another replica or the next start. A
  cancelled job makes no more Slack calls: its 👀, its open stream and its partial reply stay as
  they are, and its next run (`Job.resumed`) stops that stream and edits that reply. So `stop()`
  takes the grace plus about a second, however Slack behaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.errors import ModelError, SlackPostError, StoreUnavailable
from bot.i18n import Lang, detect_language, t, turns_language
from bot.metrics import Metrics
from bot.proposals import resolve_proposal
from bot.slack import render
from bot.slack.assistant import set_status
from bot.slack.context import (
    BotIdentity,
    ChannelKinds,
    NameResolver,
    build_turns,
    clean_text,
    fetch_replies,
)
from bot.slack.neutralise import mention_channel
from bot.slack.post import (
    WORKING_REACTION,
    ReplyPoster,
    WorkingReactions,
    add_reaction,
    post_ephemeral,
    post_message,
    send_response_url,
    stop_stream,
    update_message,
)
from bot.slack.retry import find_own_message, message_metadata
from bot.store import MAX_ATTEMPTS, Store
from bot.store_async import AsyncStore
from bot.types import Answer, Hit, Job, Turn

if TYPE_CHECKING:
    from bot.architect.limit import AdaptiveLimit, Reservation

log = logging.getLogger(__name__)
T = TypeVar("T")

LEASE_SECONDS = 120.0
HEARTBEAT_SECONDS = 30.0
CANCEL_SECONDS = 1.0  # a job cancelled at shutdown unwinds within this (it makes no Slack calls)
REQUEUE_SECONDS = 2.0  # re-queueing at shutdown, at most (else the lease or orphan recovery does it)
IDLE_POLL_SECONDS = 2.0  # one worker per replica looks this often (jobs whose lease expired, other replicas' jobs)
HELP_TEXT = t("help.text")
FOLLOW_UP_CHARS = 60  # a question shorter than this, in a thread, is searched with the thread's opening one


class WorkSignal:
    """Tells idle workers a job is queued. Each `set()` wakes one waiting worker (a semaphore, not an
    event): a burst of 40 mentions costs 40 claims, not 40 × every idle worker."""

    def __init__(self) -> None:
        self._sem = asyncio.Semaphore(0)
        self.pending = 0  # signals no worker has taken yet (about that many jobs wait for a claim)

    def set(self, times: int = 1) -> None:
        self.pending += times
        for _ in range(times):
            self._sem.release()

    async def wait(self, timeout: float | None) -> bool:
        """True when signalled, False after `timeout` seconds (None: only a signal ends the wait)."""
        try:
            await asyncio.wait_for(self._sem.acquire(), timeout=timeout)
        except TimeoutError:
            return False
        self.pending = max(0, self.pending - 1)
        return True


class Heartbeat:
    """This process's heartbeat, from its own thread and database connection: a busy event loop or
    a long queue of store calls never makes a live replica look dead to the others."""

    def __init__(self, store: Store, *, owner: str, interval: float) -> None:
        self.store = store
        self.owner = owner
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="archbot-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.interval):
            try:
                self.store.beat(self.owner)
                failing = False
            except Exception as exc:  # say it once per spell; the next beat tries again
                if not failing:
                    log.warning("heartbeat failed", extra={"error": type(exc).__name__})
                failing = True

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout)
        if self._thread.is_alive():  # a beat stuck on the database: the daemon thread ends with the process
            return
        with contextlib.suppress(Exception):
            self.store.close()


class Searcher(Protocol):
    def context(self, query: str, budget_tokens: int | None = None) -> list[Hit]: ...


class Responder(Protocol):
    async def respond(
        self,
        *,
        turns: list[Turn],
        hits: list[Hit],
        on_text: Callable[[str], Awaitable[None]] | None = None,
        mode: Literal["chat", "review"] = "chat",
    ) -> Answer: ...


def process_owner() -> str:
    """An id for this process: host, pid and a random part (pids repeat across restarts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str) -> bool:
    """Whether the process that owned a job is gone (only judged for this host)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another host: wait for its lease to expire
    pid = int(pid_text)
    if pid == os.getpid():
        return True  # the same pid with another id: we are its restart
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def shutting_down() -> bool:
    """Whether the running task is being cancelled (a job cancelled by `JobRunner.stop`)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def to_the_end(work: Awaitable[T]) -> T:
    """Await `work` to its end even when the task is cancelled meanwhile, then re-raise the
    cancellation: what Slack already shows is recorded (a few store writes), not run again.
    `JobRunner.stop` waits CANCEL_SECONDS for it before it re-queues what is left."""
    future = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if not future.done():
            with contextlib.suppress(Exception):
                await future
        raise


def build_search_query(turns: list[Turn], question: str) -> str:
    """What to search for: the question, plus the thread's opening question for short follow-ups."""
    if len(question) >= FOLLOW_UP_CHARS or len(turns) < 2:
        return question
    opening = next((t.text for t in turns if t.role == "user"), "")
    opening = opening.split(": ", 1)[-1][:300]
    return f"{opening} {question}" if opening and opening not in question else question


class JobRunner:
    """Runs jobs from the store with bounded concurrency until told to stop."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: AsyncStore,
        client: AsyncWebClient,
        metrics: Metrics,
        searcher: Searcher | None,
        responder: Responder | None,
        wake: WorkSignal,
        bot: BotIdentity | None = None,
        reactions: WorkingReactions | None = None,
        model_limit: AdaptiveLimit | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.metrics = metrics
        self.searcher = searcher
        self.responder = responder
        self.wake = wake
        self.bot = bot
        self.reactions = reactions or WorkingReactions()  # the intake's, when it runs in this process
        # Each job keeps a model slot for its answer from its start until the answer is asked for,
        # so the optional rewrites a burst starts early never take the slots its answers need.
        self.model_limit = model_limit
        if model_limit is not None:
            model_limit.expected = lambda: self.wake.pending
        self._reservations: dict[int, Reservation] = {}
        self.owner = process_owner()
        self.names = NameResolver(client, store)
        self.channel_kinds = ChannelKinds(client)
        self.running: dict[int, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._replica: asyncio.Task[None] | None = None
        self._heart: Heartbeat | None = None

    @property
    def alive(self) -> bool:
        return bool(self._workers) and not self._stopping.is_set() and any(not w.done() for w in self._workers)

    async def start(self) -> None:
        if self.bot is None:
            auth = await self.client.auth_test()
            self.bot = BotIdentity(user_id=str(auth["user_id"]), bot_id=auth.get("bot_id"))
        await self.store.beat(self.owner)
        self._heart = Heartbeat(self.store.sync.sibling(), owner=self.owner, interval=self.settings.heartbeat_seconds)
        self._heart.start()
        await self._recover_orphans()
        self.metrics.queue_depth.set(await self.store.queue_depth())
        self._workers = [
            asyncio.create_task(self._worker(i), name=f"worker-{i}") for i in range(self.settings.concurrency)
        ]
        self._replica = asyncio.create_task(self._replica_loop(), name="replica-heartbeat")

    async def _recover_orphans(self) -> int:
        """Re-queue running jobs whose owner is dead: a process of this host that is gone, or any
        replica whose heartbeat stopped (three missed beats), without waiting out their leases."""
        timeout = 3 * self.settings.heartbeat_seconds
        stale = {o for o, age in (await self.store.replica_ages()).items() if o != self.owner and age > timeout}

        def is_dead(owner: str) -> bool:
            return owner in stale or owner_is_dead(owner)

        recovered = await self.store.recover_orphans(owner=self.owner, is_dead=is_dead)
        if recovered:
            log.info("resuming jobs of a process that died", extra={"jobs": recovered})
            self.wake.set(recovered)
        return recovered

    async def _replica_loop(self) -> None:
        """Pick up the jobs of replicas that stopped beating (this one beats from its own thread)."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.settings.heartbeat_seconds)
            if self._stopping.is_set():
                return
            try:
                await self._recover_orphans()
            except Exception:  # the database may be away for a moment: look again next time
                log.warning("orphan recovery failed", exc_info=True)

    async def stop(self, grace: float) -> None:
        """Stop claiming; let running jobs finish for `grace` seconds; cancel the rest and put them
        back in the queue. Returns within `grace` + CANCEL_SECONDS + REQUEUE_SECONDS + 1 s."""
        self._stopping.set()
        self.wake.set(len(self._workers))
        running = dict(self.running)
        pending: set[asyncio.Task[None]] = set()
        if running:
            _done, pending = await asyncio.wait(running.values(), timeout=grace)
        if pending:
            for task in pending:
                task.cancel()
            # Cancelled jobs unwind without Slack calls; re-queued only then, so nothing they still
            # write lands after the re-queue.
            await asyncio.wait(pending, timeout=CANCEL_SECONDS)
            left = [job_id for job_id, task in running.items() if task in pending]
            await self._requeue(left)
        if self._heart is not None:
            await asyncio.to_thread(self._heart.stop)
        others = [*self._workers, *([self._replica] if self._replica else [])]
        for w in others:
            w.cancel()
        await asyncio.wait(others, timeout=CANCEL_SECONDS) if others else None

    async def _requeue(self, job_ids: list[int]) -> None:
        """Put this process's unfinished jobs back in the queue, within REQUEUE_SECONDS; whatever is
        not re-queued by then is resumed when its lease expires (or at this host's next start)."""

        async def one(job_id: int) -> None:
            try:
                if await self.store.requeue_job(job_id, owner=self.owner):
                    log.info("job re-queued at shutdown", extra={"job_id": job_id})
            except Exception as exc:
                log.warning("could not re-queue a job at shutdown", extra={"job_id": job_id, "error": str(exc)[:200]})

        tasks = [asyncio.create_task(one(job_id)) for job_id in job_ids]
        _done, late = await asyncio.wait(tasks, timeout=REQUEUE_SECONDS) if tasks else (set(), set())
        if late:
            log.warning("re-queueing at shutdown timed out; the lease will expire instead", extra={"jobs": len(late)})

    async def _worker(self, index: int) -> None:
        while not self._stopping.is_set():
            try:
                # One try: a locked database is looked at again at the next poll, not waited on.
                job = await self.store.budgeted(0).claim_job(owner=self.owner, lease_seconds=LEASE_SECONDS)
            except StoreUnavailable:
                job = None
            except Exception:
                log.exception("claiming a job failed")
                job = None
            if job is None:
                # Only the first worker looks periodically (jobs whose lease expired, jobs another
                # replica queued): idle, a replica makes one claim query every IDLE_POLL_SECONDS, not
                # one per worker. The others sleep until a job is queued here or found by a look.
                await self.wake.wait(IDLE_POLL_SECONDS if index == 0 else None)
                continue
            self.wake.set()  # there may be more where this one came from: one more idle worker looks
            task = asyncio.create_task(self.run_job(job), name=f"job-{job.id}")
            self.running[job.id] = task
            self.metrics.workers_busy.inc()
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if self._stopping.is_set():
                    return
                raise
            except Exception:  # run_job handles its own errors; this is the last stop
                log.exception("job crashed", extra={"job_id": job.id})
            finally:
                self.running.pop(job.id, None)
                self.metrics.workers_busy.dec()
                with contextlib.suppress(Exception):
                    self.metrics.queue_depth.set(await self.store.queue_depth())

    async def _heartbeat(self, job: Job) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self.store.extend_lease(job.id, lease_seconds=LEASE_SECONDS)
            except Exception:  # the next beat tries again; the lease outlives a few misses
                log.warning("lease extension failed", extra={"job_id": job.id}, exc_info=True)

    # -- one job -------------------------------------------------------------------------
    async def run_job(self, job: Job) -> None:
        extra = {"job_id": job.id, "channel": job.channel, "thread_ts": job.thread_ts, "kind": job.kind}
        log.info("job started", extra={**extra, "attempt": job.attempts})
        started = time.monotonic()
        if job.attempts > MAX_ATTEMPTS:
            await self._give_up(job, extra)
            return
        heartbeat = asyncio.create_task(self._heartbeat(job))
        if self.model_limit is not None and self.responder is not None:
            self._reservations[job.id] = self.model_limit.reserve()
        try:
            await self._run(job, started, extra)
        except asyncio.CancelledError:
            raise  # shutdown: the job is re-queued by stop()
        except Exception as exc:
            if shutting_down():  # a failure while unwinding a cancelled job: it is re-queued, not failed
                raise asyncio.CancelledError from exc
            await self._failed(job, exc, extra)
        finally:
            heartbeat.cancel()
            self._release_slot(job)

    def _release_slot(self, job: Job) -> None:
        reservation = self._reservations.pop(job.id, None)
        if reservation is not None:
            reservation.release()

    async def _failed(self, job: Job, exc: Exception, extra: dict) -> None:
        if isinstance(exc, SlackPostError):
            log.warning("slack refused the answer", extra={**extra, "error": exc.error})
            if job.thread_ts:  # nothing was posted there: the thread is not one the bot takes part in
                await self.store.forget_thread(job.channel, job.thread_ts)
            await self._end(job, "failed", f"slack: {exc.error}", extra)
            return
        # Slack's own failures were already retried over ARCHBOT_SLACK_RETRY_SECONDS by the client.
        log.error("job failed", extra=extra, exc_info=exc)
        await self._post_failure(job, internal=True, extra=extra)
        await self._end(job, "failed", type(exc).__name__, extra)

    async def _give_up(self, job: Job, extra: dict) -> None:
        """A poison job: claimed more than MAX_ATTEMPTS times (each run died with its process).
        It ends with the failure message, replacing any partial answer, and is never run again."""
        log.warning("job claimed too often; giving up", extra={**extra, "attempt": job.attempts})
        if job.reply_ts:
            await stop_stream(self.client, channel=job.channel, ts=job.reply_ts, metadata=message_metadata(job.id))
        await self._post_failure(job, internal=True, extra=extra)
        if job.kind != "review":
            await self.reactions.remove(self.client, channel=job.channel, ts=job.ts)
        await self._end(job, "failed", f"poison: claimed {job.attempts} times", extra)

    async def _end(self, job: Job, state: str, error: str | None, extra: dict) -> None:
        if await self.store.finish_job(job.id, state=state, error=error):
            self.metrics.jobs.labels(state if state != "done" else "answered").inc()
            log.info("job ended", extra={**extra, "state": state})

    async def _run(self, job: Job, started: float, extra: dict) -> None:
        assert self.bot is not None
        question = clean_text(job.text, bot_user_id=self.bot.user_id)
        if job.kind == "review":
            proposal = resolve_proposal(self.settings, question)
            if proposal.refused:  # a file that is not an indexed doc: nothing was read, nothing is posted
                lang = detect_language(question)
                await self._tell_requester_text(job, t("review.not_indexed", lang, path=proposal.title))
                await self._end(job, "done", None, extra)
                return
            question = job.text = proposal.text
            job = await self._open_review_thread(job, extra)
            if job is None:
                return
        lang = detect_language(question)
        if not question:  # a bare mention: the help text, and the 👀 goes away like after any answer
            try:
                await post_message(
                    self.client,
                    channel=job.channel,
                    text=t("help.text", lang),
                    thread_ts=job.thread_ts,
                    metrics=self.metrics,
                    metadata=message_metadata(job.id),
                )
            finally:
                if job.kind != "review" and not shutting_down():
                    await self.reactions.remove(self.client, channel=job.channel, ts=job.ts)
            await to_the_end(self._end(job, "done", None, extra))
            return
        # The model rewrite of the search query goes out now, beside the work before the search
        # (reading the thread, Slack calls), when the query does not depend on the thread.
        early_query = question if self._query_known_early(job, question) else None
        if early_query is not None:
            self._start_rewrite(early_query)
        typing: asyncio.Task[None] | None = None
        if job.channel_type in ("unknown", "command"):
            if job.channel.startswith("D"):
                await self._resolve_channel_type(job)
            else:  # not a DM, whichever kind it is: nothing before the answer depends on it
                typing = asyncio.create_task(self._resolve_channel_type(job), name=f"channel-type-{job.id}")
        if job.kind != "review" and job.resumed:
            # The listener added it at enqueue; a resumed job (after a crash) may have lost it.
            await add_reaction(self.client, channel=job.channel, ts=job.ts, name=WORKING_REACTION)
        if job.resumed and not job.reply_ts:
            # Resumed: the crash may have come between Slack posting the reply and its ts being stored.
            job.reply_ts = await self._find_own(job, thread_ts=job.thread_ts, part=0)
            if job.reply_ts:
                await self.store.set_reply_ts(job.id, job.reply_ts)
        if job.reply_ts and job.resumed:
            # Resumed after a crash or a shutdown mid-answer: a stream left open would keep its partial text "live".
            await stop_stream(self.client, channel=job.channel, ts=job.reply_ts, metadata=message_metadata(job.id))
        if job.channel_type == "im":
            await set_status(
                self.client, channel=job.channel, thread_ts=job.thread_ts, status=t("assistant.thinking", lang)
            )
        poster: ReplyPoster | None = None
        try:
            poster = self._poster(job)
            # While the answer is prepared, a streamed reply shows the steps (a plan of tasks).
            await poster.step("thread", t("steps.thread", lang), "in_progress")
            turns = await self._turns(job, question)
            lang = turns_language(turns, default=lang)  # a short follow-up takes the thread's language
            await poster.step("thread", t("steps.thread", lang), "complete")
            await poster.step("search", t("steps.search", lang), "in_progress")
            query = build_search_query(turns, question)
            if query != early_query:
                self._start_rewrite(query)
            hits = await self._search(query)
            found = t("steps.found", lang, passages=len(hits), files=len({(h.source, h.path) for h in hits}))
            await poster.step("search", t("steps.search", lang), "complete", output=found)
            await poster.step("write", t("steps.write", lang), "in_progress")
            try:
                answer = await self._answer(job, turns, hits, question, poster, lang)
            except ModelError as exc:
                log.warning("model failed", extra={**extra, "status": exc.status})
                ts = await poster.fail(*render.build_failure_message(lang=lang))
                status = exc.status

                async def record_failure() -> None:
                    await self.store.record_answer(
                        job=job,
                        channel=job.channel,
                        thread_ts=job.thread_ts,
                        message_ts=ts,
                        question=question,
                        answer=Answer(kind="failure", text=t("failure.model", lang)),
                        latency_ms=(time.monotonic() - started) * 1000,
                    )
                    await self._end(job, "failed", f"model: {status}", extra)

                await to_the_end(record_failure())
                return
            if typing is not None:  # long done by now: the answer is recorded with its channel's kind
                with contextlib.suppress(Exception):
                    await typing
            parts = render.build_message_parts(answer, lang=lang)
            await poster.step("write", t("steps.write", lang), "complete")
            try:
                message_ts = await poster.finish(parts)
            except (SlackPostError, SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
                if poster.ts is None:
                    raise  # nothing reached the thread (run_job reports it)
                # The answer could not be shown in full: the partial one never stays as if it were the answer.
                log.warning("could not finish the answer", extra={**extra, "error": type(exc).__name__})
                with contextlib.suppress(Exception):
                    await poster.fail(*render.build_failure_message(internal=True, lang=lang))
                error = f"slack: {getattr(exc, 'error', None) or type(exc).__name__}"
                await to_the_end(self._end(job, "failed", error, extra))
                return
            # The answer is in the thread: recorded and ended even if shutdown cancels the job now.
            await to_the_end(self._record(job, question, answer, message_ts[-1], poster, started, extra))
        except Exception:
            if poster is not None and not shutting_down():
                # The stream its steps opened is known (stored) before a failure is shown.
                await poster.settle()
            raise
        finally:
            if shutting_down():
                # Cancelled at shutdown: re-queued as it stands. No Slack call here (Slack may be the
                # reason it did not finish); the 👀 stays, and the next run takes the reply over.
                if typing is not None:
                    typing.cancel()
                if poster is not None:
                    await poster.abandon()
            else:
                await self._tidy(job, typing)

    async def _tidy(self, job: Job, typing: asyncio.Task[None] | None) -> None:
        """After the job's end: the 👀 comes off, a DM's "thinking" status is cleared."""
        if typing is not None:
            with contextlib.suppress(Exception):
                await typing
        if job.kind != "review":
            await self.reactions.remove(self.client, channel=job.channel, ts=job.ts)
        if job.channel_type == "im":
            await set_status(self.client, channel=job.channel, thread_ts=job.thread_ts, status="")

    async def _record(
        self, job: Job, question: str, answer: Answer, message_ts: str, poster: ReplyPoster, started: float, extra: dict
    ) -> None:
        first_text_ms = (poster.first_visible_at - started) * 1000 if poster.first_visible_at is not None else None
        if first_text_ms is not None:
            self.metrics.first_text_seconds.observe(first_text_ms / 1000)
        await self.store.record_answer(
            job=job,
            channel=job.channel,
            thread_ts=job.thread_ts,
            message_ts=message_ts,
            question=question,
            answer=answer,
            latency_ms=(time.monotonic() - started) * 1000,
            first_text_ms=first_text_ms,
        )
        for kind, n in (
            ("input", answer.usage.input_tokens),
            ("output", answer.usage.output_tokens),
            ("cache_read", answer.usage.cache_read_input_tokens),
            ("cache_creation", answer.usage.cache_creation_input_tokens),
        ):
            if n:
                self.metrics.tokens.labels(kind).inc(n)
        await self._end(job, "done", None, extra)

    def _poster(self, job: Job) -> ReplyPoster:
        async def remember(ts: str) -> None:
            await self.store.set_reply_ts(job.id, ts)

        outside_dm = job.channel_type != "im"
        return ReplyPoster(
            self.client,
            channel=job.channel,
            thread_ts=job.thread_ts,
            mode=self.settings.stream_mode,
            recipient_user_id=job.user if outside_dm else None,
            recipient_team_id=job.team if outside_dm else None,
            existing_ts=job.reply_ts,
            on_first_post=remember,
            metrics=self.metrics,
            job_id=job.id,
        )

    async def _turns(self, job: Job, question: str) -> list[Turn]:
        assert self.bot is not None
        messages: list[dict] = []
        if job.thread_ts != job.ts and job.kind != "review":  # a review reads the proposal alone
            try:
                messages = await fetch_replies(self.client, channel=job.channel, thread_ts=job.thread_ts)
            except SlackApiError as exc:
                log.warning(
                    "thread history unavailable; answering the message alone",
                    extra={"job_id": job.id, "error": exc.response.get("error")},
                )
        return await build_turns(
            messages,
            bot=self.bot,
            names=self.names,
            budget_tokens=self.settings.context_tokens,
            question_ts=job.ts if job.kind != "review" else "9999999999.999999",
            question_text=job.text,
            question_user=job.user,
        )

    async def _resolve_channel_type(self, job: Job) -> None:
        """The job's channel kind (channel, group, im, mpim), from Slack, remembered in the store."""
        kind = job.channel_type = await self.channel_kinds.kind(job.channel)
        if kind in ("unknown", "command"):
            return
        try:
            await self.store.set_channel_type(job.id, kind)
        except Exception:  # the next attempt or follow-up asks again
            log.warning("could not store the channel type", extra={"job_id": job.id}, exc_info=True)

    @staticmethod
    def _query_known_early(job: Job, question: str) -> bool:
        """Whether the search query is the question itself whatever the thread says
        (`build_search_query`): a long question, a review, or a message that opens its thread."""
        return len(question) >= FOLLOW_UP_CHARS or job.kind == "review" or not job.thread_ts or job.thread_ts == job.ts

    def _start_rewrite(self, query: str) -> None:
        """Start the search's model rewrite ahead of the search (searchers without one: nothing)."""
        start = getattr(self.searcher, "start_rewrite", None)
        if not callable(start):
            return
        try:
            start(query)
        except Exception:  # an optimisation only: the search starts it itself
            log.warning("could not start the query rewrite early", exc_info=True)

    async def _search(self, query: str) -> list[Hit]:
        if self.searcher is None:
            return []
        try:
            return await asyncio.to_thread(self.searcher.context, query, self.settings.passage_tokens)
        except Exception:  # answering without passages beats not answering
            log.exception("search failed; answering without passages")
            return []

    async def _answer(
        self, job: Job, turns: list[Turn], hits: list[Hit], question: str, poster: ReplyPoster, lang: Lang
    ) -> Answer:
        if self.responder is None:
            from bot.architect import retrieval_only_answer

            return retrieval_only_answer(question, hits, lang=lang)
        model_started = time.monotonic()
        self._release_slot(job)  # the answer's request takes a slot of its own now
        try:
            return await self.responder.respond(
                turns=turns, hits=hits, on_text=poster.update, mode="review" if job.kind == "review" else "chat"
            )
        finally:
            self.metrics.model_seconds.observe(time.monotonic() - model_started)

    async def _open_review_thread(self, job: Job, extra: dict) -> Job | None:
        """A review starts its own thread: a parent message in the channel, the review under it."""
        if job.reply_ts or (job.thread_ts and job.thread_ts != job.ts):
            return job  # resumed: the thread already exists
        # Resumed after a crash that may have come right after the parent was posted: use that one.
        parent = await self._find_own(job, thread_ts=None, part="parent") if job.resumed else None
        proposal = clean_text(job.text, bot_user_id=self.bot.user_id if self.bot else None)
        lang = detect_language(proposal)
        text = render.build_review_parent_text(
            title=str(job.meta.get("title") or t("review.default_title", lang)),
            user=job.user,
            proposal=proposal,
            lang=lang,
        )
        try:
            parent = parent or await post_message(
                self.client,
                channel=job.channel,
                text=text,
                metrics=self.metrics,
                metadata=message_metadata(job.id, "parent"),
            )
        except SlackPostError as exc:
            await self._tell_requester(job, exc.error)
            await self._end(job, "failed", f"slack: {exc.error}", extra)
            return None
        await self.store.set_thread(job.id, parent)
        await self.store.add_thread(channel=job.channel, thread_ts=parent, channel_type="channel", started_by=job.user)
        job.thread_ts = parent
        return job

    async def _tell_requester(self, job: Job, error: str | None) -> None:
        """The bot cannot post in that channel: tell the requester privately, with the fix."""
        hint = t(
            "help.cannot_post",
            detect_language(job.text),
            channel=mention_channel(job.channel),
            error=f" (`{error}`)" if error else "",
        )
        await self._tell_requester_text(job, hint)

    async def _tell_requester_text(self, job: Job, hint: str) -> None:
        """A private line to the requester of a command: its response_url, an ephemeral, else a DM."""
        response_url = job.meta.get("response_url")
        if response_url and await send_response_url(str(response_url), text=hint):
            return
        if not job.user:
            return
        if await post_ephemeral(self.client, channel=job.channel, user=job.user, text=hint):
            return
        # Slack refuses ephemerals where the bot cannot see the channel (a private one): a DM then.
        with contextlib.suppress(SlackApiError, SlackPostError):
            dm = await self.client.conversations_open(users=job.user)
            await post_message(self.client, channel=str(dm["channel"]["id"]), text=hint, metrics=self.metrics)

    async def _post_failure(self, job: Job, *, internal: bool, extra: dict) -> None:
        text, blocks = render.build_failure_message(internal=internal, lang=detect_language(job.text))
        reply_ts = job.reply_ts or await self._reply_ts(job)
        try:
            if reply_ts:
                try:
                    await update_message(
                        self.client,
                        channel=job.channel,
                        ts=reply_ts,
                        text=text,
                        blocks=blocks,
                        metrics=self.metrics,
                        metadata=message_metadata(job.id),
                    )
                    return
                except SlackPostError:
                    log.warning("could not edit the partial answer; posting the failure after it", extra=extra)
            await post_message(
                self.client,
                channel=job.channel,
                text=text,
                blocks=blocks,
                thread_ts=job.thread_ts or None,
                metrics=self.metrics,
                metadata=message_metadata(job.id, "failure" if reply_ts else 0),
            )
        except Exception:
            log.exception("could not post the failure message", extra=extra)

    async def _find_own(self, job: Job, *, thread_ts: str | None, part: int | str) -> str | None:
        """This job's message `part` in Slack (found by its metadata), or None; never raises."""
        try:
            return await find_own_message(
                self.client, channel=job.channel, thread_ts=thread_ts, metadata=message_metadata(job.id, part)
            )
        except Exception as exc:
            log.info("could not look for an earlier reply", extra={"job_id": job.id, "error": type(exc).__name__})
            return None

    async def _reply_ts(self, job: Job) -> str | None:
        """The reply message recorded since the job was claimed (the claim's copy predates it)."""
        with contextlib.suppress(Exception):
            fresh = await self.store.get_job(job.id)
            return fresh.reply_ts if fresh else None
        return None
