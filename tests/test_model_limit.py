"""The adaptive model concurrency limit: a burst meets a rate-limited model and nothing fails.

The fake model answers 429 (rate_limit_error, retry-after) to any request beyond 10 in flight,
as an account's concurrency limit would. 40 mentions at once: all 40 answered once, none
failed; the limit settled at what the model accepted and is shown on /metrics.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from bot.architect.limit import AdaptiveLimit
from bot.config import Settings
from tests.conftest import bot_settings, running_bot
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.signing import post_event
from tests.fakes.slack import FakeSlack, event_callback, mention_event
from tests.helpers import FAILURE_MARK, all_answers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_limit_grows_while_answered_and_falls_to_what_was_accepted() -> None:
    clock = Clock()
    limit = AdaptiveLimit(8, clock=clock)
    assert limit.allowed == 8
    for _ in range(6):
        await limit.acquire()
    limit.release("overloaded", retry_after=None)  # 5 still in flight: the API took those
    assert limit.allowed == 4  # halved, and not above what was accepted
    limit.release("overloaded")  # same wave: no second halving, capped by in flight (4)
    assert limit.allowed == 4
    for _ in range(4):
        limit.release("ok")
    assert limit.allowed == 4  # +1/limit per success: one more after about `limit` successes
    for _ in range(4):
        await limit.acquire()
        limit.release("ok")
    assert limit.allowed == 5
    for _ in range(200):
        await limit.acquire()
        limit.release("ok")
    assert limit.allowed == 8  # never above the ceiling


async def test_retry_after_holds_new_requests() -> None:
    clock = Clock()
    limit = AdaptiveLimit(4, clock=clock)
    await limit.acquire()
    await limit.acquire()
    limit.release("overloaded", retry_after=5.0)
    waiter = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()  # paused although a slot is free
    clock.now += 5.0
    limit.release("ok")  # any change re-checks the pause
    await asyncio.wait_for(waiter, 1)
    assert limit.in_flight == 1


async def test_a_burst_against_a_rate_limited_model_has_no_failures(tmp_path: Path, slack: FakeSlack) -> None:
    model = FakeAnthropic(max_in_flight=10, rate_limit_retry_after=0.2, first_token_latency=0.2)
    await model.start()
    try:
        async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
            url = f"http://127.0.0.1:{bot.port}"
            parents = [slack.add_message("C1", f"<@UBOT> question {i} about caching", user="U1") for i in range(40)]
            statuses = await asyncio.gather(
                *(
                    post_event(
                        url,
                        slack.signing_secret,
                        event_callback(mention_event(p.text, channel="C1", user="U1", ts=p.ts)),
                    )
                    for p in parents
                )
            )
            assert [s for s, _ in statuses] == [200] * 40
            answers = await slack.wait_for(lambda f: a if len(a := all_answers(f)) >= 40 else None, timeout=60)
            assert sorted(a.thread_ts for a in answers) == sorted(p.ts for p in parents)  # each once
            assert not [a for a in answers if a.text.startswith(FAILURE_MARK)]
            assert model.rate_limited > 0  # the model did refuse some requests
            assert model.peak_in_flight <= 10
            await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 40}, timeout=10)
            async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
                text = await resp.text()
            limit_line = next(line for line in text.splitlines() if line.startswith("archbot_model_concurrency_limit "))
            assert float(limit_line.split()[1]) < 48  # it adapted below the ceiling
            assert "archbot_model_overloaded_total" in text
    finally:
        await model.stop()


async def test_streamed_answers_go_before_other_requests() -> None:
    limit = AdaptiveLimit(1, clock=Clock())
    await limit.acquire()
    record = asyncio.create_task(limit.acquire(urgent=False))
    await asyncio.sleep(0)
    answer = asyncio.create_task(limit.acquire(urgent=True))
    await asyncio.sleep(0)
    limit.release("ok")
    await asyncio.wait_for(answer, 1)
    assert not record.done()  # queued first, served second
    limit.release("ok")
    await asyncio.wait_for(record, 1)


async def test_a_request_with_a_timeout_gives_up_its_place_and_holds_no_slot() -> None:
    limit = AdaptiveLimit(1, clock=Clock())
    await limit.acquire(timeout=0)  # a free slot is taken at once, whatever the timeout
    try:
        await limit.acquire(urgent=False, timeout=0.01)
        raise AssertionError("granted a slot that was taken")
    except TimeoutError:
        pass
    assert limit.in_flight == 1 and limit.waiting == (0, 0)
    later = asyncio.create_task(limit.acquire(urgent=False))
    await asyncio.sleep(0)
    assert limit.waiting == (0, 1)
    limit.release("ok")  # the slot goes to the one still waiting, not to the one that gave up
    await asyncio.wait_for(later, 1)
    assert limit.in_flight == 1 and limit.waiting == (0, 0)


async def test_optional_requests_leave_the_reserved_slots_to_answers_on_their_way() -> None:
    """A job keeps a slot for its answer from its start; an optional request (a rewrite) takes
    only what is left beside the reservations and the jobs about to be claimed."""
    limit = AdaptiveLimit(3, clock=Clock())
    jobs = [limit.reserve(), limit.reserve()]
    await limit.acquire(urgent=False, optional=True, timeout=0)  # 0 in flight + 2 kept < 3: allowed
    with pytest.raises(TimeoutError):
        await limit.acquire(urgent=False, optional=True, timeout=0)  # 1 + 2 = 3: none left beside them
    rewrite = asyncio.create_task(limit.acquire(urgent=False, optional=True))
    await asyncio.sleep(0)
    assert limit.waiting == (0, 1)
    # An answer (the one a reservation was kept for) is not held back by the reservations.
    await limit.acquire(urgent=True, timeout=0)
    assert not rewrite.done() and limit.in_flight == 2
    jobs[0].release()  # its request went out
    jobs[0].release()  # twice is harmless
    assert limit.reserved == 1 and not rewrite.done()  # 2 in flight + 1 kept: still none to spare
    limit.release("ok")
    await asyncio.wait_for(rewrite, 1)
    assert limit.in_flight == 2
    jobs[1].release()
    assert limit.reserved == 0

    expected = [3]
    burst = AdaptiveLimit(3, clock=Clock())
    burst.expected = lambda: expected[0]  # a burst's jobs, signalled and not claimed yet
    with pytest.raises(TimeoutError):
        await burst.acquire(urgent=False, optional=True, timeout=0)
    await burst.acquire(urgent=False, timeout=0)  # a record is not optional
    expected[0] = 1
    await burst.acquire(urgent=False, optional=True, timeout=0)  # 1 + 0 + 1 < 3
    assert burst.in_flight == 2


async def test_an_answer_takes_the_slot_of_an_optional_request_still_waiting_for_its_reply(tmp_path: Path) -> None:
    """The real SDK through the limit, one slot: a slow optional request (a rewrite) holds it; an
    answer arriving then gets it at once, the optional request is abandoned (`Preempted`, a
    `NoSlot`: the rewrite is skipped) and the model sees it go (no longer in flight)."""
    from bot.architect.client import build_anthropic_client
    from bot.architect.limit import NoSlot, waiting_at_most
    from tests.fakes.anthropic import DEFAULT_API_KEY, Reply, default_reply

    async with FakeAnthropic() as model:
        model.default_reply = lambda body: (
            default_reply(body) if body.get("stream") else Reply(text="late", delay_first_token=60.0)
        )
        limit = AdaptiveLimit(1)
        settings = Settings(
            db_path=tmp_path / "archbot.db", anthropic_api_key=DEFAULT_API_KEY, anthropic_base_url=model.base_url
        )
        client = build_anthropic_client(settings, limit=limit)
        try:

            async def rewrite() -> None:
                with waiting_at_most(5.0):
                    await client.messages.create(
                        model=settings.model, max_tokens=50, messages=[{"role": "user", "content": "rewrite me"}]
                    )

            optional = asyncio.create_task(rewrite())
            await model.wait_in_flight(1)
            async with client.messages.stream(
                model=settings.model, max_tokens=200, messages=[{"role": "user", "content": "the question"}]
            ) as stream:
                text = await stream.get_final_text()
            assert text
            with pytest.raises(NoSlot):
                await optional
            await model.wait_in_flight(0)  # the model saw it go: it ended there too
            assert limit.in_flight == 0
            assert [r.stream for r in model.message_requests] == [False, True]  # not sent again
        finally:
            await client.close()
