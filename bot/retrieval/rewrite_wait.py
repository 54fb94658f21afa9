"""How long a search waits for the model's rewrite of its question (see rewrite.py, search.py).

The rewrite is started as early as possible (`archbot run` starts it when a job is claimed, beside
reading the thread), and the search that needs it waits only as long as a rewrite is likely to
take to arrive, never longer than `ARCHBOT_REWRITE_WAIT` (the budget):

- A cached rewrite (or a resting rewriter: no model call) is used at once, never waited on beyond
  the cache read.
- Otherwise the wait follows the recent round trips of this process's model rewrites (the last
  `WINDOW`, each rewrite counted once, waited for or not): wait until the rewrite's age reaches
  `SLACK` times the `HIGH_QUANTILE` of those round trips (at least `MIN_WAIT`, at most the
  budget); and not at all while most recent rewrites (their median) took longer than the budget.
  A rewrite still in flight past the budget counts as one that missed it (a model that slows down
  is noticed at once, not when its replies come back).
- With no round trip seen yet, a lone question waits (up to the budget) to find out; while other
  rewrites are in flight (a burst) nobody bets on the unknown latency: the burst's own rewrites
  tell it within one round trip.

A rewrite that arrives after its search gave up still lands in the cache (for the thread's
follow-ups and repeats) and still teaches the policy its round trip, so a model that gets fast
again is waited for again.

The round trips outlive the process when the rewriter keeps them (`ModelRewriter` does, in the
index database): a restarted bot starts from the last ones it saw, not from knowing nothing.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

from bot.retrieval.rewrite import Rewriter, normalise

log = logging.getLogger(__name__)

WINDOW = 20  # recent model rewrites the wait is judged on
HIGH_QUANTILE = 0.9  # wait until this share of recent rewrites would have arrived…
SLACK = 1.5  # …times this (a round trip varies from one to the next)…
MIN_WAIT = 0.5  # …but at least this long (seconds from the rewrite's start), within the budget
MAX_EARLY = 256  # rewrites started ahead of their search (at claim) kept for it…
EARLY_TTL = 120.0  # …for at most this many seconds


class _Flight:
    """One model rewrite in flight (or done): when it started, whether a search is probing with it."""

    __slots__ = ("done", "probe", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.probe = False
        self.done = False


class RewriteLatency:
    """The wait policy: recent model rewrite round trips → seconds worth waiting. Thread-safe.

    `clock` is injectable (tests drive it by hand); nothing here sleeps."""

    def __init__(
        self,
        budget: float,
        *,
        window: int = WINDOW,
        clock: Callable[[], float] = time.monotonic,
        seen: Iterable[float] = (),
    ) -> None:
        self.budget = max(0.0, budget)
        self._clock = clock
        self._samples: deque[float] = deque(seen, maxlen=window)  # `seen`: round trips an earlier process kept
        self._flights: set[_Flight] = set()
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._clock()

    # -- what happened ---------------------------------------------------------------------
    def begin(self) -> _Flight:
        """A model rewrite starts now."""
        flight = _Flight(self._clock())
        with self._lock:
            self._flights.add(flight)
        return flight

    def end(self, flight: _Flight) -> None:
        """The rewrite's answer is in (a rewrite, an empty one or a failure): its round trip joins the
        recent ones. A failure counts for the time it took: a timeout is a miss, a quick refusal is
        not (the rewriter then rests, and searches meanwhile make no model call to wait for)."""
        now = self._clock()
        with self._lock:
            flight.done = True
            self._flights.discard(flight)
            self._samples.append(now - flight.started)

    def samples(self) -> list[float]:
        """The recent round trips (oldest first), without the rewrites still in flight."""
        with self._lock:
            return list(self._samples)

    def forget(self, flight: _Flight) -> None:
        """No model call was made after all (a cached rewrite, a resting rewriter): no round trip to learn."""
        with self._lock:
            flight.done = True
            self._flights.discard(flight)

    # -- the decision ----------------------------------------------------------------------
    def evidence(self) -> list[float]:
        """Recent round trips, with each rewrite still in flight past the budget counted as a miss."""
        now = self._clock()
        with self._lock:
            late = [math.inf for f in self._flights if now - f.started > self.budget]
            return [*self._samples, *late]

    def wait(self, flight: _Flight) -> float:
        """Seconds still worth waiting for `flight`'s rewrite (0: go on without it)."""
        if flight.done or self.budget <= 0:
            return 0.0
        now = self._clock()
        age = now - flight.started
        seen = self.evidence()
        if not seen:
            # Nothing known yet. A lone question waits to find out (for `archbot ask`, or a quiet bot's
            # first question, it is the only chance to use a fresh rewrite). Beside other rewrites in
            # flight (a burst) none does: they will tell the latency within one round trip anyway,
            # and holding one asker back would buy the rewrite for that one question only.
            with self._lock:
                if any(f is not flight for f in self._flights):
                    return 0.0
                flight.probe = True
            return max(0.0, self.budget - age)
        if statistics.median(seen) > self.budget:
            return 0.0  # most recent rewrites missed the budget: waiting would buy nothing likely
        until = min(self.budget, max(MIN_WAIT, SLACK * _quantile(seen, HIGH_QUANTILE)))
        return max(0.0, until - age)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


