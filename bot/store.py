"""The store: archbot's state in one SQLite file (WAL), and the only module that writes its SQL.

Tables (see the migrations below):
- `jobs`: the durable queue. Unique on `(channel, ts)`, which is the dedupe key: the
  `app_mention`/`message` twins and Slack's redeliveries of one question insert once.
  A worker claims a job with one atomic `UPDATE ... RETURNING` and a lease; a job whose
  lease expired (its worker died) is claimable again, so a crash resumes the work.
  `reply_ts` is recorded as soon as a reply message exists, so a resumed job edits that
  message rather than posting a second one.
- `threads`: threads the bot takes part in (follow-ups without a mention are answered
  only there).
- `answers` / `answer_sources` / `gaps`: what was answered, with which passages, and
  what the docs could not answer or contradicted (the digest reads these).
- `feedback`, `users` (name cache), `digests` (one row per posted period), `kv`.

The retrieval index keeps its own tables in the same file (`bot/retrieval/`), under its
own migration set: it is rebuilt and swapped independently of the conversation state.

What people and the model wrote is stored with its credentials redacted (`bot/redaction.py`),
whoever the caller: a job's text, an answer's question, text, topic and decision, gaps and
conflicts, feedback comments. The redaction runs before a transaction opens, never under the lock.

Rows written before the current detector existed (an older install, or a detector that now knows
more key shapes) are swept again, once per detector version (`start_sweep` / `sweep_step`; see
"stored text swept again" below): `archbot run` does it at start, in the background.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from bot.errors import StoreUnavailable
from bot.redaction import detector_version, redact_text
from bot.types import Answer, Job

LEASE_SECONDS = 300.0  # a running job whose worker vanished is retried after this
REPLICA_KEY = "replica:"  # kv rows holding each running process's heartbeat
MAX_ATTEMPTS = 3  # claims before a job is failed for good
SWEPT_KEY = "redaction:swept:"  # kv rows `redaction:swept:<detector version>`: when that sweep finished
SWEEP_KEY = "redaction:sweep:"  # kv row `redaction:sweep:<detector version>`: how far it got (JSON)
# Every column that holds what people or the model wrote, by table (each keyed by `id`). Threads,
# digests, users, kv and answer_sources hold ids, timestamps, names and doc paths only.
REDACTED_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("jobs", ("text", "meta")),  # a question, a proposal; meta: a review's title (JSON)
    ("answers", ("question", "text", "topic", "decision")),
    ("gaps", ("description",)),
    ("feedback", ("comment",)),
)
SWEEP_ROWS = 200  # rows read per sweep step
SWEEP_SECONDS = 0.05  # redaction per sweep step (off the store's thread when run by `archbot run`)
_META_KEPT = frozenset({"response_url"})  # meta values that are not text (a Slack URL the job replies through)

migrations = Migrations("archbot")


@migrations()
def m001_initial(db: Database) -> None:
    db.table("jobs").create(
        {
            "id": int,
            "kind": str,
            "channel": str,
            "channel_type": str,
            "ts": str,
            "thread_ts": str,
            "user": str,
            "team": str,
            "text": str,
            "state": str,
            "attempts": int,
            "lease_until": float,
            "reply_ts": str,
            "error": str,
            "created_at": float,
            "started_at": float,
            "finished_at": float,
            "event_id": str,
            "meta": str,
            "owner": str,
        },
        pk="id",
        not_null={"kind", "channel", "ts", "thread_ts", "state"},
        defaults={"state": "queued", "attempts": 0},
    )
    db.table("jobs").create_index(["channel", "ts"], unique=True)
    db.table("jobs").create_index(["state", "id"])
    db.table("threads").create(
        {"channel": str, "thread_ts": str, "channel_type": str, "started_by": str, "created_at": float},
        pk=("channel", "thread_ts"),
    )
    db.table("answers").create(
        {
            "id": int,
            "job_id": int,
            "channel": str,
            "channel_type": str,
            "thread_ts": str,
            "message_ts": str,
            "user": str,
            "kind": str,
            "question": str,
            "text": str,
            "topic": str,
            "decision": str,
            "confidence": str,
            "model": str,
            "input_tokens": int,
            "output_tokens": int,
            "cache_read_input_tokens": int,
            "cache_creation_input_tokens": int,
            "cost_usd": float,
            "latency_ms": float,
            "first_text_ms": float,
            "created_at": float,
        },
        pk="id",
        foreign_keys=[("job_id", "jobs", "id")],
    )
    db.table("answers").create_index(["created_at"])
    db.table("answers").create_index(["channel", "message_ts"])
    db.table("answer_sources").create(
        {"answer_id": int, "path": str, "source": str, "heading": str, "url": str},
        foreign_keys=[("answer_id", "answers", "id")],
    )
    db.table("answer_sources").create_index(["answer_id"])
    db.table("gaps").create(
        {"id": int, "answer_id": int, "kind": str, "description": str, "created_at": float},
        pk="id",
        foreign_keys=[("answer_id", "answers", "id")],
    )
    db.table("feedback").create(
        {
            "id": int,
            "answer_id": int,
            "channel": str,
            "message_ts": str,
            "user": str,
            "value": str,
            "comment": str,
            "created_at": float,
        },
        pk="id",
    )
    db.table("feedback").create_index(["channel", "message_ts", "user"], unique=True)
    db.table("users").create({"id": str, "name": str, "updated_at": float}, pk="id")
    db.table("digests").create(
        {"period": str, "channel": str, "posted_at": float, "ts": str, "status": str}, pk="period"
    )
    db.table("kv").create({"key": str, "value": str}, pk="key")


@dataclass
class StoredAnswer:
    id: int
    job_id: int | None
    channel: str
    channel_type: str
    thread_ts: str
    message_ts: str | None
    user: str | None
    kind: str
    question: str
    text: str
    topic: str | None
    decision: str | None
    created_at: float
    latency_ms: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float


@dataclass
class Sweep:
    """A sweep of the stored text by one detector version: where it is, and what this process did."""

    version: str
    table: int = 0  # index into REDACTED_COLUMNS
    after: int = 0  # the last id swept in that table
    rows: int = 0  # rows read by this process
    changed: int = 0  # values this process rewrote
    seconds: float = 0.0  # spent in the steps (reads, redaction, writes)
    longest_hold: float = 0.0  # the longest read or write: how long the store was held at once

    @property
    def done(self) -> bool:
        return self.table >= len(REDACTED_COLUMNS)


@dataclass
class SweepBatch:
    """One step's rows: read on the store, redacted off it (`redact_batch`), written back on it."""

    table: int
    after: int  # the sweep's position when read
    limit: int  # rows asked for: fewer came back when the table has no more
    rows: list[dict[str, Any]]
    read_seconds: float = 0.0
    changes: list[tuple[str, int, str, str]] = field(default_factory=list)  # (column, id, as read, redacted)
    seen: int = 0  # rows redacted (the first `seen` of `rows`)
    redact_seconds: float = 0.0
    next_table: int = 0  # where the sweep goes on once this batch is written
    next_after: int = 0


