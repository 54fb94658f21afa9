"""Rows stored before the current credential detector existed are redacted again, once per detector
version, on both backends (bot/store.py, "stored text swept again").

An older install wrote what people and the model said as it came (or with a detector that knew
fewer key shapes). Such rows are planted here straight through the store's own transaction, past
the redaction its writing methods apply; the sweep must leave no planted value in any table (nor,
with SQLite, in the file's bytes), leave ordinary text and a review's reply URL alone, record the
detector version, resume after an interruption, do nothing the second time, and stay correct with
two sweepers and a writer at once. `archbot doctor` says when an older detector (or none) swept
last. End to end: the bot restarts on such a database and a thread is continued: the model is sent
no planted value, and the database holds none once the start-up sweep is done.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.doctor import check_stored_text
from bot.redaction import detector_version
from bot.store import REDACTED_COLUMNS, SWEPT_KEY, Store, Sweep
from tests.conftest import bot_settings, running_bot
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.signing import post_event
from tests.fakes.slack import FakeSlack, event_callback, message_event
from tests.helpers import message_text, wait_answers
from tests.test_secrets import database_surfaces, model_surfaces
from tests.test_store import open_store  # noqa: F401 (a fixture: both backends)
from tests.test_user_credentials import API_KEY, DB_PASSWORD, PRIVATE_KEY, URL_PASSWORD, assert_nowhere, leaks

Opener = Callable[[], Store]
REPLY_URL = "https://hooks.slack.com/commands/T1/1234567890/PlantedReplyUrl0123"
ORDINARY = "Should the password policy require 12 characters? The key point is idempotency."
TABLES = ("jobs", "threads", "answers", "answer_sources", "gaps", "feedback", "users", "digests", "kv")


def plant_old_rows(store: Store, *, threads: int = 3, channel: str = "C1", first_ts: int = 1700000000) -> list[str]:
    """What an install older than the detector left: per thread a job, its answer with a gap, and
    feedback with a comment, all holding credentials as they were written. The threads' ts."""
    stamps: list[str] = []
    with store._tx() as db:  # the store's own transaction, without its writing methods' redaction
        for i in range(threads):
            ts = f"{first_ts + i}.000100"
            stamps.append(ts)
            meta = json.dumps({"title": f"Sessions, DB_PASSWORD={DB_PASSWORD}", "response_url": REPLY_URL})
            job = db.execute(
                "INSERT INTO jobs (kind, channel, channel_type, ts, thread_ts, user, text, state, attempts,"
                " created_at, meta) VALUES ('mention',?,'channel',?,?,'U1',?,'done',1,?,?)",
                (channel, ts, ts, f"<@UBOT> is this safe? DB_PASSWORD={DB_PASSWORD}\n{ORDINARY}", 1.0e9 + i, meta),
            ).lastrowid
            db.execute(
                "INSERT OR IGNORE INTO threads (channel, thread_ts, channel_type, started_by, created_at)"
                " VALUES (?,?,'channel','U1',?)",
                (channel, ts, 1.0e9 + i),
            )
            answer = db.execute(
                "INSERT INTO answers (job_id, channel, channel_type, thread_ts, message_ts, user, kind, question,"
                " text, topic, decision, confidence, model, input_tokens, output_tokens, cost_usd, created_at)"
                " VALUES (?,?,'channel',?,?,'U1','answer',?,?,?,?,'high','m',10,20,0.001,?)",
                (
                    job,
                    channel,
                    ts,
                    f"{ts}9",
                    f"is this safe? DB_PASSWORD={DB_PASSWORD}",
                    f"Your settings: postgres://app:{URL_PASSWORD}@db.internal:5432/orders.\n\n{PRIVATE_KEY}",
                    f"DB_PASSWORD={DB_PASSWORD}",
                    f"use postgres://app:{URL_PASSWORD}@db.internal/orders",
                    1.0e9 + i,
                ),
            ).lastrowid
            db.execute(
                "INSERT INTO gaps (answer_id, kind, description, created_at) VALUES (?, 'gap', ?, ?)",
                (answer, f"where {API_KEY} is rotated", 1.0e9 + i),
            )
            db.execute(
                "INSERT INTO feedback (answer_id, channel, message_ts, user, value, comment, created_at)"
                " VALUES (?,?,?,'U2','down',?,?)",
                (answer, channel, f"{ts}9", f"it printed {API_KEY}! {ORDINARY}", 1.0e9 + i),
            )
    return stamps


def stored(store: Store) -> dict[str, str]:
    """Every row of every table of the store, as text."""
    return {f"table {t}": repr(store.query(f"SELECT * FROM {t}")) for t in TABLES}


def run(sweep: Sweep | None, store: Store, **step: Any) -> Sweep:
    assert sweep is not None
    while not sweep.done:
        sweep = store.sweep_step(sweep, **step)
    return sweep


