"""`archbot run`: start every part, serve until SIGTERM/SIGINT, then drain and exit 0.

Start order: store → HTTP server (health, readiness, metrics; HTTP-mode events get 503 until
the end of start-up) → Slack `auth.test` → index (in the background; answers use whatever index
exists) → workers → HTTP-mode events → Socket Mode connection → digest scheduler and periodic
re-index, and the stored text's re-redaction when the credential detector is newer than the last
one that swept it.

An unreachable Slack at start (refused, timed out, 5xx, 429) is logged at once and tried again
with backoff (1 s doubling to 30 s, each try at most SLACK_PROBE_SECONDS) for
ARCHBOT_SLACK_START_SECONDS; meanwhile /healthz answers and /readyz says `slack: false`. Then
`run` exits 1 with the last error. A token Slack refuses (invalid_auth, ...) exits 2 at once.
SIGTERM/SIGINT during start-up stops at once (exit 0); a second one while stopping exits at once
(exit 1): what was running is resumed from the store (orphan recovery, leases).

Stop order (SIGTERM): stop intake first (Socket Mode disconnects; HTTP events get 503 so
Slack redelivers them), give running jobs `ARCHBOT_SHUTDOWN_GRACE` seconds, cancel and re-queue
what is left (a cancelled job makes no Slack calls), close the rest, each step bounded: the whole
stop takes the grace plus about a second, at most STOP_MARGIN seconds more.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from aiohttp import web
from slack_sdk.errors import SlackApiError

from bot.config import Settings
from bot.errors import StoreUnavailable
from bot.jobs import JobRunner
from bot.logs import setup_logging
from bot.metrics import Metrics
from bot.server import EventsRoute, Readiness, build_web_app
from bot.slack.app import build_app, build_client
from bot.slack.context import BotIdentity
from bot.slack.deps import Deps
from bot.slack.retry import is_transient
from bot.store_async import BUSY_TIMEOUT, AsyncStore, open_store, sweep_stored_text

if TYPE_CHECKING:
    from bot.slack.listeners import QuestionIntake

log = logging.getLogger(__name__)
T = TypeVar("T")
SLACK_CHECK_SECONDS = 60.0
SLACK_PROBE_SECONDS = 10  # one auth.test at start or in the health watch, at most (no retry window)
SLACK_START_BACKOFF_MAX = 30.0
TOKEN_ERRORS = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"})
CLOSE_SECONDS = 1.0  # each closing step at shutdown (Socket Mode, the HTTP server, a client), at most
# What `Bot.stop` may take beyond ARCHBOT_SHUTDOWN_GRACE: the cancelled jobs' unwinding and re-queueing,
# then the closing steps (bot/jobs.py CANCEL_SECONDS, REQUEUE_SECONDS; CLOSE_SECONDS each).
STOP_MARGIN = 8.0


def run_bot(settings: Settings) -> int:
    setup_logging(level=settings.log_level, fmt=settings.log_format, secrets=settings.secrets())
    try:
        return asyncio.run(serve(settings))
    except KeyboardInterrupt:
        return 0


async def in_daemon_thread(fn: Callable[[], T]) -> T:
    """Run blocking work in a daemon thread: unlike `asyncio.to_thread`, shutdown never waits for it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def hand_over(settle: Callable[[], object]) -> None:
        # The loop may have closed while the work ran (shutdown does not wait): nobody awaits it then.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(lambda: future.done() or settle())

    def target() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the awaiting task
            error = exc
            hand_over(lambda: future.set_exception(error))
        else:
            hand_over(lambda: future.set_result(result))

    threading.Thread(target=target, daemon=True, name="archbot-index").start()
    return await future


async def _reindex_loop(settings: Settings, stop: asyncio.Event) -> None:
    from bot.retrieval import index_sources

    while not stop.is_set():
        try:
            report = await in_daemon_thread(lambda: index_sources(settings))
            log.info("index refreshed", extra={"report": str(report)})
        except Exception:
            log.exception("indexing failed; answering from the previous index")
        await _embed_outlines(settings)
        if settings.reindex_minutes <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.reindex_minutes * 60)


