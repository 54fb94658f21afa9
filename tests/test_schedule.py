"""The digest schedule: cron in a timezone across DST changes, and the scheduler's once-per-period loop.

Time is driven by a fake clock handed to `DigestScheduler(now=...)`; posting goes through the
real `AsyncWebClient` to the fake Slack, and "posted once" is read from what the fake received
and from the `digests` table of a real SQLite file.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.schedule import (
    SEEN_KEY,
    DigestScheduler,
    Period,
    ScheduleError,
    fire_times,
    next_fire,
    parse_period_key,
    period_ending,
    period_key,
    previous_fire,
    resolve_wall_time,
)
from bot.store import Store
from bot.types import Answer
from tests.fakes.slack import FakeSlack

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
WEEKLY = "0 9 * * MON"


def at(zone: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=zone, fold=fold)  # type: ignore[misc]


# -- schedule computation ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("zone", "start", "expected"),
    [
        # Berlin springs forward on Sun 30 Mar 2025 and falls back on Sun 26 Oct 2025.
        (BERLIN, (2025, 3, 25), [(2025, 3, 31, 9, "+02:00"), (2025, 4, 7, 9, "+02:00")]),
        (BERLIN, (2025, 3, 18), [(2025, 3, 24, 9, "+01:00"), (2025, 3, 31, 9, "+02:00")]),
        (BERLIN, (2025, 10, 21), [(2025, 10, 27, 9, "+01:00"), (2025, 11, 3, 9, "+01:00")]),
        (BERLIN, (2025, 10, 14), [(2025, 10, 20, 9, "+02:00"), (2025, 10, 27, 9, "+01:00")]),
        # New York springs forward on Sun 9 Mar 2025 and falls back on Sun 2 Nov 2025.
        (NEW_YORK, (2025, 3, 4), [(2025, 3, 10, 9, "-04:00"), (2025, 3, 17, 9, "-04:00")]),
        (NEW_YORK, (2025, 2, 25), [(2025, 3, 3, 9, "-05:00"), (2025, 3, 10, 9, "-04:00")]),
        (NEW_YORK, (2025, 10, 28), [(2025, 11, 3, 9, "-05:00"), (2025, 11, 10, 9, "-05:00")]),
        (NEW_YORK, (2025, 10, 21), [(2025, 10, 27, 9, "-04:00"), (2025, 11, 3, 9, "-05:00")]),
    ],
)
def test_weekly_fire_stays_at_nine_local_across_dst(zone: ZoneInfo, start: tuple, expected: list[tuple]) -> None:
    fires = fire_times(WEEKLY, zone, at(zone, *start), 2)
    assert [f.isoformat() for f in fires] == [
        f"{y:04d}-{m:02d}-{d:02d}T{h:02d}:00:00{off}" for y, m, d, h, off in expected
    ]
    # The UTC gap between the two is 7 days +/- the hour the clocks moved.
    gap = fires[1].astimezone(UTC) - fires[0].astimezone(UTC)
    assert gap in (timedelta(days=7), timedelta(days=7, hours=-1), timedelta(days=7, hours=1))


def test_spring_forward_week_is_one_hour_shorter_in_utc() -> None:
    mon1, mon2 = fire_times(WEEKLY, BERLIN, at(BERLIN, 2025, 3, 24, 8), 2)
    assert mon2.astimezone(UTC) - mon1.astimezone(UTC) == timedelta(days=7, hours=-1)
    mon1, mon2 = fire_times(WEEKLY, BERLIN, at(BERLIN, 2025, 10, 20, 8), 2)
    assert mon2.astimezone(UTC) - mon1.astimezone(UTC) == timedelta(days=7, hours=1)


@pytest.mark.parametrize(
    ("cron", "zone", "start", "first"),
    [
        ("30 2 * * *", BERLIN, (2025, 3, 29, 12), "2025-03-30T03:00:00+02:00"),
        ("0 2 * * *", BERLIN, (2025, 3, 29, 12), "2025-03-30T03:00:00+02:00"),
        ("30 2 * * SUN", NEW_YORK, (2025, 3, 8, 12), "2025-03-09T03:00:00-04:00"),
    ],
)
def test_a_time_in_the_spring_gap_fires_once_when_the_gap_ends(
    cron: str, zone: ZoneInfo, start: tuple, first: str
) -> None:
    fires = fire_times(cron, zone, at(zone, *start), 3)
    assert fires[0].isoformat() == first
    assert fires[1] - fires[0] >= timedelta(hours=23)  # not twice that morning


@pytest.mark.parametrize(
    ("cron", "zone", "start", "first", "second"),
    [
        ("30 2 * * *", BERLIN, (2025, 10, 25, 12), "2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00"),
        ("30 1 * * *", NEW_YORK, (2025, 11, 1, 12), "2025-11-02T01:30:00-04:00", "2025-11-03T01:30:00-05:00"),
    ],
)
def test_a_time_that_happens_twice_in_autumn_fires_once(
    cron: str, zone: ZoneInfo, start: tuple, first: str, second: str
) -> None:
    fires = fire_times(cron, zone, at(zone, *start), 2)
    assert [f.isoformat() for f in fires] == [first, second]


def test_previous_fire_from_inside_the_repeated_hour() -> None:
    # 02:40 in the second pass (fold=1): 02:30 already fired, in the first pass.
    now = at(BERLIN, 2025, 10, 26, 2, 40, fold=1)
    assert previous_fire("30 2 * * *", BERLIN, now).isoformat() == "2025-10-26T02:30:00+02:00"
    assert next_fire("30 2 * * *", BERLIN, now).isoformat() == "2025-10-27T02:30:00+01:00"
    # and 02:20 in the second pass is still after the first-pass 02:30 in real time
    assert previous_fire("30 2 * * *", BERLIN, at(BERLIN, 2025, 10, 26, 2, 20, fold=1)).day == 26


def test_resolve_wall_time() -> None:
    assert resolve_wall_time(datetime(2025, 3, 30, 2, 30), BERLIN).isoformat() == "2025-03-30T03:00:00+02:00"
    assert resolve_wall_time(datetime(2025, 10, 26, 2, 30), BERLIN).isoformat() == "2025-10-26T02:30:00+02:00"
    assert resolve_wall_time(datetime(2025, 6, 1, 9, 0), BERLIN).isoformat() == "2025-06-01T09:00:00+02:00"
    # Lord Howe Island moves its clocks by 30 minutes.
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    assert resolve_wall_time(datetime(2025, 10, 5, 2, 10), lord_howe).isoformat() == "2025-10-05T02:30:00+11:00"


@pytest.mark.parametrize(
    "tz", ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
)
def test_daily_cron_fires_exactly_once_per_local_day_for_two_years(tz: str) -> None:
    zone = ZoneInfo(tz)
    fires = fire_times("30 2 * * *", zone, at(zone, 2024, 12, 31, 12), 730)
    days = [f.astimezone(zone).date() for f in fires]
    assert days == sorted(set(days))  # one per day, in order
    assert (days[-1] - days[0]).days == 729  # no day skipped
    assert all(b > a for a, b in itertools.pairwise(fires))


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York"])
def test_hourly_cron_is_increasing_through_both_transitions(tz: str) -> None:
    zone = ZoneInfo(tz)
    for start in (
        at(zone, 2025, 3, 8, 20),
        at(zone, 2025, 3, 29, 20),
        at(zone, 2025, 10, 25, 20),
        at(zone, 2025, 11, 1, 20),
    ):
        fires = fire_times("0 * * * *", zone, start, 30)
        assert all(b > a for a, b in itertools.pairwise(fires))
        for f in fires:
            assert previous_fire("0 * * * *", zone, f) == f
            assert next_fire("0 * * * *", zone, f.astimezone(UTC) - timedelta(seconds=1)) == f
            assert period_ending("0 * * * *", zone, f).since.astimezone(UTC) < f.astimezone(UTC)


def test_previous_and_next_bracket_now_in_several_zones() -> None:
    for tz in ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"):
        zone = ZoneInfo(tz)
        now = datetime(2025, 3, 30, 1, 30, tzinfo=UTC)
        while now < datetime(2025, 4, 2, tzinfo=UTC):
            prev, nxt = previous_fire(WEEKLY, zone, now), next_fire(WEEKLY, zone, now)
            assert prev <= now < nxt
            assert prev.astimezone(zone).strftime("%a %H:%M") == "Mon 09:00"
            now += timedelta(minutes=37)


def test_period_keys_are_utc_and_round_trip() -> None:
    fire = at(BERLIN, 2025, 3, 31, 9)
    assert period_key(fire) == "2025-03-31T07:00Z"
    assert period_key(fire.astimezone(NEW_YORK)) == period_key(fire)
    assert parse_period_key(period_key(fire)) == fire
    assert parse_period_key("manual") is None
    period = period_ending(WEEKLY, BERLIN, fire)
    assert period.since.isoformat() == "2025-03-24T09:00:00+01:00"
    assert period.key == "2025-03-31T07:00Z"


def test_a_cron_that_never_matches_raises() -> None:
    with pytest.raises(ScheduleError):
        next_fire("0 0 30 2 *", BERLIN, at(BERLIN, 2025, 1, 1))


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        next_fire(WEEKLY, BERLIN, datetime(2025, 1, 1))


# -- the scheduler ----------------------------------------------------------------------------
class Clock:
    """A settable wall clock for the scheduler."""

    def __init__(self, start: datetime) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t

    def set(self, t: datetime) -> None:
        self.t = t


def make_settings(tmp_path: Path, slack: FakeSlack, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "slack_bot_token": slack.bot_token,
        "slack_api_url": slack.api_url,
        "db_path": tmp_path / "archbot.db",
        "digest_channel": "CDIGEST",
        "digest_cron": WEEKLY,
        "tz": "Europe/Berlin",
        "log_format": "text",
    }
    values.update(overrides)
    return Settings(**values)


def digest_posts(slack: FakeSlack) -> list[Any]:
    """Parent digest messages the fake received (thread replies left out)."""
    return [
        c
        for c in slack.calls_to("chat.postMessage")
        if c.args.get("channel") == "CDIGEST" and not c.args.get("thread_ts")
    ]


def seed_answer(store: Store) -> None:
    job_id = store.enqueue(kind="mention", channel="CPUB", ts="1.0", thread_ts="1.0", user="U1", text="q")
    job = store.claim_job()
    assert job_id and job
    store.record_answer(
        job=job,
        channel="CPUB",
        thread_ts="1.0",
        message_ts="1.1",
        question="How?",
        answer=Answer(kind="answer", text="So."),
    )


async def test_fresh_install_posts_at_the_first_fire_time_not_before(tmp_path: Path, slack: FakeSlack) -> None:
    settings = make_settings(tmp_path, slack)
    store = Store(settings.db_path)
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    clock = Clock(at(BERLIN, 2025, 3, 26, 15))  # a Wednesday, first start ever, empty database
    scheduler = DigestScheduler(settings, store, client, now=clock)

    tick = await scheduler.tick()
    assert tick.outcome == "skipped_catch_up"
    assert tick.wake_at.astimezone(BERLIN).isoformat() == "2025-03-31T09:00:00+02:00"  # the Monday after the DST change
    assert digest_posts(slack) == []

    clock.set(at(BERLIN, 2025, 3, 31, 9, 0, 1))
    tick = await scheduler.tick()
    assert tick.outcome == "posted" and tick.period == "2025-03-31T07:00Z"
    assert len(digest_posts(slack)) == 1
    assert (await scheduler.tick()).outcome == "already_done"
    assert len(digest_posts(slack)) == 1
    rows = store.query("SELECT period, status, ts FROM digests")
    assert rows == [{"period": "2025-03-31T07:00Z", "status": "posted", "ts": tick.ts}]
    store.close()


async def test_the_wait_across_a_dst_change_is_counted_in_real_hours(tmp_path: Path, slack: FakeSlack) -> None:
    for tz, start, hours in (
        ("Europe/Berlin", at(BERLIN, 2025, 3, 30, 1, 30), 30.5),  # clocks jump 02:00 -> 03:00 that night
        ("Europe/Berlin", at(BERLIN, 2025, 10, 26, 1, 30), 32.5),  # 03:00 -> 02:00
        ("America/New_York", at(NEW_YORK, 2025, 3, 9, 1, 30), 30.5),
        ("America/New_York", at(NEW_YORK, 2025, 11, 2, 0, 30), 33.5),
    ):
        settings = make_settings(tmp_path, slack, tz=tz, db_path=tmp_path / f"{start.isoformat()[:13]}-{tz[:3]}.db")
        store = Store(settings.db_path)
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        tick = await DigestScheduler(settings, store, client, now=Clock(start)).tick()
        assert tick.outcome == "skipped_catch_up"
        assert (tick.wake_at - start.astimezone(UTC)).total_seconds() == hours * 3600, tz
        assert tick.wake_at.astimezone(settings.zone).strftime("%a %H:%M") == "Mon 09:00"
        store.close()


async def test_missed_period_is_caught_up_once_after_downtime(tmp_path: Path, slack: FakeSlack) -> None:
    settings = make_settings(tmp_path, slack)
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    store = Store(settings.db_path)
    clock = Clock(at(BERLIN, 2025, 3, 3, 9, 0, 5))
    first = DigestScheduler(settings, store, client, now=clock)
    assert (await first.tick()).outcome == "skipped_catch_up"  # first ever start, nothing stored yet
    clock.set(at(BERLIN, 2025, 3, 10, 9, 0, 5))
    assert (await first.tick()).outcome == "posted"
    store.close()

    # Down from 10 March to Wednesday 2 April: three Mondays missed (17, 24, 31 March).
    store = Store(settings.db_path)
    clock = Clock(at(BERLIN, 2025, 4, 2, 11))
    second = DigestScheduler(settings, store, client, now=clock)
    tick = await second.tick()
    assert tick.outcome == "posted"
    assert tick.period == "2025-03-31T07:00Z"  # only the most recent one
    assert (await second.tick()).outcome == "already_done"
    posts = digest_posts(slack)
    assert len(posts) == 2
    # The catch-up covers the weeks since the last digest, so nothing is silently dropped.
    header = posts[-1].args["blocks"][0]["text"]["text"]
    assert "10 Mar – 31 Mar 2025" in header
    assert [r["period"] for r in store.query("SELECT period FROM digests ORDER BY period")] == [
        "2025-03-10T08:00Z",
        "2025-03-31T07:00Z",
    ]
    # The next regular Monday is posted as usual.
    clock.set(at(BERLIN, 2025, 4, 7, 9, 1))
    assert (await second.tick()).outcome == "posted"
    assert len(digest_posts(slack)) == 3
    store.close()


async def test_a_deployment_with_answers_catches_up_on_its_first_start(tmp_path: Path, slack: FakeSlack) -> None:
    settings = make_settings(tmp_path, slack)
    store = Store(settings.db_path)
    seed_answer(store)  # stored "now" (real time)
    real_now = datetime.now(UTC)
    # The clock says the Monday after the answer: the answer is in the missed period.
    monday = next_fire(WEEKLY, BERLIN, real_now)
    clock = Clock(monday + timedelta(hours=2))
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    tick = await DigestScheduler(settings, store, client, now=clock).tick()
    assert tick.outcome == "posted" and tick.period == period_key(monday)
    store.close()


async def test_no_double_post_across_a_restart(tmp_path: Path, slack: FakeSlack) -> None:
    settings = make_settings(tmp_path, slack)
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    clock = Clock(at(BERLIN, 2025, 3, 24, 8, 59))
    store = Store(settings.db_path)
    store.put(SEEN_KEY, "1")  # the bot ran before
    assert (await DigestScheduler(settings, store, client, now=clock).tick()).outcome == "posted"  # 17 March, caught up
    clock.set(at(BERLIN, 2025, 3, 24, 9, 0, 1))
    assert (await DigestScheduler(settings, store, client, now=clock).tick()).outcome == "posted"
    store.close()

    for minutes in (1, 30, 600):  # three restarts later the same day: nothing new
        store = Store(settings.db_path)
        clock.set(at(BERLIN, 2025, 3, 24, 9) + timedelta(minutes=minutes))
        assert (await DigestScheduler(settings, store, client, now=clock).tick()).outcome == "already_done"
        store.close()
    assert len(digest_posts(slack)) == 2


async def test_two_schedulers_on_one_database_post_once(tmp_path: Path, slack: FakeSlack) -> None:
    settings = make_settings(tmp_path, slack)
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    clock = Clock(at(BERLIN, 2025, 6, 2, 8))
    stores = [Store(settings.db_path), Store(settings.db_path)]
    a, b = (DigestScheduler(settings, s, client, now=clock) for s in stores)
    a.start()  # both up before the fire time (two replicas on one database)
    b.start()
    clock.set(at(BERLIN, 2025, 6, 2, 9, 0, 1))
    ticks = await asyncio.gather(a.tick(), b.tick())
    assert sorted(t.outcome for t in ticks) == ["already_done", "posted"]
    assert len(digest_posts(slack)) == 1
    for s in stores:
        s.close()


async def test_a_failed_post_is_retried_later_in_the_same_period(tmp_path: Path, slack: FakeSlack) -> None:
    settings = make_settings(tmp_path, slack)
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    store = Store(settings.db_path)
    store.put(SEEN_KEY, "1")
    clock = Clock(at(BERLIN, 2025, 6, 2, 9, 0, 1))
    scheduler = DigestScheduler(settings, store, client, now=clock)
    slack.fail("chat.postMessage", error="channel_not_found", times=1)
    tick = await scheduler.tick()
    assert tick.outcome == "failed"
    assert tick.wake_at == clock.t + timedelta(seconds=60)
    assert store.query("SELECT * FROM digests") == []  # the claim was released
    assert (await scheduler.tick()).outcome == "failed"  # not before the retry time: no call
    assert len(slack.calls_to("chat.postMessage", include_failed=True)) == 1
    clock.set(clock.t + timedelta(seconds=61))
    assert (await scheduler.tick()).outcome == "posted"
    store.close()


async def test_run_returns_at_once_without_a_channel(tmp_path: Path, slack: FakeSlack) -> None:
    settings = make_settings(tmp_path, slack, digest_channel=None)
    store = Store(settings.db_path)
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    await asyncio.wait_for(DigestScheduler(settings, store, client).run(asyncio.Event()), timeout=2)
    assert store.get(SEEN_KEY) is None and slack.calls == []
    store.close()


async def test_run_posts_as_the_clock_moves_and_stops_promptly(tmp_path: Path, slack: FakeSlack) -> None:
    settings = make_settings(tmp_path, slack)
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    store = Store(settings.db_path)
    store.put(SEEN_KEY, "1")
    clock = Clock(at(BERLIN, 2025, 3, 26, 15))
    # max_wait keeps the real waits short, so the loop notices the fake clock moving.
    scheduler = DigestScheduler(settings, store, client, now=clock, max_wait=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    await slack.wait_for(lambda f: len(digest_posts(f)) == 1)  # the catch-up for Monday 24 March
    clock.set(at(BERLIN, 2025, 3, 31, 9, 0, 1))
    await slack.wait_for(lambda f: len(digest_posts(f)) == 2)
    stop.set()
    await asyncio.wait_for(task, timeout=2)
    assert len(digest_posts(slack)) == 2
    store.close()


async def test_run_wakes_from_a_long_wait_when_stopped(tmp_path: Path, slack: FakeSlack) -> None:
    settings = make_settings(tmp_path, slack)
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    store = Store(settings.db_path)
    ticks: list[datetime] = []
    clock = Clock(at(BERLIN, 2025, 3, 26, 15))

    def now() -> datetime:
        ticks.append(clock.t)
        return clock.t

    scheduler = DigestScheduler(settings, store, client, now=now)  # next fire is days away
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    await slack.wait_for(lambda f: store.get(SEEN_KEY) is not None)
    stop.set()
    await asyncio.wait_for(task, timeout=2)
    assert len(ticks) < 10  # waited on `stop`, never spun
    assert digest_posts(slack) == []
    store.close()


async def test_cancelling_during_a_post_releases_the_claim(tmp_path: Path, slack: FakeSlack) -> None:
    settings = make_settings(tmp_path, slack)
    store = Store(settings.db_path)
    store.put(SEEN_KEY, "1")
    started = asyncio.Event()

    async def never_finishes(period: Period) -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    clock = Clock(at(BERLIN, 2025, 6, 2, 9, 0, 1))
    scheduler = DigestScheduler(settings, store, client, now=clock, post=never_finishes)
    task = asyncio.create_task(scheduler.tick())
    await asyncio.wait_for(started.wait(), timeout=2)
    assert store.query("SELECT status FROM digests") == [{"status": "posting"}]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.query("SELECT * FROM digests") == []
    store.close()


async def test_cancelling_after_the_parent_is_up_keeps_the_period_posted(tmp_path: Path, slack: FakeSlack) -> None:
    settings = make_settings(tmp_path, slack)
    store = Store(settings.db_path)
    store.put(SEEN_KEY, "1")
    started = asyncio.Event()
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    clock = Clock(at(BERLIN, 2025, 6, 2, 9, 0, 1))
    scheduler: DigestScheduler

    async def parent_then_hang(period: Period) -> str:
        scheduler.mark_posted(period, "1700000000.000100")  # what post_digest's on_parent does
        started.set()
        await asyncio.Event().wait()  # the thread replies never finish: shutdown cancels us
        return "never"

    scheduler = DigestScheduler(settings, store, client, now=clock, post=parent_then_hang)
    task = asyncio.create_task(scheduler.tick())
    await asyncio.wait_for(started.wait(), timeout=2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.query("SELECT status, ts FROM digests") == [{"status": "posted", "ts": "1700000000.000100"}]
    restarted = DigestScheduler(settings, Store(settings.db_path), client, now=clock)
    assert (await restarted.tick()).outcome == "already_done"
    restarted.store.close()
    store.close()


async def test_the_default_post_records_the_parent_before_the_replies(tmp_path: Path, slack: FakeSlack) -> None:
    settings = make_settings(tmp_path, slack)
    store = Store(settings.db_path)
    store.put(SEEN_KEY, "1")
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    clock = Clock(at(BERLIN, 2025, 6, 2, 9, 0, 1))
    tick = await DigestScheduler(settings, store, client, now=clock).tick()
    assert tick.outcome == "posted"
    parent = digest_posts(slack)[0]
    assert parent.response["ts"] == tick.ts
    assert store.query("SELECT status, ts FROM digests") == [{"status": "posted", "ts": tick.ts}]
    store.close()
