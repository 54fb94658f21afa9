"""How long a search waits for the model rewrite (bot/retrieval/rewrite_wait.py).

The policy runs on an injected clock, moved by hand: no sleeps, no timed assertions. Rewriters
here are stand-ins that block on an event until the test releases them.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest

from bot.retrieval.rewrite_wait import MIN_WAIT, SLACK, WINDOW, PendingRewrite, RewriteLatency, Rewrites

BUDGET = 1.2


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def latency(clock: Clock) -> RewriteLatency:
    return RewriteLatency(BUDGET, clock=clock)


@pytest.fixture
def generous(clock: Clock) -> RewriteLatency:
    """For waits on real threads: a budget no slow machine reaches (the clock still stands still)."""
    return RewriteLatency(30.0, clock=clock)


def seen(latency: RewriteLatency, clock: Clock, *round_trips: float) -> None:
    """Rewrites that came back after these round trips."""
    for seconds in round_trips:
        flight = latency.begin()
        clock.advance(seconds)
        latency.end(flight)


# -- the policy ------------------------------------------------------------------------------
def test_nothing_known_a_lone_question_finds_out(latency: RewriteLatency, clock: Clock) -> None:
    first = latency.begin()
    clock.advance(0.2)  # the search ran meanwhile
    assert latency.wait(first) == pytest.approx(BUDGET - 0.2)  # the probe: up to the budget
    second = latency.begin()
    assert latency.wait(second) == 0.0  # meanwhile nobody else bets on an unknown latency
    clock.advance(0.3)
    latency.end(first)  # the probe's rewrite came back after 0.5 s: now it is known
    third = latency.begin()
    assert latency.wait(third) == pytest.approx(max(MIN_WAIT, SLACK * 0.5))


def test_nothing_known_a_burst_does_not_wait(latency: RewriteLatency, clock: Clock) -> None:
    burst = [latency.begin() for _ in range(40)]
    clock.advance(0.3)
    assert [latency.wait(f) for f in burst] == [0.0] * 40  # none held back on an unknown latency
    for flight in burst[:5]:
        latency.end(flight)  # the burst's own rewrites tell the latency: 0.3 s
    assert latency.wait(latency.begin()) == pytest.approx(MIN_WAIT)


def test_waits_about_as_long_as_recent_rewrites_took(latency: RewriteLatency, clock: Clock) -> None:
    seen(latency, clock, *[0.3] * 9, 0.6)
    flight = latency.begin()
    clock.advance(0.1)
    # until 1.5 × the 90th percentile (0.3 s: nine of ten), at least MIN_WAIT, from the rewrite's start
    assert latency.wait(flight) == pytest.approx(max(MIN_WAIT, SLACK * 0.3) - 0.1)
    clock.advance(BUDGET)
    assert latency.wait(flight) == 0.0  # already older than that: go on


def test_never_beyond_the_budget(latency: RewriteLatency, clock: Clock) -> None:
    seen(latency, clock, 0.9, 1.0, 1.1)
    flight = latency.begin()
    assert latency.wait(flight) == pytest.approx(BUDGET)  # 1.5 × 1.1 s is past the budget: the budget


def test_no_wait_while_most_recent_rewrites_missed_the_budget(latency: RewriteLatency, clock: Clock) -> None:
    seen(latency, clock, 0.4, 2.1, 2.0, 2.2)
    assert latency.wait(latency.begin()) == 0.0


def test_rewrites_still_out_past_the_budget_count_as_misses(latency: RewriteLatency, clock: Clock) -> None:
    seen(latency, clock, 0.3, 0.3)  # fast until now…
    stuck = [latency.begin() for _ in range(3)]
    clock.advance(BUDGET + 0.1)  # …then three rewrites are out longer than the budget, none back yet
    assert sorted(latency.evidence()) == pytest.approx([0.3, 0.3, math.inf, math.inf, math.inf])
    assert latency.wait(latency.begin()) == 0.0  # noticed at once, not when they come back
    for flight in stuck:
        latency.end(flight)  # each counted once, with its real round trip
    assert sorted(latency.evidence()) == pytest.approx([0.3, 0.3, BUDGET + 0.1, BUDGET + 0.1, BUDGET + 0.1])


def test_late_rewrites_still_teach_it_that_the_model_is_fast_again(latency: RewriteLatency, clock: Clock) -> None:
    seen(latency, clock, *[3.0] * WINDOW)
    assert latency.wait(latency.begin()) == 0.0
    seen(latency, clock, *[0.2] * (WINDOW // 2 + 1))  # not waited for, but they came back quickly
    assert latency.wait(latency.begin()) == pytest.approx(BUDGET)  # most arrive in time again; the tail does not


def test_a_rewrite_with_no_model_call_teaches_nothing(latency: RewriteLatency, clock: Clock) -> None:
    flight = latency.begin()
    clock.advance(5.0)
    latency.forget(flight)
    assert latency.evidence() == []


def test_round_trips_kept_by_an_earlier_process_are_known_from_the_start(clock: Clock) -> None:
    latency = RewriteLatency(BUDGET, clock=clock, seen=[0.3] * 5)
    burst = [latency.begin() for _ in range(3)]
    # Not a burst on an unknown latency: each waits about as long as rewrites took before the restart.
    assert [latency.wait(f) for f in burst] == pytest.approx([max(MIN_WAIT, SLACK * 0.3)] * 3)
    latency.end(burst[0])
    assert latency.samples() == pytest.approx([0.3] * 5 + [0.0])


def test_no_budget_no_wait(clock: Clock) -> None:
    latency = RewriteLatency(0.0, clock=clock)
    assert latency.wait(latency.begin()) == 0.0


# -- a rewrite beside its search ---------------------------------------------------------------
class HeldRewriter:
    """Answers once released; counts its calls. `cached`: no model call needed (from the cache)."""

    def __init__(self, value: str | None = "缓存穿透", *, cached: bool = False, fail: bool = False) -> None:
        self.value = value
        self.cached = cached
        self.fail = fail
        self.release = threading.Event()
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def needs_model(self, query: str) -> bool:
        return not self.cached

    def rewrite(self, query: str) -> str | None:
        with self.lock:
            self.calls.append(query)
        assert self.release.wait(30)
        if self.fail:
            raise RuntimeError("model down")
        return self.value


def test_a_cached_rewrite_is_used_whatever_the_policy_says(generous: RewriteLatency, clock: Clock) -> None:
    seen(generous, clock, *[50.0] * 5)  # the model is slow: a model rewrite would not be waited for
    rewriter = HeldRewriter(cached=True)
    rewriter.release.set()
    assert PendingRewrite(rewriter, "q", generous).result() == "缓存穿透"
    assert generous.evidence() == pytest.approx([50.0] * 5)  # a cache hit is no round trip


def test_a_rewrite_arriving_within_the_wait_is_used(generous: RewriteLatency) -> None:
    rewriter = HeldRewriter()
    pending = PendingRewrite(rewriter, "q", generous)
    rewriter.release.set()  # comes back while the search waits (the clock stands still: within the wait)
    assert pending.result() == "缓存穿透"


def test_a_late_rewrite_is_not_waited_for_and_still_counts(latency: RewriteLatency, clock: Clock) -> None:
    seen(latency, clock, *[3.0] * 5)
    rewriter = HeldRewriter()
    pending = PendingRewrite(rewriter, "q", latency)  # rewrites take 3 s, the budget is 1.2 s
    assert pending.result() is None  # not worth waiting for: the search goes on at once
    clock.advance(2.5)
    rewriter.release.set()
    for _ in range(1000):  # bounded: the daemon thread finishes right after the release
        if pending.done():
            break
        threading.Event().wait(0.01)
    assert pending.done()
    assert latency.evidence() == pytest.approx([3.0] * 5 + [2.5])


def test_a_failing_rewriter_costs_nothing(generous: RewriteLatency) -> None:
    rewriter = HeldRewriter(fail=True)
    rewriter.release.set()
    assert PendingRewrite(rewriter, "q", generous).result() is None


def test_a_rewrite_started_early_is_the_one_the_search_takes(clock: Clock) -> None:
    rewriter = HeldRewriter()
    rewrites = Rewrites(rewriter, 30.0, latency=RewriteLatency(30.0, clock=clock))
    rewrites.start("  Where should billing logic live? ")
    rewrites.start("where should billing logic live?")  # the same question: one rewrite
    rewriter.release.set()
    pending = rewrites.take("Where should billing logic live?")
    assert pending.result() == "缓存穿透"
    assert rewriter.calls == ["  Where should billing logic live? "]
    # Taken: the next search of that question starts its own (a late answer of the first is cached anyway).
    assert rewrites.take("Where should billing logic live?") is not pending


def test_an_old_early_rewrite_is_not_reused(clock: Clock) -> None:
    rewriter = HeldRewriter(value=None)
    rewriter.release.set()
    rewrites = Rewrites(rewriter, BUDGET, latency=RewriteLatency(BUDGET, clock=clock))
    rewrites.start("q")
    clock.advance(3600)  # its job never searched; an hour later the question comes again
    assert rewrites.take("q").result() is None
    assert len(rewriter.calls) == 2


def test_the_search_takes_the_early_rewrite(tmp_path: Path) -> None:
    """`Searcher.start_rewrite` then a search of the same question: one model rewrite, not two."""
    from bot.config import Settings
    from bot.retrieval import Searcher, index_sources

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "cache.md").write_text("# 缓存策略\n\n## 缓存穿透\n\n不存在的用户 ID 也要缓存空值。\n", encoding="utf-8")
    settings = Settings(db_path=tmp_path / "archbot.db", docs=[docs])
    index_sources(settings)
    rewriter = HeldRewriter(value="people asking for ids that never existed\n缓存穿透 空值")
    plain = Searcher(settings.db_path)
    assert "cache.md" not in [h.path for h in plain.search("people keep asking for ids that never existed", k=3)]
    plain.close()
    searcher = Searcher(settings.db_path, rewriter=rewriter, rewrite_wait=30.0)
    try:
        searcher.start_rewrite("people keep asking for ids that never existed")
        rewriter.release.set()
        hits = searcher.search("people keep asking for ids that never existed", k=3)
        assert rewriter.calls == ["people keep asking for ids that never existed"]
        assert "cache.md" in [h.path for h in hits]  # found through the rewrite alone
    finally:
        searcher.close()