async def _embed_outlines(settings: Settings) -> None:
    """After an index run: embed the outlines that have no vector yet (dense.py; with the `dense` extra)."""
    if not settings.dense:
        return
    from bot.retrieval.dense import available, embed_missing

    if not available():
        return
    try:
        await in_daemon_thread(lambda: embed_missing(settings.db_path))
    except Exception:
        log.exception("embedding failed; documents without a vector are ranked lexically")


class SlackUnreachable(Exception):
    """Slack did not answer `auth.test` within ARCHBOT_SLACK_START_SECONDS."""

    def __init__(self, url: str, error: str, *, attempts: int, seconds: float) -> None:
        super().__init__(f"cannot reach Slack at {url}: {error} ({attempts} tries over {seconds:.0f} s)")
        self.url, self.error, self.attempts, self.seconds = url, error, attempts, seconds


class Bot:
    """Every running part of archbot, started and stopped in order. `serve()` wraps it for the CLI;
    tests drive it directly (it binds an ephemeral port when ARCHBOT_PORT is 0)."""

    def __init__(self, settings: Settings, *, responder: object | None = None) -> None:
        self.settings = settings
        self.stop_event = asyncio.Event()
        self.store = open_store(settings, busy_timeout=BUSY_TIMEOUT)  # blocking: tests and threads only
        self.astore = AsyncStore(self.store)  # what the event loop uses
        self.metrics = Metrics()
        self.deps = Deps(settings=settings, store=self.astore, metrics=self.metrics)
        self.client = build_client(settings)
        self.responder = responder
        self.port: int | None = None
        self.slack_ok = False  # auth.test answered (at start, then every SLACK_CHECK_SECONDS)
        self._probe = build_client(settings, timeout=SLACK_PROBE_SECONDS, retry=False)  # no retry window
        self.runner: JobRunner | None = None
        self.intake: QuestionIntake | None = None  # once started
        self._socket_handler: object | None = None
        self._web_runner: web.AppRunner | None = None
        signing = settings.slack_signing_secret
        self._events = None if settings.socket_mode else EventsRoute(signing.get_secret_value() if signing else "")
        self._background: list[asyncio.Task[None]] = []
        self.redaction_sweep: asyncio.Task[None] | None = None  # once started
        self._anthropic: object | None = None
        self._searcher: object | None = None
        self.model_limit: object | None = None  # bot.architect.limit.AdaptiveLimit, with a model

    async def start(self, *, index: bool = True) -> None:
        settings = self.settings
        # A job's search waits in its thread up to ARCHBOT_REWRITE_WAIT for the model's rewrite; with
        # the default executor's few threads (cores + 4) a burst's searches queued behind those waits
        # (40 at once: the last first words 8 s later). A thread per possible job: waiting is cheap.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=settings.concurrency + 4, thread_name_prefix="archbot-io")
        )
        # One HTTP session for every Slack call of this process (keep-alive connections).
        self.client.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=300), timeout=aiohttp.ClientTimeout(total=30)
        )
        await self._serve_http()  # health and readiness answer while Slack is waited for
        auth = await self._reach_slack()
        self.slack_ok = True
        bot = BotIdentity(user_id=str(auth["user_id"]), bot_id=auth.get("bot_id"))

        from bot.redaction import warm_up
        from bot.retrieval import build_searcher

        warm_up()  # the credential detector loads now, not during the first question's ack
        searcher = build_searcher(settings)
        if settings.search_workers > 0:
            from bot.retrieval.pool import PooledSearcher

            searcher = PooledSearcher(searcher, workers=settings.search_workers)  # type: ignore[assignment]
        self._searcher = searcher
        self.deps.searcher = searcher
        if self.responder is None and settings.has_model:
            from bot.architect import Architect, build_anthropic_client, check_model
            from bot.architect.limit import AdaptiveLimit

            counted = [0]

            def show(limit: AdaptiveLimit) -> None:
                self.metrics.model_limit.set(limit.allowed)
                self.metrics.model_in_flight.set(limit.in_flight)
                if limit.overloads > counted[0]:
                    self.metrics.model_overloads.inc(limit.overloads - counted[0])
                    counted[0] = limit.overloads

            self.model_limit = AdaptiveLimit(settings.concurrency, on_change=show)
            show(self.model_limit)
            anthropic_client = build_anthropic_client(settings, limit=self.model_limit)
            self._anthropic = anthropic_client
            # The query rewrite goes through the same client, hence the same limit, as the answers.
            from bot.retrieval.rewrite import ModelRewriter

            rewriter = getattr(searcher, "rewriter", None)
            if isinstance(rewriter, ModelRewriter):
                rewriter.share(anthropic_client, asyncio.get_running_loop(), slot_wait=settings.rewrite_wait)
            self.responder = Architect(settings, client=anthropic_client)
            try:
                ok, message = await check_model(settings, anthropic_client)
                (log.info if ok else log.error)(message, extra={"model": settings.model})
            except Exception:
                log.warning("could not check the model id", exc_info=True)

        from bot.slack.listeners import QuestionIntake

        intake = self.intake = QuestionIntake(self.deps, bot_user_id=bot.user_id)
        app = build_app(self.deps, self.client, intake)
        self.runner = JobRunner(
            settings=settings,
            store=self.astore,
            client=self.client,
            metrics=self.metrics,
            searcher=searcher,
            responder=self.responder,
            wake=self.deps.wake,
            reactions=self.deps.reactions,
            bot=bot,  # type: ignore[arg-type]
            model_limit=self.model_limit,  # type: ignore[arg-type]
        )
        await self.runner.start()

        if self._events is not None:
            self._events.bind(app, intake)  # HTTP-mode events are taken from now on
        log.info(
            "archbot running",
            extra={"mode": "socket" if settings.socket_mode else "http", "port": self.port, "bot_user": bot.user_id},
        )

        if settings.socket_mode:
            from bot.slack.intake import ScreenedSocketModeHandler

            assert settings.slack_app_token is not None
            handler = ScreenedSocketModeHandler(
                app, settings.slack_app_token.get_secret_value(), metrics=self.metrics, after=intake.after
            )
            await handler.connect_async()
            self._socket_handler = handler

        self._background.append(asyncio.create_task(self._watch_slack(), name="slack-health"))
        # Rows stored before this credential detector existed are redacted again (once per detector
        # version, in steps on the store's thread: bot/store.py, "stored text swept again").
        self.redaction_sweep = asyncio.create_task(sweep_stored_text(self.astore), name="redaction-sweep")
        self._background.append(self.redaction_sweep)
        if index:
            self._background.append(asyncio.create_task(_reindex_loop(settings, self.stop_event), name="reindex"))
        if settings.digest_channel:
            from bot.schedule import DigestScheduler

            scheduler = DigestScheduler(settings, self.store, self.client, self._anthropic)
            self._background.append(asyncio.create_task(scheduler.run(self.stop_event), name="digest"))

    async def _serve_http(self) -> None:
        """Bind ARCHBOT_PORT: /healthz, /readyz (not ready until start-up is done), /metrics and, in
        HTTP mode, /slack/events (503 until `start` binds it)."""
        readiness = Readiness(
            store=self.astore,
            slack_ok=lambda: self.slack_ok,
            workers_ok=lambda: self.runner is not None and self.runner.alive,
        )
        web_app = build_web_app(metrics=self.metrics, readiness=readiness, bolt=None, events=self._events)
        self._web_runner = web.AppRunner(web_app, handle_signals=False, access_log=None)
        await self._web_runner.setup()
        site = web.TCPSite(self._web_runner, host="0.0.0.0", port=self.settings.port)
        await site.start()
        sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.port
        log.info("serving http", extra={"port": self.port})  # the port bound (ARCHBOT_PORT=0: one the OS picked)

    async def _reach_slack(self) -> Any:
        """`auth.test` until Slack answers it, with backoff, for ARCHBOT_SLACK_START_SECONDS. Each
        failure is logged at once. Raises SlackUnreachable when the time is up, SlackApiError when
        Slack refuses for good (a bad token, a URL that is not Slack's Web API)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        give_up = started + self.settings.slack_start_seconds
        url = self.settings.slack_api_url
        attempt = 0
        while True:
            attempt += 1
            retry_after = 0.0
            try:
                auth = await self._probe.auth_test()
            except SlackApiError as exc:
                if not is_transient(exc):
                    raise
                error = f"HTTP {exc.response.status_code} {exc.response.get('error') or ''}".strip()
                with contextlib.suppress(TypeError, ValueError):  # a 429 says how long to wait
                    retry_after = float(exc.response.headers.get("Retry-After", 0))
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if attempt > 1:
                    log.info("Slack answers auth.test now", extra={"attempts": attempt})
                return auth
            left = give_up - loop.time()
            if left <= 0:
                raise SlackUnreachable(url, error, attempts=attempt, seconds=loop.time() - started)
            delay = min(SLACK_START_BACKOFF_MAX, 2.0 ** (attempt - 1)) * random.uniform(0.8, 1.2)
            delay = min(left, max(delay, retry_after))
            log.warning(
                "cannot reach Slack; /readyz reports slack: false until it answers",
                extra={"url": url, "error": error, "attempt": attempt, "retry_in": round(delay, 1), "left": int(left)},
            )
            await asyncio.sleep(delay)

    async def _watch_slack(self) -> None:
        """Keep /readyz honest: re-check `auth.test` every SLACK_CHECK_SECONDS."""
        while not self.stop_event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), timeout=SLACK_CHECK_SECONDS)
            if self.stop_event.is_set():
                return
            try:
                await self._probe.auth_test()  # one try: a slow Slack shows at once, not after the retry window
                ok = True
            except Exception as exc:  # SlackApiError or a connection error: not ready until it passes
                log.warning("Slack check failed", extra={"error": type(exc).__name__})
                ok = False
            if ok != self.slack_ok:
                log.info("Slack reachability changed", extra={"ok": ok})
            self.slack_ok = ok

    async def stop(self) -> None:
        """Stop intake, drain or re-queue jobs, close everything: within ARCHBOT_SHUTDOWN_GRACE plus
        STOP_MARGIN seconds whatever Slack, the model or the database do meanwhile."""
        started = time.monotonic()
        self.stop_event.set()
        running = len(self.runner.running) if self.runner else 0
        log.info("shutting down: intake stopped, draining jobs", extra={"running": running})
        self.deps.accepting = False
        # Socket Mode disconnects while the jobs drain (not before: that would take from the grace).
        closing = asyncio.create_task(self._close_socket(), name="socket-close")
        if self.runner is not None:
            await self.runner.stop(grace=self.settings.shutdown_grace)
        if self.intake is not None:
            await self.intake.close()
        for task in self._background:
            task.cancel()
        await asyncio.wait([closing, *self._background], timeout=CLOSE_SECONDS)
        if self._web_runner is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._web_runner.cleanup(), timeout=CLOSE_SECONDS)
        await self.close()
        log.info("archbot stopped", extra={"seconds": round(time.monotonic() - started, 2)})

    async def _close_socket(self) -> None:
        handler = self._socket_handler
        if handler is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(handler.close_async(), timeout=CLOSE_SECONDS)  # type: ignore[attr-defined]

    async def close(self) -> None:
        """Release clients and the store (also after a failed start)."""
        if self._anthropic is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._anthropic.close(), timeout=CLOSE_SECONDS)  # type: ignore[attr-defined]
        if self.client.session is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.session.close(), timeout=CLOSE_SECONDS)
        if self._searcher is not None:
            with contextlib.suppress(Exception):
                self._searcher.close()  # type: ignore[attr-defined]
        self.astore.close()


def settle_heap() -> None:
    """Exempt what start-up built (modules, clients, the searcher: some 200k objects) from the
    cyclic garbage collector. A full collection walks every tracked object while holding the GIL:
    on that heap it took 60-300 ms, and one that fell in a burst held up every ack behind it. Frozen,
    it walks only what was made since (a few ms). Run once, before the loop serves a request."""
    gc.collect()
    gc.freeze()


class Signals:
    """SIGTERM/SIGINT: the first asks the bot to stop (drain, re-queue, exit); a second one, while it
    stops, exits at once (exit 1): jobs still running are resumed from the store (their owner is
    gone: orphan recovery at this host's next start, or another replica once the heartbeat stops)."""

    def __init__(self, stop_event: asyncio.Event) -> None:
        self.stop_event = stop_event

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.received, sig)

    def received(self, sig: signal.Signals) -> None:
        if not self.stop_event.is_set():
            log.info("stop requested", extra={"signal": sig.name})
            self.stop_event.set()
            return
        force_exit(f"second {sig.name}: exiting now, without waiting for running jobs")


