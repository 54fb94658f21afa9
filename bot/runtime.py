"""`archbot run`: start every part, serve until SIGTERM/SIGINT, then drain and exit 0.

Start order: store → Slack client and `auth.test` → index (in the background; answers use
whatever index exists) → workers → HTTP server (health, metrics, HTTP-mode events) →
Socket Mode connection → digest scheduler and periodic re-index.

Stop order (SIGTERM): stop intake first (Socket Mode disconnects; HTTP events get 503 so
Slack redelivers them), give running jobs `ARCHBOT_SHUTDOWN_GRACE` seconds, re-queue what
is left, close the rest. The whole drain stays under 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from typing import TypeVar

from aiohttp import web
from slack_sdk.errors import SlackApiError

from bot.config import Settings
from bot.jobs import JobRunner
from bot.logs import setup_logging
from bot.metrics import Metrics
from bot.server import Readiness, build_web_app
from bot.slack.app import Deps, build_app, build_client
from bot.slack.context import BotIdentity
from bot.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")


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

    def target() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the awaiting task
            error = exc
            loop.call_soon_threadsafe(lambda: future.done() or future.set_exception(error))
        else:
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(result))

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
        if settings.reindex_minutes <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.reindex_minutes * 60)


async def serve(settings: Settings, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> int:
    """Run the bot until `stop` is set (or a signal arrives). Returns the exit code."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    store = Store(settings.db_path)
    metrics = Metrics()
    deps = Deps(settings=settings, store=store, metrics=metrics)
    client = build_client(settings)
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        log.error("Slack rejected SLACK_BOT_TOKEN", extra={"error": exc.response.get("error")})
        return 2 if exc.response.get("error") in ("invalid_auth", "not_authed", "account_inactive") else 1
    bot = BotIdentity(user_id=str(auth["user_id"]), bot_id=auth.get("bot_id"))
    slack_ok = True

    from bot.retrieval import Searcher

    searcher = Searcher(settings.db_path, docs_url=settings.docs_url)
    deps.searcher = searcher
    responder = None
    if settings.has_model:
        from bot.architect import Architect, build_anthropic_client, check_model

        anthropic_client = build_anthropic_client(settings)
        responder = Architect(settings, client=anthropic_client)
        with contextlib.suppress(Exception):
            ok, message = await check_model(settings, anthropic_client)
            (log.info if ok else log.error)(message, extra={"model": settings.model})

    app = build_app(deps, client)
    runner = JobRunner(
        settings=settings,
        store=store,
        client=client,
        metrics=metrics,
        searcher=searcher,
        responder=responder,
        wake=deps.wake,
        bot=bot,
    )
    await runner.start()

    readiness = Readiness(store=store, slack_ok=lambda: slack_ok, workers_ok=lambda: runner.alive)
    web_app = build_web_app(metrics=metrics, readiness=readiness, bolt=None if settings.socket_mode else app)
    web_runner = web.AppRunner(web_app, handle_signals=False, access_log=None)
    await web_runner.setup()
    site = web.TCPSite(web_runner, host="0.0.0.0", port=settings.port)
    await site.start()
    log.info(
        "archbot running",
        extra={"mode": "socket" if settings.socket_mode else "http", "port": settings.port, "bot_user": bot.user_id},
    )

    socket_handler = None
    if settings.socket_mode:
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        assert settings.slack_app_token is not None
        socket_handler = AsyncSocketModeHandler(app, settings.slack_app_token.get_secret_value())
        await socket_handler.connect_async()

    background = [asyncio.create_task(_reindex_loop(settings, stop), name="reindex")]
    if settings.digest_channel:
        from bot.digest import DigestScheduler

        scheduler = DigestScheduler(settings, store, client)
        background.append(asyncio.create_task(scheduler.run(stop), name="digest"))

    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("shutting down: intake stopped, draining jobs", extra={"running": len(runner.running)})
    deps.accepting = False
    if socket_handler is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(socket_handler.close_async(), timeout=2.0)
    await runner.stop(grace=settings.shutdown_grace)
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(web_runner.cleanup(), timeout=2.0)
    store.close()
    log.info("archbot stopped")
    return 0