def test_a_sweep_redacts_what_an_older_install_stored(open_store: Opener, tmp_path: Path) -> None:  # noqa: F811
    store = open_store()
    plant_old_rows(store, threads=5)
    assert leaks(repr(stored(store)))  # planted as they came
    assert store.needs_sweep() and store.last_sweep() is None

    sweep = run(store.start_sweep(), store, rows=2)  # small steps: several per table
    assert sweep.version == detector_version()
    assert sweep.rows == 5 * 4  # jobs, answers, gaps, feedback
    assert sweep.changed == 5 * (2 + 4 + 1 + 1)  # text and meta; question, text, topic, decision; description; comment
    assert_nowhere(stored(store))
    if store.backend == "sqlite":
        assert_nowhere(database_surfaces(tmp_path / "archbot.db"))  # not in free space nor in the log either

    job = store.query("SELECT text, meta FROM jobs ORDER BY id LIMIT 1")[0]
    assert job["text"] == f"<@UBOT> is this safe? DB_PASSWORD=[redacted: password]\n{ORDINARY}"
    assert json.loads(job["meta"]) == {"title": "Sessions, DB_PASSWORD=[redacted: password]", "response_url": REPLY_URL}
    answer = store.query("SELECT text, topic, decision FROM answers ORDER BY id LIMIT 1")[0]
    assert "postgres://app:[redacted: password]@db.internal:5432/orders" in answer["text"]
    assert "[redacted: private key]" in answer["text"]
    assert answer["topic"] == "DB_PASSWORD=[redacted: password]"
    comment = store.query("SELECT comment FROM feedback ORDER BY id LIMIT 1")[0]["comment"]
    assert comment == f"it printed [redacted: anthropic key]! {ORDINARY}"
    assert "[redacted: anthropic key]" in store.query("SELECT description FROM gaps LIMIT 1")[0]["description"]

    version, _ = store.last_sweep() or ("", 0.0)
    assert version == detector_version() and not store.needs_sweep()
    assert store.start_sweep() is None  # the second start: nothing owed
    again = run(Sweep(version=detector_version()), store)  # forced anyway: every value stays as it is
    assert again.rows == sweep.rows and again.changed == 0
    assert store.query("SELECT key FROM kv WHERE key LIKE 'redaction:sweep:%'") == []  # no progress left behind


def test_every_free_text_column_is_swept() -> None:
    """The columns the store's writers redact (enqueue_many, record_answer, record_feedback) are the
    ones swept; a new free-text column belongs in both places, and in this list."""
    assert dict(REDACTED_COLUMNS) == {
        "jobs": ("text", "meta"),
        "answers": ("question", "text", "topic", "decision"),
        "gaps": ("description",),
        "feedback": ("comment",),
    }


def test_an_interrupted_sweep_resumes_where_its_last_step_committed(open_store: Opener) -> None:  # noqa: F811
    first = open_store()
    plant_old_rows(first, threads=4)
    sweep = first.start_sweep()
    assert sweep is not None
    for _ in range(4):  # jobs 1-2, 3-4, none left (a full step cannot tell), answers 1-2
        sweep = first.sweep_step(sweep, rows=2)
    assert (REDACTED_COLUMNS[sweep.table][0], sweep.after) == ("answers", 2)
    first.close()  # the process stops here

    second = open_store()
    resumed = second.start_sweep()
    assert resumed is not None and (resumed.table, resumed.after) == (sweep.table, sweep.after)
    # One row per step when the time allowed is spent: the rest of a batch waits for the next step.
    resumed = run(resumed, second, rows=50, seconds=0.0)
    assert resumed.rows == 2 + 4 + 4  # answers 3-4, gaps, feedback: nothing read twice
    assert_nowhere(stored(second))
    assert second.start_sweep() is None


