"""The store's contract, run against both backends: SQLite (the default) and PostgreSQL.

Claims and leases, dedupe under concurrent enqueue from two connections, claims racing from two
connections, orphan recovery from heartbeats, the digest period claimed once, and the read paths
(`stats`, the App Home figures) whose SQL is written once for both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bot.slack.home import load_figures
from bot.stats import collect_stats
from bot.store import Store
from bot.types import Answer, Citation, Usage

Opener = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """A function opening a new connection (a new Store) on one fresh database of the backend."""
    opened: list[Store] = []
    if request.param == "sqlite":

        def opener() -> Store:
            opened.append(Store(tmp_path / "archbot.db"))
            return opened[-1]
    else:
        from bot.store_pg import PgStore

        url = request.getfixturevalue("pg_url")

        def opener() -> Store:
            opened.append(PgStore(url))
            return opened[-1]

    yield opener
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Opener) -> Store:
    return open_store()


def enqueue(store: Store, ts: str, **extra) -> int | None:
    return store.enqueue(kind="mention", channel="C1", ts=ts, thread_ts=ts, user="U1", text=f"q {ts}", **extra)


def test_enqueue_dedupes_and_records_the_thread(store: Store) -> None:
    first = enqueue(store, "1.0", meta={"title": "x"})
    assert first is not None
    assert enqueue(store, "1.0") is None  # the mention/message twin, or a redelivery
    assert store.is_bot_thread("C1", "1.0")
    assert not store.is_bot_thread("C1", "2.0")
    job = store.get_job(first)
    assert job is not None and job.state == "queued" and job.user == "U1" and job.meta == {"title": "x"}
    assert store.queue_depth() == 1


def test_enqueue_many_is_one_transaction_that_still_dedupes(store: Store) -> None:
    """The ack path's group commit: several jobs, one commit, each told whether it was new."""
    earlier = enqueue(store, "1.0")

    def job(ts: str) -> dict[str, object]:
        return {"kind": "mention", "channel": "C1", "ts": ts, "thread_ts": ts, "user": "U1", "text": f"q {ts}"}

    ids = store.enqueue_many([job("1.0"), job("2.0"), job("2.0"), job("3.0")])
    assert ids[0] is None and ids[2] is None  # already stored, and a twin within the same batch
    assert ids[1] is not None and ids[3] is not None and len({earlier, ids[1], ids[3]}) == 3
    assert store.is_bot_thread("C1", "2.0") and store.is_bot_thread("C1", "3.0")
    assert store.queue_depth() == 3
    assert store.enqueue_many([]) == []


def test_claim_lease_finish(store: Store) -> None:
    a, b = enqueue(store, "1.0"), enqueue(store, "2.0")
    first = store.claim_job(owner="w1", lease_seconds=60)
    assert first is not None and first.id == a and first.attempts == 1 and first.state == "running"
    second = store.claim_job(owner="w1", lease_seconds=0.2)
    assert second is not None and second.id == b
    assert store.claim_job(owner="w1") is None  # nothing left, leases still valid
    deadline = time.time() + 5
    again = None
    while again is None and time.time() < deadline:  # the short lease expires: claimable again
        again = store.claim_job(owner="w2", lease_seconds=60)
    assert again is not None and again.id == b and again.attempts == 2
    store.extend_lease(a, lease_seconds=60)
    assert store.finish_job(a, state="done") is True
    assert store.finish_job(a, state="failed") is False  # ends once
    assert first.resumed is False and again.resumed is True  # claimed before: the job tidies up first
    assert store.requeue_job(b, owner="w1") is False  # w2 holds it now: not w1's to give back
    assert store.requeue_job(b, owner="w2") is True
    assert store.job_counts() == {"done": 1, "queued": 1}
    assert store.get_job(b).attempts == 1  # a shutdown re-queue gives the attempt back
    resumed = store.claim_job(owner="w3")
    assert resumed is not None and resumed.attempts == 2 and resumed.resumed is True


