"""The store for code on the event loop: every call runs on the store's own thread, never on the loop.

`AsyncStore` wraps a blocking store (`bot.store.Store`) and offers the same method names as
coroutines: `await store.enqueue(...)`, `await store.claim_job(...)`. While another process holds
the SQLite write lock, the loop keeps serving acks, `/healthz` and the workers' Slack calls.

Waiting for a lock: the blocking store gives up after a short busy timeout; this facade retries
the call (sleeping on the loop, not in the thread, so reads from other callers go through in
between) until the caller's `budget` runs out, then raises `StoreUnavailable`. The listener uses
a short budget (`quick`): refusing with 503 lets Slack redeliver, while waiting past Slack's 3 s
would lose the event. Workers use a long budget: a finished answer must be recorded.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from bot.config import Settings
from bot.errors import StoreUnavailable
from bot.store import Store, Sweep, is_transient, redact_batch

log = logging.getLogger(__name__)
T = TypeVar("T")

BUSY_TIMEOUT = 0.1  # seconds one blocking call waits for another connection's write lock
QUICK_BUDGET = 0.6  # the ack path: then 503, Slack redelivers
DEFAULT_BUDGET = 120.0  # workers: wait out a long lock rather than lose a finished answer


class StoreThread:
    """One thread running store calls in order, the ack path's before the others.

    SQLite takes one writer at a time: a second connection for the ack path would only contend for
    the file lock with the workers' claims (and SQLite's busy handler sleeps in steps of up to
    100 ms). One connection on one thread, with the ack path's calls served first, keeps an
    enqueue behind at most the one call already running."""

    def __init__(self, name: str = "archbot-store") -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Any, Future[Any] | None]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T], *, urgent: bool = False) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((0 if urgent else 1, next(self._order), fn, future))
        return future

    def _serve(self) -> None:
        while True:
            _, _, fn, future = self._queue.get()
            if future is None:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the awaiting coroutine
                future.set_exception(exc)

    def shutdown(self, wait: bool = True) -> None:
        self._queue.put((2, next(self._order), None, None))
        if wait:
            self._thread.join(timeout=10)


class AsyncStore:
    """Coroutine versions of the store's methods, run on the store's own thread(s).

    The ack path (`quick`) never queues behind the workers: with SQLite its calls go first on the
    store's one thread; with PostgreSQL it has its own threads and connections. While another
    process holds the write lock, an event is stored or refused within about a second.
    """

    def __init__(
        self,
        store: Store,
        *,
        budget: float = DEFAULT_BUDGET,
        executor: ThreadPoolExecutor | StoreThread | None = None,
        intake: AsyncStore | None = None,
        urgent: bool = False,
    ) -> None:
        self.sync = store
        self.budget = budget
        self.urgent = urgent
        # SQLite: one thread (one connection, one writer). PostgreSQL: a thread per pooled connection.
        pooled = getattr(store, "pool_size", None)
        self._executor: ThreadPoolExecutor | StoreThread = executor or (
            ThreadPoolExecutor(max_workers=int(pooled), thread_name_prefix="archbot-store") if pooled else StoreThread()
        )
        self._transient = getattr(store, "is_transient", is_transient)
        self._intake = intake

    @property
    def quick(self) -> AsyncStore:
        """The store for the ack path: a short budget, served before the workers' calls."""
        if self._intake is None and isinstance(self._executor, StoreThread):
            self._intake = AsyncStore(self.sync, budget=QUICK_BUDGET, executor=self._executor, urgent=True)
            self._intake._intake = self._intake
        if self._intake is None:
            own = self.sync.sibling()
            self._intake = AsyncStore(
                own,
                budget=QUICK_BUDGET,
                executor=ThreadPoolExecutor(
                    max_workers=int(getattr(own, "pool_size", 1)), thread_name_prefix="archbot-intake"
                ),
            )
            self._intake._intake = self._intake
        return self._intake

    def budgeted(self, seconds: float) -> AsyncStore:
        """The same store and thread(s), giving up on a locked database after `seconds`."""
        return AsyncStore(self.sync, budget=seconds, executor=self._executor, intake=self._intake, urgent=self.urgent)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` on the store's thread, retrying while the database is locked."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.budget
        delay = 0.02
        call = functools.partial(fn, *args, **kwargs)
        while True:
            try:
                if isinstance(self._executor, StoreThread):
                    return await asyncio.wrap_future(self._executor.submit(call, urgent=self.urgent))
                return await loop.run_in_executor(self._executor, call)
            except Exception as exc:
                if not self._transient(exc):
                    raise
                left = give_up - loop.time()
                if left <= 0:
                    raise StoreUnavailable(f"database busy: {exc}") from exc
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, 0.5)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.sync, name)
        if not callable(attr):
            return attr

        async def method(*args: Any, **kwargs: Any) -> Any:
            return await self.run(attr, *args, **kwargs)

        method.__name__ = name
        return method

    async def writable(self) -> bool:
        """Whether a write would succeed now (readiness): not gone, not read-only, not locked."""
        try:
            await self.quick.run(self.quick.sync.check_writable)
            return True
        except Exception as exc:
            log.warning("database not writable", extra={"error": str(exc)[:200]})
            return False

    def close(self) -> None:
        intake = self._intake
        if intake is not None and intake is not self and intake.sync is not self.sync:
            intake.close()
        self._executor.shutdown(wait=True)
        self.sync.close()


class GroupCommit:
    """Enqueues from concurrent requests share one transaction and one commit (group commit).

    The first enqueue starts a flush; everything enqueued until that flush reaches the store joins
    it, and what arrives while it commits goes into the next one. A burst of 40 mentions costs a
    few commits and store-thread round trips instead of 40, and each caller still returns only
    once its own job is committed (or raises: `StoreUnavailable` when the database stayed locked,
    so that request is refused and Slack redelivers it).

    Each request's wait is bounded from its own arrival, not from its batch's start: a batch gives
    up when its earliest request has waited the store's budget. (Bounded per batch, a request that
    arrived while the batch before it waited on a lock waited out both: 1.2 s for a 0.6 s budget;
    bench/sqlite_lock.py measured round trips p99 1.44 s.)"""

    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        self._pending: list[tuple[dict[str, Any], asyncio.Future[int | None], float]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def enqueue(self, **job: Any) -> int | None:
        """`Store.enqueue`'s arguments; the job's id, or None for a duplicate `(channel, ts)`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int | None] = loop.create_future()
        self._pending.append((job, future, loop.time() + self.store.budget))
        if self._flusher is None:
            # A task, not a direct call: requests already read in this turn of the loop join the batch.
            self._flusher = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[tuple[dict[str, Any], asyncio.Future[int | None], float]] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                # At least one try, however late: the lock may be gone by now.
                store = self.store.budgeted(max(0.0, min(d for _, _, d in batch) - loop.time()))
                try:
                    ids = await store.run(store.sync.enqueue_many, [job for job, _, _ in batch])
                except StoreUnavailable as exc:
                    for _, future, _ in batch:
                        _settle(future, exc=exc)
                except Exception:
                    # One bad job must not fail the others: each alone (a shape the intake let through).
                    for job, future, _ in batch:
                        try:
                            _settle(future, await store.run(store.sync.enqueue, **job))
                        except Exception as exc:
                            _settle(future, exc=exc)
                else:
                    for (_, future, _), job_id in zip(batch, ids, strict=True):
                        _settle(future, job_id)
        except BaseException:  # cancelled (the loop is closing): no request waits for a commit that never comes
            for _, future, _ in [*batch, *self._pending]:
                future.cancel()
            self._pending = []
            raise
        finally:
            self._flusher = None


def _settle(future: asyncio.Future[Any], result: Any = None, *, exc: BaseException | None = None) -> None:
    if future.done():  # the request went away (client disconnected): its job is stored all the same
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


async def run_sweep(store: AsyncStore, sweep: Sweep) -> Sweep:
    """`sweep`'s steps to the end: each read and write on the store's thread(s), each redaction in
    a thread of the loop's default executor."""
    while not sweep.done:
        batch = await store.run(store.sync.sweep_read, sweep)
        batch = await asyncio.to_thread(redact_batch, batch)
        sweep = await store.run(store.sync.sweep_write, sweep, batch)
    return sweep


async def sweep_stored_text(store: AsyncStore) -> None:
    """Re-redact the stored text when this detector is newer than every one that swept the database
    (`Store.start_sweep`): step by step, each step's read and write one short call on the store's
    thread(s), its redaction in another thread, so the ack path's calls and the workers' claims
    wait for one read or write at most. A failure is logged, not raised: the next start resumes
    where the last committed step left off."""
    try:
        sweep = await store.run(store.sync.start_sweep)
        if sweep is None:
            return
        log.info("re-redacting stored text with a newer detector", extra={"detector": sweep.version})
        sweep = await run_sweep(store, sweep)
    except Exception as exc:  # the values stay as they were; never quoted here
        log.warning("stored text sweep stopped; the next start resumes it", extra={"error": type(exc).__name__})
        return
    log.info(
        "stored text re-redacted",
        extra={
            "detector": sweep.version,
            "rows": sweep.rows,
            "changed": sweep.changed,
            "seconds": round(sweep.seconds, 3),
            "longest_hold_ms": round(sweep.longest_hold * 1000, 1),
        },
    )


def open_store(settings: Settings, *, busy_timeout: float = 30.0) -> Store:
    """The blocking store `settings` name: PostgreSQL with ARCHBOT_DATABASE_URL, else SQLite at ARCHBOT_DB.
    Raises StoreUnavailable when PostgreSQL cannot be reached."""
    if settings.database_url is not None:
        from bot.store_pg import PgStore

        return PgStore(settings.database_url.get_secret_value())
    return Store(settings.db_path, busy_timeout=busy_timeout)
