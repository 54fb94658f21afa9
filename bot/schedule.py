"""When the weekly digest fires, and the loop that posts it exactly once per period.

Schedule semantics (`ARCHBOT_DIGEST_CRON` read in `ARCHBOT_TZ`):

- A cron expression names wall-clock times. croniter walks those times on *naive* local
  datetimes (pure calendar arithmetic), and `resolve_wall_time` turns each into an instant:
  - a time that happens twice (the autumn fall-back hour) fires once, at its first occurrence;
  - a time that does not exist (the spring-forward gap) fires at the first instant after the
    gap, which is what classic cron does with jobs in a skipped hour.
  We do not hand croniter zone-aware datetimes for this: in that mode a daily `30 2 * * *`
  fires twice on the fall-back day (once per UTC offset), which would post two digests.
- A *period* is identified by its fire instant in UTC (`period_key`), so changing
  `ARCHBOT_TZ` or restarting never renames a period that was already posted.

`DigestScheduler.run` sleeps on `stop` until the next fire time (never busy: every wait is
`asyncio.wait_for(stop.wait(), timeout)` with a positive timeout, capped so a wall-clock jump
or a suspended laptop is noticed within `MAX_WAIT` seconds). Exactly once per period comes
from the store: `Store.claim_digest(period)` is an atomic insert, so a second process or a
restarted one finds the period taken. A failed post releases the claim and is retried (with
a growing pause) until the next period starts.

Catch-up: at start, the most recent fire time before now that has no digest is posted once,
if the bot existed then (it ran the scheduler before, posted a digest before, or stored
answers in that period). Older missed periods are never posted separately; the catch-up's
window reaches back to the last posted digest (at most `CATCH_UP_PERIODS` periods), so
nothing is silently dropped. A brand-new install with an empty database posts nothing until
its first scheduled time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter

if TYPE_CHECKING:
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.config import Settings
    from bot.store import Store

log = logging.getLogger(__name__)

MAX_WAIT = 600.0  # seconds: re-read the clock at least this often while waiting
WAKE_MARGIN = 0.05  # seconds past the fire time, so a timer that fires a hair early still finds it due
RETRY_DELAYS = (60.0, 300.0, 900.0, 3600.0)  # after a failed post; the last one repeats
CATCH_UP_PERIODS = 4  # a catch-up digest covers at most this many periods
SEEN_KEY = "digest.scheduler_seen_at"
STALE_CLAIM = 3600.0  # seconds: a 'posting' claim older than this belongs to a process that died
_MARGIN = timedelta(hours=3)  # larger than any UTC-offset change, so DST shifts never hide a fire time
_MAX_STEPS = 10_000  # cron steps scanned for one answer (a never-matching cron stops here)


class ScheduleError(ValueError):
    """The cron expression has no fire time near the requested instant (e.g. `0 0 30 2 *`)."""


# -- schedule computation ---------------------------------------------------------------------
def resolve_wall_time(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant (aware, in `zone`) at which a naive local wall-clock time happens.

    Ambiguous (fall-back) times resolve to their first occurrence; times inside a
    spring-forward gap resolve to the first instant after the gap.
    """
    first = wall.replace(tzinfo=zone, fold=0)
    back = first.astimezone(UTC).astimezone(zone)
    if back.replace(tzinfo=None, fold=0) == wall:
        return back
    # In a gap. fold=1 reads the time with the post-transition offset, which lands before the
    # transition; fold=0 lands after it. Bisect between the two to find the transition.
    lo = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    hi = first.astimezone(UTC)
    if lo > hi:
        lo, hi = hi, lo
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(zone).replace(tzinfo=None, fold=0) >= wall:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0).astimezone(zone)


def _local_wall(instant: datetime, zone: ZoneInfo) -> datetime:
    if instant.tzinfo is None:
        raise ValueError("schedule times must be timezone-aware")
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def _step(it: croniter, *, forward: bool) -> datetime:
    try:
        return it.get_next(datetime) if forward else it.get_prev(datetime)
    except CroniterError as exc:  # e.g. `0 0 30 2 *`: valid syntax, no such date
        raise ScheduleError(f"the cron expression has no {'next' if forward else 'previous'} fire time") from exc


def next_fire(cron: str, zone: ZoneInfo, after: datetime) -> datetime:
    """The first fire time strictly after `after` (aware, in `zone`)."""
    it = croniter(cron, _local_wall(after, zone) - _MARGIN)
    limit = after.astimezone(UTC)  # compare in UTC: same-zone comparisons ignore the fold
    for _ in range(_MAX_STEPS):
        instant = resolve_wall_time(_step(it, forward=True), zone)
        if instant.astimezone(UTC) > limit:
            return instant
    raise ScheduleError(f"no fire time for {cron!r} after {after.isoformat()}")