def redact_batch(batch: SweepBatch, *, seconds: float = SWEEP_SECONDS) -> SweepBatch:
    """Redact a batch's values (no database: any thread). Stops after `seconds` (at least one row):
    the rest of the batch is read again by the next step."""
    started = time.monotonic()
    columns = REDACTED_COLUMNS[batch.table][1]
    last, finished_table = batch.after, len(batch.rows) < batch.limit
    for i, row in enumerate(batch.rows):
        for column in columns:
            value = row[column]
            if isinstance(value, str) and value:
                redacted = _redact_column(column, value)
                if redacted != value:
                    batch.changes.append((column, int(row["id"]), value, redacted))
        last, batch.seen = int(row["id"]), batch.seen + 1
        if time.monotonic() - started > seconds and i + 1 < len(batch.rows):
            finished_table = False
            break
    batch.next_table, batch.next_after = (batch.table + 1, 0) if finished_table else (batch.table, last)
    batch.redact_seconds = time.monotonic() - started
    return batch


def _version_number(version: str) -> int | None:
    """`r6` → 6; None for a version that does not follow the scheme."""
    match = re.fullmatch(r"r(\d+)", version)
    return int(match.group(1)) if match else None


def _redact_column(column: str, value: str) -> str:
    """A stored value with the current detector applied; a job's meta (JSON) field by field."""
    if column != "meta":
        return redact_text(value)
    try:
        meta = json.loads(value)
    except ValueError:
        return redact_text(value)
    if not isinstance(meta, dict):
        return value
    redacted = {k: redact_text(v) if isinstance(v, str) and k not in _META_KEPT else v for k, v in meta.items()}
    return json.dumps(redacted) if redacted != meta else value