def test_two_sweepers_and_a_writer_at_once(open_store: Opener) -> None:  # noqa: F811
    """Replicas starting together both sweep; a comment changed meanwhile is not put back."""
    stores = [open_store(), open_store(), open_store()]
    plant_old_rows(stores[0], threads=30)
    start = threading.Barrier(3)
    sweeps: list[Sweep] = []
    errors: list[BaseException] = []

    def sweeper(store: Store) -> None:
        try:
            sweep = store.start_sweep()
            start.wait()
            sweeps.append(run(sweep, store, rows=7))
        except BaseException as exc:
            errors.append(exc)

    def writer(store: Store) -> None:
        try:
            start.wait()
            for i in range(30):  # people change their feedback while the sweep runs
                ts = f"{1700000000 + i}.0001009"
                store.record_feedback(channel="C1", message_ts=ts, user="U2", value="up", comment=f"fine now {i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sweeper, args=(s,)) for s in stores[:2]]
    threads.append(threading.Thread(target=writer, args=(stores[2],)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(sweeps) == 2 and all(s.rows == 30 * 4 for s in sweeps)
    # Each value is rewritten once, by whichever sweeper came first; a comment the writer had
    # already replaced is not rewritten at all.
    assert 30 * 7 <= sum(s.changed for s in sweeps) <= 30 * 8
    assert_nowhere(stored(stores[0]))
    comments = [r["comment"] for r in stores[0].query("SELECT comment FROM feedback ORDER BY id")]
    assert comments == [f"fine now {i}" for i in range(30)]  # the newer write stays
    assert list(stores[0].swept_versions()) == [detector_version()]


def test_a_newer_detectors_sweep_counts_an_older_ones_does_not(open_store: Opener) -> None:  # noqa: F811
    store = open_store()
    plant_old_rows(store, threads=1)
    store.put(f"{SWEPT_KEY}r5", "1700000000.0")  # the install's own, older detector
    assert store.needs_sweep("r6") and store.last_sweep() == ("r5", 1700000000.0)
    store.put(f"{SWEPT_KEY}r7", "1700000001.0")  # a newer replica already swept
    assert not store.needs_sweep("r6") and store.start_sweep("r6") is None
    assert store.needs_sweep("r10") and store.last_sweep() == ("r7", 1700000001.0)  # 10 > 7, not "r10" < "r7"


# -- archbot doctor -------------------------------------------------------------------------------
def test_doctor_says_when_an_older_detector_or_none_swept(open_store: Opener) -> None:  # noqa: F811
    store = open_store()
    assert check_stored_text(store) == []  # nothing stored: nothing to say
    plant_old_rows(store, threads=1)
    now = 1_800_000_000.0
    [never] = check_stored_text(store, now=now)
    assert never.status == "warn" and never.name == "stored text"
    assert never.lines() == [
        f"! stored text: never swept by the credential detector: rows stored before detector {detector_version()}"
        " may hold credentials it redacts",
        "    fix: start `archbot run` (one replica is enough): at start it redacts the stored text again in the"
        " background, in short steps between the acks.",
    ]

    store.put(f"{SWEPT_KEY}r5", repr(now - 3 * 86400))
    [older] = check_stored_text(store, now=now)
    assert older.status == "warn"
    assert older.lines()[0] == (
        "! stored text: last swept for credentials by detector r5 (3 days ago), older than this version's"
        f" {detector_version()}: rows stored before may hold credentials it redacts"
    )
    assert older.lines()[1].startswith("    fix: start `archbot run`")

    store.sweep_stored_text()
    [done] = check_stored_text(store)
    assert done.lines() == [f"✓ stored text: swept for credentials by detector {detector_version()} (just now)"]
    assert not leaks(repr([c.lines() for c in (never, older, done)]))


# -- end to end: a thread continued after a restart -----------------------------------------------
async def test_a_thread_continued_after_restart_sends_no_stored_credential(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    settings = bot_settings(tmp_path, slack, model)
    old = Store(settings.db_path)  # the older install's database, as it left it
    [thread_ts, other_ts] = plant_old_rows(old, threads=2)
    old.put(f"{SWEPT_KEY}r5", "1700000000.0")
    old.close()
    # The thread in Slack: the question (its credential redacted as the bot reads it) and the answer.
    question = f"<@UBOT> how do the orders service and its database talk? DB_PASSWORD={DB_PASSWORD}"
    slack.add_message("C1", question, user="U1", ts=thread_ts)
    slack.add_message(
        "C1", "Through a pool, behind a circuit breaker.", user="UBOT", bot_id=slack.bot_id, thread_ts=thread_ts
    )

    async with running_bot(settings) as bot:
        assert bot.redaction_sweep is not None
        await bot.redaction_sweep
        assert bot.store.last_sweep() is not None and not bot.store.needs_sweep()
        assert_nowhere(database_surfaces(settings.db_path))

        reply = slack.add_message("C1", "and how do we rotate its password?", user="U1", thread_ts=thread_ts)
        event = message_event(reply.text, channel="C1", user="U1", ts=reply.ts, thread_ts=thread_ts)
        assert (await post_event(f"http://127.0.0.1:{bot.port}", slack.signing_secret, event_callback(event)))[0] == 200
        [answer] = await wait_answers(slack, "C1", thread_ts)
        assert message_text(answer)
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 3})

    sent = json.dumps([r.body for r in model.message_requests if r.body.get("stream")])
    assert "and how do we rotate its password?" in sent and "circuit breaker" in sent  # the thread was read
    assert "DB_PASSWORD=[redacted: password]" in sent
    assert_nowhere(model_surfaces(model))
    assert_nowhere(database_surfaces(settings.db_path))
    assert other_ts  # the other thread was swept too (database_surfaces covers every row)
