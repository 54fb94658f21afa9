"""The store on PostgreSQL (`ARCHBOT_DATABASE_URL`): the same `Store` interface, for several replicas.

`PgStore` subclasses the SQLite `Store` and keeps every one of its methods: each statement they
run goes through `translate()`, which turns archbot's SQLite dialect into PostgreSQL's (`?`
placeholders, `INSERT OR IGNORE`, two-argument `MAX`, the `user` column, `lastrowid`). So a
method added to `Store` works here too, and the parametrized store tests run both backends.

What differs on purpose:
- Claiming: the subquery that picks the next job takes `FOR UPDATE SKIP LOCKED`, so replicas
  claiming at once each get a different job and never wait on each other.
- Transactions: one pooled connection per call (psycopg_pool), `READ COMMITTED`; dedupe, the
  digest period and feedback rely on unique constraints (`ON CONFLICT`), which are atomic.
- Schema: its own numbered migrations (`MIGRATIONS` below), applied under an advisory lock so
  replicas starting together migrate once; never edit one that shipped, add the next.
- Re-redacting stored text (`Store.sweep_step`): the same steps; replicas sweeping at once are
  safe (each rewrite is conditional on the value read), and the old row versions are left to
  (auto)vacuum rather than zeroed as SQLite's secure_delete does.
- The retrieval index is not here: it stays a local SQLite file per replica (`ARCHBOT_DB`).

Blocking calls, like `Store`: the event loop reaches them through `bot.store_async.AsyncStore`,
which runs them on a small thread pool (one thread per pooled connection).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from bot.errors import StoreUnavailable
from bot.store import Store

POOL_SIZE = 8
ADVISORY_LOCK = 7_305_001  # serialises migrations between replicas

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "initial",
        """
        CREATE TABLE jobs (
            id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, channel TEXT NOT NULL, channel_type TEXT,
            ts TEXT NOT NULL, thread_ts TEXT NOT NULL, "user" TEXT, team TEXT, text TEXT,
            state TEXT NOT NULL DEFAULT 'queued', attempts INTEGER NOT NULL DEFAULT 0,
            lease_until DOUBLE PRECISION, reply_ts TEXT, error TEXT, created_at DOUBLE PRECISION,
            started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION, event_id TEXT, meta TEXT, owner TEXT,
            UNIQUE (channel, ts)
        );
        CREATE INDEX jobs_state_id ON jobs (state, id);
        CREATE TABLE threads (
            channel TEXT NOT NULL, thread_ts TEXT NOT NULL, channel_type TEXT, started_by TEXT,
            created_at DOUBLE PRECISION, PRIMARY KEY (channel, thread_ts)
        );
        CREATE TABLE answers (
            id BIGSERIAL PRIMARY KEY, job_id BIGINT REFERENCES jobs (id), channel TEXT, channel_type TEXT,
            thread_ts TEXT, message_ts TEXT, "user" TEXT, kind TEXT, question TEXT, text TEXT, topic TEXT,
            decision TEXT, confidence TEXT, model TEXT, input_tokens BIGINT, output_tokens BIGINT,
            cache_read_input_tokens BIGINT, cache_creation_input_tokens BIGINT, cost_usd DOUBLE PRECISION,
            latency_ms DOUBLE PRECISION, first_text_ms DOUBLE PRECISION, created_at DOUBLE PRECISION
        );
        CREATE INDEX answers_created_at ON answers (created_at);
        CREATE INDEX answers_channel_message ON answers (channel, message_ts);
        CREATE TABLE answer_sources (
            answer_id BIGINT REFERENCES answers (id), path TEXT, source TEXT, heading TEXT, url TEXT
        );
        CREATE INDEX answer_sources_answer ON answer_sources (answer_id);
        CREATE TABLE gaps (
            id BIGSERIAL PRIMARY KEY, answer_id BIGINT REFERENCES answers (id), kind TEXT, description TEXT,
            created_at DOUBLE PRECISION
        );
        CREATE TABLE feedback (
            id BIGSERIAL PRIMARY KEY, answer_id BIGINT, channel TEXT, message_ts TEXT, "user" TEXT, value TEXT,
            comment TEXT, created_at DOUBLE PRECISION, UNIQUE (channel, message_ts, "user")
        );
        CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT, updated_at DOUBLE PRECISION);
        CREATE TABLE digests (
            period TEXT PRIMARY KEY, channel TEXT, posted_at DOUBLE PRECISION, ts TEXT, status TEXT
        );
        CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT);
        """,
    ),
]

_TABLES_WITH_ID = ("jobs", "answers", "gaps", "feedback")
_INSERT_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\s+", re.I)
_INSERT_INTO = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.I)
_TWO_ARG_MAX = re.compile(r"\bMAX\(([^(),]+),([^(),]+)\)", re.I)
_USER_COLUMN = re.compile(r'(?<![\w."])user(?![\w"])')
_PICK_ONE = re.compile(r"LIMIT 1\)", re.I)


def translate(sql: str, *, params: bool = True) -> tuple[str, bool]:
    """archbot's SQLite SQL → PostgreSQL; also whether `RETURNING id` was added (for `lastrowid`).
    Without parameters psycopg sends the text as it is, so `%` stays single."""
    out = sql.replace("%", "%%").replace("?", "%s") if params else sql
    out = _USER_COLUMN.sub('"user"', out)
    out = _TWO_ARG_MAX.sub(r"GREATEST(\1,\2)", out)
    if _INSERT_OR_IGNORE.match(out):
        out = _INSERT_OR_IGNORE.sub("INSERT INTO ", out) + " ON CONFLICT DO NOTHING"
    if out.lstrip().upper().startswith("UPDATE"):
        # The job picked for a claim is locked and skipped by every other claimer.
        out = _PICK_ONE.sub("LIMIT 1 FOR UPDATE SKIP LOCKED)", out)
    returning = False
    insert = _INSERT_INTO.match(out)
    if insert is not None and insert.group(1) in _TABLES_WITH_ID and "RETURNING" not in out.upper():
        out += " RETURNING id"
        returning = True
    return out, returning


class _Result:
    """The parts of a sqlite3 cursor the store's methods read."""

    def __init__(self, cursor: psycopg.Cursor[Any], returning_id: bool) -> None:
        self.description = [(c.name,) for c in cursor.description or ()]
        self._rows: list[Any] = cursor.fetchall() if cursor.description else []
        self.rowcount = cursor.rowcount
        self.lastrowid: int | None = None
        if returning_id:
            self.lastrowid = int(self._rows[0][0]) if self._rows else None
            self._rows = []

    def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows


class _Conn:
    """What `Store`'s methods use of a sqlite_utils Database inside a transaction: `execute`."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Result:
        text, returning = translate(sql, params=bool(params))
        with self.conn.cursor() as cursor:
            cursor.execute(text, tuple(params) if params else None)  # type: ignore[arg-type]
            return _Result(cursor, returning)


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, pg_errors.ReadOnlySqlTransaction | pg_errors.InsufficientPrivilege)


class PgStore(Store):
    """archbot's conversation state in PostgreSQL. Thread-safe: one pooled connection per call."""

    backend = "postgresql"

    def __init__(
        self, url: str, *, pool_size: int = POOL_SIZE, connect_timeout: float = 5.0, migrate: bool = True
    ) -> None:
        self.url = url
        self.pool_size = pool_size
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            timeout=connect_timeout,
            kwargs={"autocommit": False, "connect_timeout": max(1, int(connect_timeout))},
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except PoolTimeout as exc:
            self._pool.close()
            raise StoreUnavailable("cannot connect to the PostgreSQL database at ARCHBOT_DATABASE_URL") from exc
        if migrate:
            self.migrate()

    # -- plumbing ------------------------------------------------------------------------
    def close(self) -> None:
        self._pool.close()

    def sibling(self) -> PgStore:
        """Its own small pool, so the ack path never waits for a connection the workers hold."""
        return PgStore(self.url, pool_size=2)

    def is_transient(self, exc: BaseException) -> bool:
        """Worth retrying shortly: a lost or refused connection, a full pool, a serialisation conflict."""
        return isinstance(
            exc,
            PoolTimeout
            | psycopg.OperationalError
            | pg_errors.SerializationFailure
            | pg_errors.DeadlockDetected
            | pg_errors.LockNotAvailable,
        ) and not _unavailable(exc)

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield _Conn(conn)
        except psycopg.Error as exc:
            if _unavailable(exc):
                raise StoreUnavailable(f"database refuses writes: {type(exc).__name__}") from exc
            raise

    def _rows(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        text, _ = translate(sql, params=bool(params))
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(text, tuple(params) if params else None)  # type: ignore[arg-type]
            rows = cursor.fetchall() if cursor.description else []
            conn.rollback()
            return rows

    def ping(self) -> bool:
        try:
            self._rows("SELECT 1 AS ok")
            return True
        except (psycopg.Error, PoolTimeout):
            return False

    def check_writable(self) -> None:
        """Raise StoreUnavailable (read-only, no privilege) or a transient error unless a write works now."""
        try:
            with self._pool.connection() as conn:
                with conn.cursor() as cursor:
                    cursor.execute(
                        "INSERT INTO kv (key, value) VALUES ('_probe', '1')"
                        " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                    )
                conn.rollback()
        except psycopg.Error as exc:
            if _unavailable(exc):
                raise StoreUnavailable(f"database refuses writes: {type(exc).__name__}") from exc
            raise

    def clock(self) -> float:
        return float(self._rows("SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8 AS now")[0]["now"])

    # -- stored text swept again --------------------------------------------------------
    @contextmanager
    def _erasing(self) -> Iterator[None]:
        """Nothing to switch on: an UPDATE leaves the old row version dead, for VACUUM to reclaim."""
        yield

    def _after_sweep(self) -> None:
        """Autovacuum reclaims the dead row versions that held the old values; a byte-level purge of
        the files is `VACUUM FULL` on the swept tables (it locks them: a maintenance window)."""

    # -- schema --------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Apply pending migrations (once, whichever replica gets the lock first); the numbers applied."""
        applied: list[int] = []
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK,))
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS archbot_migrations"
                " (number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
            )
            cursor.execute("SELECT number FROM archbot_migrations")
            done = {row[0] for row in cursor.fetchall()}
            for number, name, sql in MIGRATIONS:
                if number in done:
                    continue
                cursor.execute(sql)  # type: ignore[arg-type]
                cursor.execute(
                    "INSERT INTO archbot_migrations (number, name, applied_at) VALUES (%s, %s, %s)",
                    (number, name, time.time()),
                )
                applied.append(number)
        return applied

    def pending_migrations(self) -> list[int]:
        """Migration numbers this code knows that the database has not applied (doctor)."""
        rows = self._rows(
            "SELECT number FROM archbot_migrations"
            if self._rows("SELECT to_regclass('archbot_migrations') AS t")[0]["t"]
            else "SELECT NULL AS number WHERE FALSE"
        )
        done = {r["number"] for r in rows}
        return [number for number, _, _ in MIGRATIONS if number not in done]