def previous_fire(cron: str, zone: ZoneInfo, at: datetime) -> datetime:
    """The last fire time at or before `at` (aware, in `zone`)."""
    it = croniter(cron, _local_wall(at, zone) + _MARGIN)
    limit = at.astimezone(UTC)
    for _ in range(_MAX_STEPS):
        instant = resolve_wall_time(_step(it, forward=False), zone)
        if instant.astimezone(UTC) <= limit:
            return instant
    raise ScheduleError(f"no fire time for {cron!r} before {at.isoformat()}")


def fire_times(cron: str, zone: ZoneInfo, after: datetime, count: int) -> list[datetime]:
    """The next `count` fire times after `after`, in order."""
    out: list[datetime] = []
    t = after
    for _ in range(count):
        t = next_fire(cron, zone, t)
        out.append(t)
    return out


def period_key(fire: datetime) -> str:
    """A period's identity: its fire instant in UTC, to the minute (stable across ARCHBOT_TZ changes)."""
    return fire.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def parse_period_key(key: str) -> datetime | None:
    try:
        return datetime.strptime(key, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Period:
    """One digest: its fire time (the end of its window), the window start, and its key."""

    fire: datetime
    since: datetime
    key: str
    catch_up: bool = False


def period_ending(cron: str, zone: ZoneInfo, fire: datetime) -> Period:
    """The period whose digest fires at `fire`: [previous fire, fire)."""
    since = previous_fire(cron, zone, fire.astimezone(UTC) - timedelta(microseconds=1))
    return Period(fire=fire, since=since, key=period_key(fire))


# -- the loop --------------------------------------------------------------------------------
TickOutcome = Literal["posted", "already_done", "skipped_catch_up", "failed", "disabled"]


@dataclass
class Tick:
    """What one scheduler step did, and when the next step should run."""

    outcome: TickOutcome
    period: str | None
    wake_at: datetime  # UTC
    ts: str | None = None


PostDigest = Callable[[Period], Awaitable[str]]


class DigestScheduler:
    """Posts the digest on `ARCHBOT_DIGEST_CRON` in `ARCHBOT_TZ`, once per period, to `ARCHBOT_DIGEST_CHANNEL`.

    `now` is injectable (an aware-datetime clock) so tests drive time without sleeping;
    `tick()` is one step of the loop and returns what it did.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        slack_client: AsyncWebClient,
        anthropic_client: Any = None,
        *,
        now: Callable[[], datetime] | None = None,
        post: PostDigest | None = None,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self.settings = settings
        self.store = store
        self.slack = slack_client
        self.anthropic = anthropic_client
        self.channel = settings.digest_channel
        self.cron = settings.digest_cron
        self.zone = settings.zone
        self._now = now or (lambda: datetime.now(UTC))
        self._post = post or self._post_digest
        self.max_wait = max_wait
        self._started_at: datetime | None = None
        self._existed_before = False
        self._failures = 0
        self._failed_period: str | None = None
        self._retry_at: datetime | None = None
        self._parents: dict[str, str] = {}  # period -> parent ts, once the parent message is up

    def now(self) -> datetime:
        """The current instant in UTC (arithmetic between two times of one zone ignores DST offsets)."""
        return self._now().astimezone(UTC)

    # -- one step ------------------------------------------------------------------------
    def start(self) -> None:
        """Note this start: whether the bot ran before (so a missed period is a real catch-up)."""
        if self._started_at is not None:
            return
        now = self.now()
        self._started_at = now
        seen = self.store.get(SEEN_KEY)
        self._existed_before = bool(seen) or self.store.last_digest() is not None
        self.store.put(SEEN_KEY, str(now.timestamp()))
        # A claim left 'posting' by a process that died mid-post stays taken: reposting could
        # post twice, and we cannot tell whether Slack got it. Say so, once, at start.
        for row in self.store.query(
            "SELECT period FROM digests WHERE status = 'posting' AND posted_at < ?", (time.time() - STALE_CLAIM,)
        ):
            log.warning("digest period left half-posted by an earlier run; not reposting", extra=dict(row))

    def due_period(self, now: datetime) -> Period:
        """The period whose fire time is the latest one at or before `now`."""
        fire = previous_fire(self.cron, self.zone, now)
        return period_ending(self.cron, self.zone, fire)

    def _catch_up_window(self, period: Period) -> Period:
        """Widen a catch-up's window back to the last posted digest (at most CATCH_UP_PERIODS periods)."""
        last = self.store.last_digest()
        last_fire = parse_period_key(str(last["period"])) if last else None
        since = period.since
        if last_fire is not None and last_fire < since:
            earliest = period.fire
            for _ in range(CATCH_UP_PERIODS):
                earliest = previous_fire(self.cron, self.zone, earliest.astimezone(UTC) - timedelta(microseconds=1))
            since = max(last_fire, earliest.astimezone(UTC)).astimezone(self.zone)
        return Period(fire=period.fire, since=since, key=period.key, catch_up=True)

    def _has_answers(self, period: Period) -> bool:
        rows = self.store.query(
            "SELECT 1 FROM answers WHERE created_at >= ? AND created_at < ? LIMIT 1",
            (period.since.timestamp(), period.fire.timestamp()),
        )
        return bool(rows)

    def _digest_row(self, key: str) -> dict[str, Any] | None:
        rows = self.store.query("SELECT * FROM digests WHERE period = ?", (key,))
        return rows[0] if rows else None

    async def tick(self) -> Tick:
        """Post the due digest if it has not been posted; say when to look again."""
        self.start()
        assert self._started_at is not None
        now = self.now()
        next_at = next_fire(self.cron, self.zone, now).astimezone(UTC)
        if not self.channel:
            return Tick("disabled", None, next_at)
        self.store.put(SEEN_KEY, str(now.timestamp()))
        period = self.due_period(now)
        if self._digest_row(period.key) is not None:
            return Tick("already_done", period.key, next_at)
        if self._failed_period == period.key and self._retry_at is not None and now < self._retry_at:
            return Tick("failed", period.key, min(self._retry_at, next_at))
        if period.fire < self._started_at:  # fired while we were down: a catch-up candidate
            if not (self._existed_before or self._has_answers(period)):
                return Tick("skipped_catch_up", period.key, next_at)
            period = self._catch_up_window(period)
        if not self.store.claim_digest(period.key, self.channel):
            return Tick("already_done", period.key, next_at)
        extra = {"period": period.key, "channel": self.channel, "catch_up": period.catch_up}
        log.info("digest due", extra=extra)
        try:
            ts = await self._post(period)
        except asyncio.CancelledError:
            if period.key not in self._parents:  # nothing reached the channel: free the period
                self.store.finish_digest(period.key, ts=None, ok=False)
            raise
        except Exception:
            if period.key in self._parents:  # the parent is up; only thread replies were lost
                log.exception("digest partly posted", extra=extra)
                return Tick("posted", period.key, next_at, ts=self._parents.pop(period.key))
            self.store.finish_digest(period.key, ts=None, ok=False)
            if self._failed_period != period.key:
                self._failed_period, self._failures = period.key, 0
            delay = RETRY_DELAYS[min(self._failures, len(RETRY_DELAYS) - 1)]
            self._failures += 1
            self._retry_at = now + timedelta(seconds=delay)
            log.exception("digest post failed; retrying in %s s", delay, extra=extra)
            return Tick("failed", period.key, min(self._retry_at, next_at))
        self.store.finish_digest(period.key, ts=ts, ok=True)
        self._parents.pop(period.key, None)
        self._failed_period, self._failures, self._retry_at = None, 0, None
        log.info("digest posted", extra={**extra, "ts": ts})
        return Tick("posted", period.key, next_at, ts=ts)

    async def _post_digest(self, period: Period) -> str:
        from bot.digest.post import post_scheduled_digest

        assert self.channel is not None

        def parent_posted(ts: str) -> None:
            self.mark_posted(period, ts)

        return await post_scheduled_digest(
            self.settings,
            self.store,
            self.slack,
            self.anthropic,
            channel=self.channel,
            since=period.since,
            until=period.fire,
            on_parent=parent_posted,
        )

    def mark_posted(self, period: Period, ts: str) -> None:
        """Record the period as posted as soon as its parent message exists."""
        self._parents[period.key] = ts
        self.store.finish_digest(period.key, ts=ts, ok=True)

    # -- the loop ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Post digests until `stop` is set. Returns at once when no channel is configured."""
        if not self.channel:
            log.info("no ARCHBOT_DIGEST_CHANNEL: the weekly digest is off")
            return
        log.info("digest scheduler started", extra={"cron": self.cron, "tz": self.settings.tz})
        while not stop.is_set():
            try:
                tick = await self.tick()
                timeout = (tick.wake_at - self.now()).total_seconds() + WAKE_MARGIN
            except ScheduleError:
                log.exception("digest schedule has no next fire time; the digest scheduler stops")
                return
            except Exception:  # a store hiccup must not end the loop for good
                log.exception("digest scheduler step failed")
                timeout = RETRY_DELAYS[0]
            timeout = min(max(timeout, WAKE_MARGIN), self.max_wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=timeout)
        log.info("digest scheduler stopped")