def connect(path: Path | str, *, busy_timeout: float = 30.0) -> Database:
    """Open the database with the pragmas archbot relies on (WAL, busy timeout in seconds)."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=busy_timeout, isolation_level=None)
    db = Database(conn)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    db.execute("PRAGMA foreign_keys=ON")
    return db


def apply_migrations(db: Database, migrations: Migrations) -> None:
    """Apply what is pending, holding the write lock from the start (waiting out the busy timeout):
    a deferred transaction that read the schema and then writes fails at once with "database is
    locked" when another connection wrote in between. Nothing pending: no lock is taken."""
    if not migrations.pending(db):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        migrations.apply(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _insert_thread(db: Database, *, channel: str, thread_ts: str, channel_type: str, started_by: str | None) -> None:
    """Remember a thread the bot takes part in (follow-ups there need no mention)."""
    db.execute(
        "INSERT OR IGNORE INTO threads (channel, thread_ts, channel_type, started_by, created_at) VALUES (?,?,?,?,?)",
        (channel, thread_ts, channel_type, started_by, time.time()),
    )


def _job(row: dict[str, Any]) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        channel=row["channel"],
        ts=row["ts"],
        thread_ts=row["thread_ts"],
        user=row["user"],
        text=row["text"] or "",
        channel_type=row["channel_type"] or "channel",
        team=row["team"],
        attempts=row["attempts"] or 0,
        state=row["state"],
        reply_ts=row["reply_ts"],
        created_at=row["created_at"] or 0.0,
        meta=json.loads(row["meta"]) if row.get("meta") else {},
    )


def is_transient(exc: BaseException) -> bool:
    """A failure worth retrying shortly: another connection holds the write lock."""
    return isinstance(exc, sqlite3.OperationalError) and any(word in str(exc).lower() for word in ("locked", "busy"))