class PendingRewrite:
    """One question's rewrite, running on a daemon thread (a late model call never holds up exit)."""

    def __init__(self, rewriter: Rewriter, query: str, latency: RewriteLatency) -> None:
        self.query = query
        self.started = latency.now()
        self._rewriter = rewriter
        self._latency = latency
        self._value: str | None = None
        self._flight: _Flight | None = None
        self._known = threading.Event()  # whether a model call is needed has been decided
        self._done = threading.Event()
        threading.Thread(target=self._run, daemon=True, name="archbot-rewrite").start()

    def _run(self) -> None:
        try:
            if self._needs_model():
                self._flight = self._latency.begin()
            self._known.set()
            self._value = self._rewriter.rewrite(self.query)
        except Exception:  # a rewriter must never cost an answer
            log.warning("query rewriter raised; searching without it", exc_info=True)
            self._value = None
        finally:
            if self._flight is not None:
                self._latency.end(self._flight)
            self._known.set()
            self._done.set()
            if self._flight is not None:
                self._keep_round_trips()

    def _keep_round_trips(self) -> None:
        """Hand the round trips to a rewriter that keeps them for the next process (after the search
        has the result: the write costs it nothing)."""
        keep = getattr(self._rewriter, "keep_round_trips", None)
        if not callable(keep):
            return
        try:
            keep(self._latency.samples())
        except Exception:
            log.info("query rewrite round trips not kept", exc_info=True)

    def _needs_model(self) -> bool:
        needs = getattr(self._rewriter, "needs_model", None)
        try:
            return bool(needs(self.query)) if callable(needs) else True
        except Exception:
            return True

    def done(self) -> bool:
        return self._done.is_set()

    def result(self) -> str | None:
        """The rewrite if it is here, or arrives within what is worth waiting; else None (late)."""
        budget = self._latency.budget
        if not self._known.wait(budget):  # the cache read itself is stuck: go on
            return None
        if self._flight is None:  # no model call: a cached rewrite or none at all, here at once
            self._done.wait(budget)
        elif not self._done.is_set():
            self._done.wait(self._latency.wait(self._flight))
        return self._value if self._done.is_set() else None


class Rewrites:
    """The rewrites of one `Searcher`: started early by `start`, picked up by the search with `take`."""

    def __init__(self, rewriter: Rewriter, budget: float, *, latency: RewriteLatency | None = None) -> None:
        self.rewriter = rewriter
        self.latency = latency if latency is not None else RewriteLatency(budget, seen=_kept_round_trips(rewriter))
        self._early: OrderedDict[str, PendingRewrite] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, query: str) -> None:
        """Start the rewrite of a question its search will ask for soon (once per question)."""
        key = normalise(query)
        if not key:
            return
        with self._lock:
            if key in self._early:
                return
        pending = PendingRewrite(self.rewriter, query, self.latency)
        with self._lock:
            self._early[key] = pending
            while len(self._early) > MAX_EARLY:
                self._early.popitem(last=False)

    def take(self, query: str) -> PendingRewrite:
        """The rewrite started early for this question, else one started now."""
        with self._lock:
            pending = self._early.pop(normalise(query), None)
        if pending is not None and self.latency.now() - pending.started <= EARLY_TTL:
            return pending
        return PendingRewrite(self.rewriter, query, self.latency)


def _kept_round_trips(rewriter: Rewriter) -> list[float]:
    """The round trips an earlier process kept (`ModelRewriter.round_trips`), or none."""
    kept = getattr(rewriter, "round_trips", None)
    if not callable(kept):
        return []
    try:
        return [float(v) for v in kept()]
    except Exception:
        log.info("query rewrite round trips not read", exc_info=True)
        return []