def test_concurrent_enqueue_from_two_connections_makes_one_job(open_store: Opener) -> None:
    one, two = open_store(), open_store()
    barrier = threading.Barrier(2)

    def deliver(store: Store, ts: str) -> int | None:
        barrier.wait()
        return enqueue(store, ts)

    with ThreadPoolExecutor(2) as pool:
        for i in range(20):
            results = list(pool.map(deliver, (one, two), (f"{i}.0", f"{i}.0")))
            assert sum(r is not None for r in results) == 1, results
    assert one.job_counts() == {"queued": 20}


def test_racing_claims_take_each_job_once(open_store: Opener) -> None:
    stores = [open_store(), open_store(), open_store()]
    for i in range(30):
        enqueue(stores[0], f"{i}.0")
    claimed: list[int] = []
    lock = threading.Lock()

    def drain(store: Store) -> None:
        while (job := store.claim_job(owner=f"w{id(store)}", lease_seconds=60)) is not None:
            with lock:
                claimed.append(job.id)

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(drain, stores))
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 30


def test_orphans_of_a_dead_replica_are_requeued(store: Store) -> None:
    enqueue(store, "1.0")
    enqueue(store, "2.0")
    dead = store.claim_job(owner="host-a:1:dead", lease_seconds=300)
    alive = store.claim_job(owner="host-b:2:alive", lease_seconds=300)
    store.beat("host-b:2:alive")
    store.beat("host-a:1:dead")
    ages = store.replica_ages()
    assert set(ages) >= {"host-a:1:dead", "host-b:2:alive"} and all(0 <= a < 60 for a in ages.values())
    stale = {"host-a:1:dead"}  # what a runner concludes when that beat is three beats old
    assert store.recover_orphans(owner="host-c:3:me", is_dead=lambda o: o in stale) == 1
    assert store.get_job(dead.id).state == "queued"
    assert store.get_job(alive.id).state == "running"
    resumed = store.claim_job(owner="host-c:3:me")
    assert resumed is not None and resumed.id == dead.id and resumed.attempts == 2


def test_digest_period_is_claimed_once_across_connections(open_store: Opener) -> None:
    stores = [open_store() for _ in range(3)]
    barrier = threading.Barrier(3)

    def claim(store: Store) -> bool:
        barrier.wait()
        return store.claim_digest("2026-W49", "CDIGEST")

    with ThreadPoolExecutor(3) as pool:
        assert sorted(pool.map(claim, stores)) == [False, False, True]
    stores[0].finish_digest("2026-W49", ts="9.9", ok=True)
    assert stores[1].last_digest()["ts"] == "9.9"
    assert stores[2].claim_digest("2026-W49", "CDIGEST") is False
    stores[2].finish_digest("2026-W50", ts=None, ok=False)  # a failed post frees its period
    assert stores[2].claim_digest("2026-W50", "CDIGEST") is True


def test_answers_feedback_names_and_reads(store: Store) -> None:
    job_id = enqueue(store, "1.0")
    job = store.claim_job(owner="w")
    assert job is not None and job.id == job_id
    answer = Answer(
        kind="answer",
        text="Use a bulkhead.",
        citations=[Citation(path="a.md", source="docs"), Citation(path="a.md", source="docs")],
        gaps=["no SLO doc"],
        conflicts=["a.md vs b.md"],
        usage=Usage(input_tokens=100, output_tokens=20, cost_usd=0.01),
    )
    answer_id = store.record_answer(
        job=job, channel="C1", thread_ts="1.0", message_ts="1.5", question="q?", answer=answer, latency_ms=1200.0
    )
    store.finish_job(job.id, state="done")
    assert store.answer_for_message("C1", "1.5") == answer_id
    [stored] = store.answers_since(0)
    assert stored.id == answer_id and stored.user == "U1" and stored.input_tokens == 100
    assert [s["path"] for s in store.sources_for([answer_id])[answer_id]] == ["a.md"]
    assert sorted(g["kind"] for g in store.gaps_for([answer_id])[answer_id]) == ["conflict", "gap"]
    first = store.record_feedback(channel="C1", message_ts="1.5", user="U2", value="down")
    again = store.record_feedback(channel="C1", message_ts="1.5", user="U2", value="up", comment="better")
    assert first == again
    [fb] = store.feedback_since(0)
    assert fb["value"] == "up" and fb["comment"] == "better" and fb["answer_id"] == answer_id
    store.save_user_name("U1", "ada")
    assert store.user_name("U1") == "ada"
    store.put("k", "v1")
    store.put("k", "v2")
    assert store.get("k") == "v2"
    stats = collect_stats(store, since=0)
    assert stats.questions == 1 and stats.failures == 0
    assert stats.busiest_channels[0]["channel"] == "C1"
    assert stats.most_cited_docs[0]["path"] == "a.md"
    figures = load_figures(store, now=time.time())
    assert (figures.answers, figures.up, figures.down) == (1, 1, 0)
    store.check_writable()
    assert store.ping()