def force_exit(reason: str) -> None:
    """Leave at once, exit 1 (no more waiting on anything): what was running is resumed from the store."""
    log.error(reason)
    print(f"archbot: {reason}", file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(1)


def start_watchdog(seconds: float) -> None:
    """Exit 1 if the process is still here `seconds` from now: a stop that overruns its bound (a
    thread that does not end, a stuck close) never keeps the process up. A daemon thread, so it
    works while the event loop is blocked and after it has closed."""
    timer = threading.Timer(seconds, force_exit, args=(f"shutdown took longer than {seconds:.0f} s: exiting now",))
    timer.daemon = True
    timer.start()


async def serve(settings: Settings) -> int:
    """Run the bot until SIGTERM/SIGINT. Returns the exit code."""
    try:
        bot = Bot(settings)
    except StoreUnavailable as exc:
        log.error("database unavailable at start", extra={"error": str(exc)})
        print(f"archbot: {exc}", file=sys.stderr)
        return 1
    Signals(bot.stop_event).install(asyncio.get_running_loop())
    starting = asyncio.create_task(bot.start(), name="start")
    stopping = asyncio.create_task(bot.stop_event.wait(), name="stop-requested")
    await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # asked to stop during start-up (e.g. while Slack is waited for)
        log.info("stopping during start-up")
        start_watchdog(settings.shutdown_grace + STOP_MARGIN)
        starting.cancel()
        await asyncio.wait([starting], timeout=CLOSE_SECONDS)
        await bot.stop()
        return 0
    try:
        starting.result()
        settle_heap()
    except SlackApiError as exc:
        stopping.cancel()
        await bot.stop()
        return _refused(settings, exc)
    except SlackUnreachable as exc:
        stopping.cancel()
        log.error("cannot reach Slack; giving up", extra={"url": exc.url, "error": exc.error, "attempts": exc.attempts})
        print(
            f"archbot: {exc}; check the network, a proxy, and SLACK_API_URL "
            "(ARCHBOT_SLACK_START_SECONDS says how long to keep trying)",
            file=sys.stderr,
        )
        await bot.stop()
        return 1
    except OSError as exc:  # aiohttp's connection errors are OSErrors (e.g. Socket Mode's connection)
        stopping.cancel()
        log.error("cannot reach Slack", extra={"error": type(exc).__name__})
        print(f"archbot: cannot reach Slack at SLACK_API_URL ({type(exc).__name__})", file=sys.stderr)
        await bot.stop()
        return 1
    await stopping
    start_watchdog(settings.shutdown_grace + STOP_MARGIN)
    await bot.stop()
    return 0


def _refused(settings: Settings, exc: SlackApiError) -> int:
    """Slack answered auth.test with a refusal: a bad token or a URL that is not Slack's Web API (exit 2)."""
    status = getattr(exc.response, "status_code", 0)
    error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
    log.error("Slack rejected the start-up call", extra={"error": error, "status": status})
    if error in TOKEN_ERRORS:
        print(f"archbot: Slack refused SLACK_BOT_TOKEN ({error})", file=sys.stderr)
        return 2
    if error is None:  # not a Web API answer at all (a 404 page, a proxy's error)
        url = settings.slack_api_url
        print(f"archbot: SLACK_API_URL {url} did not answer like Slack's Web API (HTTP {status})", file=sys.stderr)
        return 2
    print(f"archbot: Slack refused auth.test ({error})", file=sys.stderr)
    return 1