class Store:
    """archbot's conversation state. Thread-safe: one connection guarded by a lock.

    Blocking: call it from a thread, or through `bot.store_async.AsyncStore` on the event loop.
    `busy_timeout` bounds how long one call waits for another connection's write lock before it
    raises (`is_transient`); the async facade retries such calls without holding a thread.
    """

    backend = "sqlite"

    def __init__(self, path: Path | str, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.db = connect(path, busy_timeout=busy_timeout)
        self._lock = threading.RLock()
        self._identity = self._file_identity()
        with self._lock:
            apply_migrations(self.db, migrations)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def sibling(self) -> Store:
        """A second handle on the same database for another thread (SQLite: its own connection)."""
        return Store(self.path, busy_timeout=self.busy_timeout)

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def _check_file(self) -> None:
        """Writes to a database file that was deleted or replaced under us would be lost at restart."""
        if str(self.path) != ":memory:" and self._file_identity() != self._identity:
            raise StoreUnavailable(f"database file {self.path} is gone or was replaced")

    @contextmanager
    def _tx(self) -> Iterator[Database]:
        """A write transaction. BEGIN IMMEDIATE takes the write lock first, so waiting for another
        writer is bounded by the busy timeout (a deferred transaction could fail mid-way instead)."""
        with self._lock:
            self._check_file()
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "readonly" in str(exc).lower() or "read-only" in str(exc).lower():
                    raise StoreUnavailable(f"database is read-only: {exc}") from exc
                raise
            try:
                yield self.db
                self.db.execute("COMMIT")
            except BaseException as exc:
                if self.db.conn.in_transaction:
                    self.db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc).lower():
                    raise StoreUnavailable(f"database is read-only: {exc}") from exc
                raise

    def check_writable(self) -> None:
        """Raise StoreUnavailable (gone, replaced, read-only) or a transient error (locked) unless a
        write would succeed now. Writes a probe row and rolls it back: nothing is changed."""
        with self._lock:
            self._check_file()
            if not os.access(self.path.parent, os.W_OK) or not os.access(self.path, os.W_OK):
                raise StoreUnavailable(f"database {self.path} is not writable")
            try:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES ('_probe', '1')")
            except sqlite3.OperationalError as exc:
                if "readonly" in str(exc).lower():
                    raise StoreUnavailable(f"database is read-only: {exc}") from exc
                raise
            finally:
                if self.db.conn.in_transaction:
                    self.db.execute("ROLLBACK")

    def _rows(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self.db.execute(sql, params)
            names = [d[0] for d in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def ping(self) -> bool:
        try:
            self._rows("SELECT 1 AS ok")
            return True
        except sqlite3.Error:
            return False

    # -- jobs ----------------------------------------------------------------------------
    def enqueue(
        self,
        *,
        kind: str,
        channel: str,
        ts: str,
        thread_ts: str,
        user: str | None,
        text: str,
        channel_type: str = "channel",
        team: str | None = None,
        event_id: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> int | None:
        """Persist a job; None when `(channel, ts)` is already queued or done (a duplicate)."""
        return self.enqueue_many(
            [
                {
                    "kind": kind,
                    "channel": channel,
                    "ts": ts,
                    "thread_ts": thread_ts,
                    "user": user,
                    "text": text,
                    "channel_type": channel_type,
                    "team": team,
                    "event_id": event_id,
                    "meta": meta,
                }
            ]
        )[0]

    def enqueue_many(self, jobs: list[dict[str, Any]]) -> list[int | None]:
        """Persist several jobs (each with `enqueue`'s arguments) in one transaction, one commit: the
        ack path's group commit. Each gets its id, or None when its `(channel, ts)` is already there
        (a duplicate, also of an earlier job in the same list)."""
        now = time.time()
        ids: list[int | None] = []
        texts = [redact_text(job["text"]) if job["text"] else job["text"] for job in jobs]
        with self._tx() as db:
            for job, text in zip(jobs, texts, strict=True):
                meta = job.get("meta")
                cursor = db.execute(
                    "INSERT OR IGNORE INTO jobs (kind, channel, channel_type, ts, thread_ts, user, team, text,"
                    " state, attempts, created_at, event_id, meta) VALUES (?,?,?,?,?,?,?,?,'queued',0,?,?,?)",
                    (
                        job["kind"],
                        job["channel"],
                        job.get("channel_type", "channel"),
                        job["ts"],
                        job["thread_ts"],
                        job.get("user"),
                        job.get("team"),
                        text,
                        now,
                        job.get("event_id"),
                        json.dumps(meta) if meta else None,
                    ),
                )
                if cursor.rowcount == 0:
                    ids.append(None)
                    continue
                ids.append(int(cursor.lastrowid or 0))
                if job["kind"] != "review" and job["thread_ts"]:
                    _insert_thread(
                        db,
                        channel=job["channel"],
                        thread_ts=job["thread_ts"],
                        channel_type=job.get("channel_type", "channel"),
                        started_by=job.get("user"),
                    )
        return ids

    def claim_job(self, *, owner: str = "", lease_seconds: float = LEASE_SECONDS) -> Job | None:
        """Atomically take the oldest claimable job (queued, or running with an expired lease)."""
        now = time.time()
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE jobs SET state='running', attempts=attempts+1, lease_until=?,"
                " started_at=COALESCE(started_at, ?), owner=?"
                " WHERE id = (SELECT id FROM jobs WHERE state='queued'"
                "   OR (state='running' AND lease_until < ?) ORDER BY id LIMIT 1)"
                " RETURNING *",
                (now + lease_seconds, now, owner, now),
            )
            names = [d[0] for d in cursor.description or ()]
            row = cursor.fetchone()
            if not row:
                return None
            job = _job(dict(zip(names, row, strict=True)))
            # started_at keeps the first claim's time: a job that ran before (a crash, a lease that
            # expired, a re-queue at shutdown) shows an earlier one.
            job.resumed = job.attempts > 1 or row[names.index("started_at")] != now
            return job

    def recover_orphans(self, *, owner: str, is_dead: Callable[[str], bool]) -> int:
        """Re-queue running jobs whose owning process is gone (a crash), without waiting out the lease."""
        rows = self._rows("SELECT id, owner FROM jobs WHERE state='running' AND COALESCE(owner,'') != ?", (owner,))
        dead = [r["id"] for r in rows if is_dead(r["owner"] or "")]
        with self._tx() as db:
            for job_id in dead:
                db.execute("UPDATE jobs SET state='queued', lease_until=NULL WHERE id=? AND state='running'", (job_id,))
        return len(dead)

    def set_thread(self, job_id: int, thread_ts: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET thread_ts=? WHERE id=?", (thread_ts, job_id))

    def set_channel_type(self, job_id: int, channel_type: str) -> None:
        """The type a job resolved (conversations.info), on the job and on its thread."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET channel_type=? WHERE id=?", (channel_type, job_id))
            db.execute(
                "UPDATE threads SET channel_type=? WHERE (channel, thread_ts) IN"
                " (SELECT channel, thread_ts FROM jobs WHERE id=?) AND channel_type IN ('unknown', 'command')",
                (channel_type, job_id),
            )

    def set_reply_ts(self, job_id: int, reply_ts: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET reply_ts=? WHERE id=?", (reply_ts, job_id))

    def extend_lease(self, job_id: int, *, lease_seconds: float = LEASE_SECONDS) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET lease_until=? WHERE id=? AND state='running'",
                (time.time() + lease_seconds, job_id),
            )

    def finish_job(self, job_id: int, *, state: str, error: str | None = None) -> bool:
        """End a running job once; False if it had already ended."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE jobs SET state=?, error=?, finished_at=?, lease_until=NULL WHERE id=? AND state='running'",
                (state, error, time.time(), job_id),
            )
            return cursor.rowcount == 1

    def requeue_job(self, job_id: int, *, owner: str | None = None) -> bool:
        """Give a running job back to the queue (graceful shutdown), with its attempt: a shutdown is
        not the job's fault. With `owner`, only while that process still holds it (a job whose lease
        expired may run elsewhere by now). False when it was not running (or not `owner`'s)."""
        sql = "UPDATE jobs SET state='queued', attempts=MAX(attempts-1, 0), lease_until=NULL"
        sql += " WHERE id=? AND state='running'"
        params: tuple[Any, ...] = (job_id,)
        if owner is not None:
            sql, params = sql + " AND owner=?", (job_id, owner)
        with self._tx() as db:
            return db.execute(sql, params).rowcount == 1

    def get_job(self, job_id: int) -> Job | None:
        rows = self._rows("SELECT * FROM jobs WHERE id=?", (job_id,))
        return _job(rows[0]) if rows else None

    def queue_depth(self) -> int:
        return int(self._rows("SELECT COUNT(*) AS n FROM jobs WHERE state IN ('queued','running')")[0]["n"])

    def job_counts(self) -> dict[str, int]:
        return {r["state"]: r["n"] for r in self._rows("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")}

    # -- threads -------------------------------------------------------------------------
    def is_bot_thread(self, channel: str, thread_ts: str) -> bool:
        return bool(self._rows("SELECT 1 FROM threads WHERE channel=? AND thread_ts=?", (channel, thread_ts)))

    def forget_thread(self, channel: str, thread_ts: str) -> None:
        """Drop a thread the bot never answered in (its job failed to post): no follow-ups there."""
        with self._tx() as db:
            db.execute(
                "DELETE FROM threads WHERE channel=? AND thread_ts=?"
                " AND NOT EXISTS (SELECT 1 FROM answers WHERE channel=? AND thread_ts=?)",
                (channel, thread_ts, channel, thread_ts),
            )

    def add_thread(self, *, channel: str, thread_ts: str, channel_type: str, started_by: str | None) -> None:
        with self._tx() as db:
            _insert_thread(db, channel=channel, thread_ts=thread_ts, channel_type=channel_type, started_by=started_by)

    # -- answers -------------------------------------------------------------------------
    def record_answer(
        self,
        *,
        job: Job | None,
        channel: str,
        thread_ts: str,
        message_ts: str | None,
        question: str,
        answer: Answer,
        latency_ms: float | None = None,
        first_text_ms: float | None = None,
        channel_type: str | None = None,
    ) -> int:
        """Store an answer with its sources and gaps in one transaction; returns its id."""
        u = answer.usage
        question = redact_text(question)
        text, topic, decision = (redact_text(v) if v else v for v in (answer.text, answer.topic, answer.decision))
        notes = [
            (kind, redact_text(d))
            for kind, items in (("gap", answer.gaps), ("conflict", answer.conflicts))
            for d in items
        ]
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO answers (job_id, channel, channel_type, thread_ts, message_ts, user, kind, question,"
                " text, topic, decision, confidence, model, input_tokens, output_tokens,"
                " cache_read_input_tokens, cache_creation_input_tokens, cost_usd, latency_ms, first_text_ms,"
                " created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    job.id if job else None,
                    channel,
                    channel_type or (job.channel_type if job else "channel"),
                    thread_ts,
                    message_ts,
                    job.user if job else None,
                    answer.kind,
                    question,
                    text,
                    topic,
                    decision,
                    answer.confidence,
                    answer.model,
                    u.input_tokens,
                    u.output_tokens,
                    u.cache_read_input_tokens,
                    u.cache_creation_input_tokens,
                    u.cost_usd,
                    latency_ms,
                    first_text_ms,
                    time.time(),
                ),
            )
            answer_id = int(cursor.lastrowid or 0)
            seen: set[tuple[str, str]] = set()
            for c in answer.citations:
                if (c.source, c.path) in seen:
                    continue
                seen.add((c.source, c.path))
                db.execute(
                    "INSERT INTO answer_sources (answer_id, path, source, heading, url) VALUES (?,?,?,?,?)",
                    (answer_id, c.path, c.source, c.heading, c.url),
                )
            now = time.time()
            for kind, description in notes:
                db.execute(
                    "INSERT INTO gaps (answer_id, kind, description, created_at) VALUES (?,?,?,?)",
                    (answer_id, kind, description, now),
                )
            return answer_id

    def answer_for_message(self, channel: str, message_ts: str) -> int | None:
        rows = self._rows(
            "SELECT id FROM answers WHERE channel=? AND message_ts=? ORDER BY id DESC LIMIT 1",
            (channel, message_ts),
        )
        return int(rows[0]["id"]) if rows else None

    def answers_since(self, since: float, until: float | None = None) -> list[StoredAnswer]:
        rows = self._rows(
            "SELECT * FROM answers WHERE created_at >= ? AND created_at < ? ORDER BY created_at",
            (since, until if until is not None else time.time() + 1),
        )
        return [
            StoredAnswer(
                id=r["id"],
                job_id=r["job_id"],
                channel=r["channel"],
                channel_type=r["channel_type"] or "unknown",
                thread_ts=r["thread_ts"],
                message_ts=r["message_ts"],
                user=r["user"],
                kind=r["kind"],
                question=r["question"] or "",
                text=r["text"] or "",
                topic=r["topic"],
                decision=r["decision"],
                created_at=r["created_at"],
                latency_ms=r["latency_ms"],
                input_tokens=r["input_tokens"] or 0,
                output_tokens=r["output_tokens"] or 0,
                cost_usd=r["cost_usd"] or 0.0,
            )
            for r in rows
        ]

    def sources_for(self, answer_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        if not answer_ids:
            return {}
        marks = ",".join("?" * len(answer_ids))
        out: dict[int, list[dict[str, Any]]] = {}
        for r in self._rows(f"SELECT * FROM answer_sources WHERE answer_id IN ({marks})", answer_ids):
            out.setdefault(r["answer_id"], []).append(r)
        return out

    def gaps_for(self, answer_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        if not answer_ids:
            return {}
        marks = ",".join("?" * len(answer_ids))
        out: dict[int, list[dict[str, Any]]] = {}
        for r in self._rows(f"SELECT * FROM gaps WHERE answer_id IN ({marks})", answer_ids):
            out.setdefault(r["answer_id"], []).append(r)
        return out

    # -- feedback ------------------------------------------------------------------------
    def record_feedback(
        self, *, channel: str, message_ts: str, user: str, value: str, comment: str | None = None
    ) -> int:
        """Store (or change) one user's feedback on one answer message; returns the feedback id."""
        answer_id = self.answer_for_message(channel, message_ts)
        comment = redact_text(comment) if comment else comment
        with self._tx() as db:
            db.execute(
                "INSERT INTO feedback (answer_id, channel, message_ts, user, value, comment, created_at)"
                " VALUES (?,?,?,?,?,?,?) ON CONFLICT(channel, message_ts, user) DO UPDATE SET"
                " value=excluded.value, comment=COALESCE(excluded.comment, feedback.comment),"
                " created_at=excluded.created_at",
                (answer_id, channel, message_ts, user, value, comment, time.time()),
            )
        rows = self._rows(
            "SELECT id FROM feedback WHERE channel=? AND message_ts=? AND user=?", (channel, message_ts, user)
        )
        return int(rows[0]["id"])

    def feedback_since(self, since: float, until: float | None = None) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM feedback WHERE created_at >= ? AND created_at < ? ORDER BY created_at",
            (since, until if until is not None else time.time() + 1),
        )

    # -- users ---------------------------------------------------------------------------
    def user_name(self, user_id: str, *, max_age: float = 86400.0) -> str | None:
        rows = self._rows("SELECT name, updated_at FROM users WHERE id=?", (user_id,))
        if rows and time.time() - (rows[0]["updated_at"] or 0) < max_age:
            return rows[0]["name"]
        return None

    def save_user_name(self, user_id: str, name: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO users (id, name, updated_at) VALUES (?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET name=excluded.name, updated_at=excluded.updated_at",
                (user_id, name, time.time()),
            )

    # -- digests -------------------------------------------------------------------------
    def claim_digest(self, period: str, channel: str) -> bool:
        """Reserve a digest period; False when it was already posted or is being posted."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO digests (period, channel, posted_at, status) VALUES (?,?,?,'posting')",
                (period, channel, time.time()),
            )
            return cursor.rowcount == 1

    def finish_digest(self, period: str, *, ts: str | None, ok: bool) -> None:
        with self._tx() as db:
            if ok:
                db.execute(
                    "UPDATE digests SET status='posted', ts=?, posted_at=? WHERE period=?",
                    (ts, time.time(), period),
                )
            else:
                db.execute("DELETE FROM digests WHERE period=?", (period,))

    def last_digest(self) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM digests WHERE status='posted' ORDER BY posted_at DESC LIMIT 1")
        return rows[0] if rows else None

    # -- stored text swept again --------------------------------------------------------
    # Once per detector version, every value in REDACTED_COLUMNS is read again and rewritten when
    # the detector redacts more of it than the one that wrote it. In steps of at most SWEEP_ROWS
    # rows and SWEEP_SECONDS of redaction: a step reads without a transaction (`sweep_read`),
    # redacts (`redact_batch`, no database), then writes its changes and how far it got in one
    # short transaction (`sweep_write`). `archbot run` calls them from a background task, the
    # reads and writes on the store's thread and the redaction off it, so acks and claims wait
    # for one read or write at most (`bot.store_async.sweep_stored_text`). Safe to interrupt (a
    # new start resumes where the last step committed) and to run twice at once (replicas on one
    # PostgreSQL): a value is rewritten only while it still holds what was read
    # (`WHERE col = old`), so neither a second sweeper nor a newer write is overwritten; the
    # detector leaves redacted text as it is, so sweeping twice changes nothing.
    def swept_versions(self) -> dict[str, float]:
        """Detector versions that finished a sweep of this database → when (unix seconds)."""
        out: dict[str, float] = {}
        for r in self._rows("SELECT key, value FROM kv WHERE key LIKE ?", (f"{SWEPT_KEY}%",)):
            try:
                out[r["key"][len(SWEPT_KEY) :]] = float(r["value"])
            except (TypeError, ValueError):
                continue
        return out

    def last_sweep(self) -> tuple[str, float] | None:
        """(the newest detector version that swept this database, when), or None if none ever did."""
        swept = self.swept_versions()
        if not swept:
            return None
        version = max(swept, key=lambda v: (_version_number(v) or -1, swept[v]))
        return version, swept[version]

    def needs_sweep(self, version: str | None = None) -> bool:
        """Whether detector `version` (default: this one) is newer than every one that swept the database."""
        version = version or detector_version()
        swept = self.swept_versions()
        number = _version_number(version)
        if version in swept:
            return False
        if number is None:  # not r<n>: only its own sweep counts
            return True
        return all((_version_number(v) or -1) < number for v in swept)

    def holds_text(self) -> bool:
        """Whether any table that the sweep reads has a row."""
        return any(self._rows(f"SELECT 1 AS x FROM {table} LIMIT 1") for table, _ in REDACTED_COLUMNS)

    def start_sweep(self, version: str | None = None) -> Sweep | None:
        """The sweep this detector still owes the database (resumed where an interrupted one
        committed its last step), or None when it or a newer one already swept."""
        version = version or detector_version()
        if not self.needs_sweep(version):
            return None
        sweep = Sweep(version=version)
        progress = self.get(f"{SWEEP_KEY}{version}")
        if progress:
            try:
                saved = json.loads(progress)
                tables = [t for t, _ in REDACTED_COLUMNS]
                sweep.table, sweep.after = tables.index(str(saved["table"])), int(saved["after"])
            except (ValueError, KeyError, TypeError):
                sweep.table, sweep.after = 0, 0
        return sweep

    def sweep_read(self, sweep: Sweep, *, rows: int = SWEEP_ROWS) -> SweepBatch:
        """A step's rows as they are now (no transaction)."""
        started = time.monotonic()
        table, columns = REDACTED_COLUMNS[sweep.table]
        read = self._rows(
            f"SELECT id, {', '.join(columns)} FROM {table} WHERE id > ? ORDER BY id LIMIT ?", (sweep.after, rows)
        )
        return SweepBatch(
            table=sweep.table, after=sweep.after, limit=rows, rows=read, read_seconds=time.monotonic() - started
        )

    def sweep_write(self, sweep: Sweep, batch: SweepBatch) -> Sweep:
        """Write a redacted batch (each value only while it still holds what was read) and how far
        the sweep got, in one transaction; `sweep` is updated and returned. The last step records
        the version as swept."""
        if sweep.done or (batch.table, batch.after) != (sweep.table, sweep.after):
            raise ValueError("a batch is written once, by the sweep that read it")
        started = time.monotonic()
        table = REDACTED_COLUMNS[batch.table][0]
        changed = 0
        with self._erasing(), self._tx() as db:
            for column, row_id, value, redacted in batch.changes:
                cursor = db.execute(
                    f"UPDATE {table} SET {column}=? WHERE id=? AND {column}=?", (redacted, row_id, value)
                )
                changed += max(cursor.rowcount, 0)
            if batch.next_table >= len(REDACTED_COLUMNS):
                db.execute(
                    "INSERT INTO kv (key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (f"{SWEPT_KEY}{sweep.version}", repr(time.time())),
                )
                db.execute("DELETE FROM kv WHERE key=?", (f"{SWEEP_KEY}{sweep.version}",))
            else:
                position = json.dumps({"table": REDACTED_COLUMNS[batch.next_table][0], "after": batch.next_after})
                db.execute(
                    "INSERT INTO kv (key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (f"{SWEEP_KEY}{sweep.version}", position),
                )
        sweep.table, sweep.after = batch.next_table, batch.next_after
        sweep.rows += batch.seen
        sweep.changed += changed
        if sweep.done and sweep.changed:
            self._after_sweep()
        wrote = time.monotonic() - started
        sweep.seconds += batch.read_seconds + batch.redact_seconds + wrote
        sweep.longest_hold = max(sweep.longest_hold, batch.read_seconds, wrote)
        return sweep

    def sweep_step(self, sweep: Sweep, *, rows: int = SWEEP_ROWS, seconds: float = SWEEP_SECONDS) -> Sweep:
        """One step of `sweep` in one call: read, redact, write (`sweep` is updated and returned)."""
        if sweep.done:
            return sweep
        return self.sweep_write(sweep, redact_batch(self.sweep_read(sweep, rows=rows), seconds=seconds))

    def sweep_stored_text(self, version: str | None = None) -> Sweep | None:
        """The whole sweep in one call (tests, tools); None when nothing was owed. Blocking."""
        sweep = self.start_sweep(version)
        while sweep is not None and not sweep.done:
            sweep = self.sweep_step(sweep)
        return sweep

    @contextmanager
    def _erasing(self) -> Iterator[None]:
        """SQLite's secure_delete while the sweep rewrites values: the space a value leaves is
        zeroed, not kept in the file's free space."""
        with self._lock:
            before = self.db.execute("PRAGMA secure_delete").fetchone()[0]
            self.db.execute("PRAGMA secure_delete=ON")
            try:
                yield
            finally:
                self.db.execute(f"PRAGMA secure_delete={int(before)}")

    def _after_sweep(self) -> None:
        """The pages that held the old values leave the write-ahead log (best effort: a reader
        holding the log open keeps it until its next checkpoint)."""
        with self._lock, contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- kv ------------------------------------------------------------------------------
    def get(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM kv WHERE key=?", (key,))
        return rows[0]["value"] if rows else None

    def put(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO kv (key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )

    # -- replicas (kv rows `replica:<owner>`) ---------------------------------------------
    def clock(self) -> float:
        """The database's notion of now (unix seconds): heartbeats of replicas on several hosts are
        compared on one clock. SQLite lives on this host: its clock is ours."""
        return time.time()

    def beat(self, owner: str, *, forget_after: float = 86400.0) -> None:
        """Record that the process `owner` is alive; drop beats of processes gone for `forget_after` s."""
        self.put(f"{REPLICA_KEY}{owner}", repr(self.clock()))
        gone = [o for o, age in self.replica_ages().items() if age > forget_after]
        if gone:
            with self._tx() as db:
                for o in gone:
                    db.execute("DELETE FROM kv WHERE key=?", (f"{REPLICA_KEY}{o}",))

    def replica_ages(self) -> dict[str, float]:
        """Seconds since each process's last heartbeat (owner → age)."""
        rows = self._rows("SELECT key, value FROM kv WHERE key LIKE ?", (f"{REPLICA_KEY}%",))
        now = self.clock()
        out: dict[str, float] = {}
        for r in rows:
            try:
                out[r["key"][len(REPLICA_KEY) :]] = now - float(r["value"])
            except (TypeError, ValueError):
                continue
        return out

    def get_json(self, key: str) -> Any:
        raw = self.get(key)
        return json.loads(raw) if raw else None

    def query(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        """Read-only aggregate queries for stats and the digest (SELECT only)."""
        if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
            raise ValueError("query() is read-only")
        return self._rows(sql, params)