def test_doctor_checks_the_postgres_it_uses(pg_url: str, tmp_path: Path) -> None:
    from bot.config import Settings
    from bot.doctor import check_database
    from bot.logs import Redactor
    from bot.store_pg import PgStore

    settings = Settings(database_url=pg_url, db_path=tmp_path / "index.db")
    redact = Redactor(settings.secrets())
    [check], store = check_database(settings, redact)
    assert check.status == "fail" and "not migrated" in check.detail and store is None
    PgStore(pg_url).close()  # what `archbot run` does at start
    [check], store = check_database(settings, redact)
    assert check.status == "ok" and "reachable, migrated, writable" in check.detail
    store.close()
    gone = Settings(database_url="postgresql://archbot:s3cret-pw@127.0.0.1:9/nowhere", db_path=tmp_path / "i.db")
    [check], store = check_database(gone, Redactor(gone.secrets()))
    assert check.status == "fail" and "unreachable" in check.detail and store is None
    assert "s3cret-pw" not in check.detail + (check.fix or "")


def test_both_backends_have_the_same_tables_and_columns(pg_url: str, tmp_path: Path) -> None:
    """A SQLite migration needs its PostgreSQL twin (bot/store_pg.py MIGRATIONS): this names what is missing."""
    from bot.store_pg import PgStore

    lite = Store(tmp_path / "archbot.db")
    pg = PgStore(pg_url)
    try:
        tables = [
            r["name"]
            for r in lite.query("SELECT name FROM sqlite_master WHERE type='table'")
            if not r["name"].startswith(("_", "sqlite_"))
        ]
        for table in tables:
            lite_cols = {r["name"] for r in lite.query(f"SELECT name FROM pragma_table_info('{table}')")}
            pg_cols = {
                r["column_name"]
                for r in pg.query("SELECT column_name FROM information_schema.columns WHERE table_name = ?", (table,))
            }
            missing, extra = lite_cols - pg_cols, pg_cols - lite_cols
            assert not missing and not extra, f"{table}: only in SQLite {missing}, only in PostgreSQL {extra}"
    finally:
        lite.close()
        pg.close()


def test_what_people_and_the_model_wrote_is_stored_with_credentials_redacted(store: Store) -> None:
    """Whoever calls the store, on both backends: a job's text, an answer's fields, gaps, feedback."""
    secret = "Zq7plantedStorePass41"
    url = f"postgres://app:{secret}@db:5432/x"
    [job_id] = store.enqueue_many(
        [{"kind": "mention", "channel": "C1", "ts": "1.0", "thread_ts": "1.0", "text": f"DB_PASSWORD={secret} ok?"}]
    )
    assert job_id is not None
    job = store.claim_job(owner="me")
    assert job is not None and job.text == "DB_PASSWORD=[redacted: password] ok?"
    answer = Answer(
        kind="answer",
        text=f"Use {url}.",
        topic=f"DB_PASSWORD={secret}",
        decision=f"keep {url}",
        gaps=[f"rotation of {url}"],
        conflicts=[f"two passwords: {url} vs DB_PASSWORD={secret}"],
    )
    store.record_answer(job=job, channel="C1", thread_ts="1.0", message_ts="1.5", question=job.text, answer=answer)
    store.record_feedback(channel="C1", message_ts="1.5", user="U2", value="down", comment=f"it said {url}")
    rows = [store.query(f"SELECT * FROM {table}") for table in ("jobs", "answers", "gaps", "feedback")]
    assert secret not in repr(rows)
    assert "postgres://app:[redacted: password]@db:5432/x" in repr(rows)
