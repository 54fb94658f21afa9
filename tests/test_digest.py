"""The weekly digest's content, privacy filter, Slack limits and CLI, from fixture data.

The store is seeded the way the bot fills it (enqueue → claim_job → record_answer →
record_feedback). Slack is the fake Slack (real `AsyncWebClient`), the model the fake
Anthropic (real `AsyncAnthropic`); assertions read what those servers received.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from slack_sdk.web.async_client import AsyncWebClient

from bot.cli import cli
from bot.config import Settings
from bot.digest import (
    MAX_BLOCKS,
    SECTION_LIMIT,
    TEXT_LIMIT,
    DigestData,
    ThreadItem,
    build_digest,
    collect_digest,
    format_range,
    post_scheduled_digest,
    render_markdown,
    render_slack_messages,
)
from bot.store import Store
from bot.types import Answer, Citation, Usage
from tests.fakes.anthropic import DEFAULT_MODELS, FakeAnthropic, Reply
from tests.fakes.slack import FakeSlack

PUBLIC = "CPUB"
GONE = "CGONE"  # public, but the bot left it
TURNED = "CTURNED"  # stored as public, now private
PRIVATE = "GPRIV"
DM = "DPRIV"
OPTED = "GOPT"
CMD = "CCMD"  # a slash command's channel: type unknown until checked
SECRETS = ("PRIVATE-ZEBRA", "DM-OKAPI", "TURNED-QUOKKA")
MODEL_KEY = "sk-ant-fake-0123456789abcdef"


@dataclass
class Seeded:
    store: Store
    ts: dict[str, str]  # name -> thread ts


class Seeder:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.n = 0

    def ts(self) -> str:
        self.n += 1
        return f"1690000{self.n:03d}.000100"

    def answer(
        self,
        *,
        channel: str,
        question: str,
        answer: Answer,
        channel_type: str = "channel",
        thread_ts: str | None = None,
        latency_ms: float | None = 2000.0,
        kind: str = "mention",
    ) -> tuple[str, str]:
        """Store one question and its answer; returns (thread_ts, answer message ts)."""
        ts = self.ts()
        thread = thread_ts or ts
        job_id = self.store.enqueue(
            kind=kind, channel=channel, ts=ts, thread_ts=thread, user="U1", text=question, channel_type=channel_type
        )
        job = self.store.claim_job()
        assert job is not None and job.id == job_id
        reply_ts = self.ts()
        self.store.record_answer(
            job=job,
            channel=channel,
            thread_ts=thread,
            message_ts=reply_ts,
            question=question,
            answer=answer,
            latency_ms=latency_ms,
        )
        self.store.finish_job(job.id, state="done")
        return thread, reply_ts


def usage(cost: float = 0.02) -> Usage:
    return Usage(input_tokens=1000, output_tokens=300, cost_usd=cost)


def seed(store: Store) -> dict[str, str]:
    """A week: public threads of every kind, plus private ones that must never show."""
    s = Seeder(store)
    t: dict[str, str] = {}
    t["breaker"], reply = s.answer(
        channel=PUBLIC,
        question="How do we keep a slow downstream service from taking ours down? <@U2> asked too",
        answer=Answer(
            kind="answer",
            text="Use a circuit breaker.",
            topic="Resilience",
            decision="Put a circuit breaker with a 2 s timeout on the billing client",
            citations=[
                Citation(path="resilience/circuit-breaker.md", source="knowledge"),
                Citation(path="adr/0007-timeouts.md", source="docs", url="https://git.example/adr/0007-timeouts.md"),
            ],
            gaps=["No document says which timeout the billing client uses"],
            conflicts=["adr/0007 says 5 s, the billing runbook says 2 s"],
            usage=usage(),
        ),
        latency_ms=1000.0,
    )
    store.record_feedback(channel=PUBLIC, message_ts=reply, user="U3", value="up")
    # A follow-up in the same thread: one thread, two answers.
    s.answer(
        channel=PUBLIC,
        question="And for the device service?",
        thread_ts=t["breaker"],
        answer=Answer(
            kind="answer",
            text="Same.",
            topic="Resilience",
            citations=[
                Citation(path="adr/0007-timeouts.md", source="docs", url="https://git.example/adr/0007-timeouts.md")
            ],
            usage=usage(),
        ),
        latency_ms=3000.0,
    )
    t["retries"], _ = s.answer(
        channel=PUBLIC,
        question="Should retries use jitter?",
        answer=Answer(kind="answer", text="Yes.", topic="resilience", usage=usage()),  # same topic, other case
        latency_ms=4000.0,
    )
    t["sessions"], _ = s.answer(
        channel=PUBLIC,
        question="Should the device service own its sessions table?",
        answer=Answer(kind="clarify", text="Which sessions?", topic="Data ownership", usage=usage()),
    )
    t["outbox"], reply = s.answer(
        channel=PUBLIC,
        question="How do we publish events reliably after a DB write?",
        answer=Answer(
            kind="answer",
            text="Outbox.",
            citations=[Citation(path="messaging/outbox-pattern.md", source="docs")],
            usage=usage(),
        ),
        latency_ms=6000.0,
    )
    store.record_feedback(channel=PUBLIC, message_ts=reply, user="U4", value="down")
    t["review"], _ = s.answer(
        channel=PUBLIC,
        kind="review",
        question="Split billing into its own service",
        answer=Answer(kind="review", text="Review text.", topic="Service boundaries", usage=usage()),
    )
    t["failure"], _ = s.answer(
        channel=PUBLIC,
        question="What about caching?",
        answer=Answer(kind="failure", text="Sorry."),
        latency_ms=None,
    )
    # Deleted from Slack since: skipped and counted.
    t["deleted"], _ = s.answer(
        channel=PUBLIC,
        question="A thread someone deleted",
        answer=Answer(kind="answer", text="x", topic="Resilience", usage=usage()),
    )
    t["gone"], _ = s.answer(
        channel=GONE,
        question="A question in a channel the bot has left",
        answer=Answer(kind="answer", text="x", topic="Resilience", usage=usage()),
    )
    # Private: never shown, never sent to the model.
    secret = Answer(
        kind="answer",
        text="PRIVATE-ZEBRA answer",
        topic="PRIVATE-ZEBRA topic",
        decision="PRIVATE-ZEBRA decision",
        gaps=["PRIVATE-ZEBRA gap"],
        citations=[Citation(path="secret/PRIVATE-ZEBRA.md", source="docs")],
        usage=usage(),
    )
    t["private"], _ = s.answer(channel=PRIVATE, channel_type="group", question="PRIVATE-ZEBRA question", answer=secret)
    dm = Answer(kind="answer", text="DM-OKAPI", topic="DM-OKAPI topic", decision="DM-OKAPI decision", usage=usage())
    t["dm"], _ = s.answer(channel=DM, channel_type="im", question="DM-OKAPI question", answer=dm)
    turned = Answer(kind="answer", text="TURNED-QUOKKA", topic="TURNED-QUOKKA topic", usage=usage())
    t["turned"], _ = s.answer(channel=TURNED, question="TURNED-QUOKKA question", answer=turned)
    t["opted"], _ = s.answer(
        channel=OPTED,
        channel_type="group",
        question="OPTED-IN question about sharding",
        answer=Answer(kind="answer", text="y", topic="Sharding", usage=usage()),
    )
    t["command"], _ = s.answer(
        channel=CMD,
        channel_type="command",
        question="Review the event bus proposal",
        answer=Answer(kind="review", text="z", topic="Messaging", decision="Adopt the event bus", usage=usage()),
    )
    return t


def add_to_slack(slack: FakeSlack, threads: dict[str, str]) -> None:
    """The Slack side of the fixture: the threads' root messages, and the channels' states."""
    where = {"gone": GONE, "private": PRIVATE, "dm": DM, "turned": TURNED, "opted": OPTED, "command": CMD}
    for name, ts in threads.items():
        if name == "deleted":
            continue
        slack.add_message(where.get(name, PUBLIC), f"question {name}", user="U1", ts=ts)
    slack.add_channel(GONE, is_member=False)
    slack.add_channel(PRIVATE, is_private=True)
    slack.add_channel(OPTED, is_private=True)
    slack.add_channel(TURNED, is_private=True)
    slack.add_channel(DM, is_im=True, user="U1")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "archbot.db")
    yield s
    s.close()


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"db_path": tmp_path / "archbot.db", "tz": "Europe/Berlin", "log_format": "text"}
    values.update(overrides)
    return Settings(**values)


def window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(days=7), now + timedelta(minutes=1)


def everything(messages: list[Any]) -> str:
    return json.dumps(messages, ensure_ascii=False)


# -- content ----------------------------------------------------------------------------------
async def test_plain_digest_from_fixture_data_offline(tmp_path: Path, store: Store) -> None:
    seed(store)
    since, until = window()
    data = await collect_digest(store, settings_for(tmp_path), since=since, until=until)

    topics = {name: [t.line for t in items] for name, items in data.topics.items()}
    assert next(iter(topics)) == "Resilience"  # biggest first; "resilience" merged into it
    assert topics["Resilience"][:2] == [
        "How do we keep a slow downstream service from taking ours down? @U2 asked too",
        "Should retries use jitter?",
    ]
    assert topics["Outbox pattern"] == ["How do we publish events reliably after a DB write?"]  # from its doc
    assert topics["Data ownership"] == ["Should the device service own its sessions table?"]
    assert "Sharding" not in topics and "Messaging" not in topics  # private, and unverifiable offline
    assert "What about caching?" not in str(topics)  # a failure is counted, not listed as answered
    assert [d.text for d in data.decisions] == [
        "Put a circuit breaker with a 2 s timeout on the billing client",
        "Reviewed: Split billing into its own service",
    ]
    assert {(o.text, o.note) for o in data.open_questions} == {
        ("Should the device service own its sessions table?", "waiting for details"),
        ("How do we publish events reliably after a DB write?", "answer marked 👎"),
    }
    assert [(g.kind, g.description, g.files) for g in data.gaps] == [
        (
            "conflict",
            "adr/0007 says 5 s, the billing runbook says 2 s",
            ["adr/0007-timeouts.md", "knowledge/resilience/circuit-breaker.md"],
        ),
        (
            "gap",
            "No document says which timeout the billing client uses",
            ["adr/0007-timeouts.md", "knowledge/resilience/circuit-breaker.md"],
        ),
    ]
    assert next((d.label, d.count) for d in data.top_docs) == ("adr/0007-timeouts.md", 2)
    n = data.numbers
    # Public answers only: breaker x2, retries, sessions, outbox, review, failure, deleted, gone, turned.
    assert n.questions == 10
    assert n.failures == 1 and n.clarifications == 1
    assert n.thumbs_up == 1 and n.thumbs_down == 1
    assert n.median_latency_ms == 2000.0
    assert n.tokens == 9 * 1300
    assert n.cost_usd == pytest.approx(9 * 0.02)
    assert data.private_left_out == 3  # two private channels (one not opted in) and the DM
    assert data.skipped == {"unverified": 1}  # the slash command's channel

    text = render_markdown(data)
    assert text.startswith("# Architecture digest · ")
    for expected in ("## Threads answered", "## Decisions", "## Open questions", "## Knowledge gaps"):
        assert expected in text
    assert "## The week in numbers" in text and "👍 1 · 👎 1" in text
    assert "[adr/0007-timeouts.md](https://git.example/adr/0007-timeouts.md) (2)" in text
    assert "3 private or direct-message thread(s) left out" in text
    for secret in ("PRIVATE-ZEBRA", "DM-OKAPI"):
        assert secret not in text


async def test_digest_with_fake_slack_links_threads_and_counts_what_it_skips(
    tmp_path: Path, store: Store, slack: FakeSlack
) -> None:
    threads = seed(store)
    add_to_slack(slack, threads)
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    since, until = window()
    data = await collect_digest(store, settings_for(tmp_path), since=since, until=until, slack=client)

    lines = [t.line for t in data.threads()]
    assert "A thread someone deleted" not in lines
    assert "A question in a channel the bot has left" not in lines
    assert "Review the event bus proposal" in lines  # conversations.info says its channel is public
    assert all(t.permalink and t.permalink.startswith("https://fake.slack/archives/") for t in data.threads())
    assert data.skipped == {"deleted": 1, "channel_left": 1}
    assert data.private_left_out == 4  # two private channels, the DM, and the channel that turned private
    assert "Adopt the event bus" in [d.text for d in data.decisions]

    messages = render_slack_messages(data)
    dumped = everything([m.blocks for m in messages] + [m.text for m in messages])
    assert "1 deleted thread" in dumped and "1 thread in a channel the bot left" in dumped
    for secret in SECRETS:
        assert secret not in dumped
    assert "<@U" not in dumped and "<!" not in dumped  # nobody is pinged by a digest


async def test_private_threads_never_reach_the_model_or_the_post(
    tmp_path: Path, store: Store, slack: FakeSlack, model: FakeAnthropic
) -> None:
    threads = seed(store)
    add_to_slack(slack, threads)
    model.script(Reply(text="- Resilience dominated the week.\n- The billing timeout needs one source of truth."))
    settings = settings_for(
        tmp_path,
        slack_bot_token=slack.bot_token,
        slack_api_url=slack.api_url,
        anthropic_api_key=MODEL_KEY,
        anthropic_base_url=model.base_url,
        model=DEFAULT_MODELS[0],
        digest_channel="CDIGEST",
    )
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    since, until = window()
    ts = await post_scheduled_digest(settings, store, client, None, channel="CDIGEST", since=since, until=until)

    assert len(model.message_requests) == 1
    request = json.dumps(model.message_requests[0].body, ensure_ascii=False)
    assert "Should retries use jitter?" in request
    posted = [c.args for c in slack.calls_to("chat.postMessage")]
    assert posted[0]["channel"] == "CDIGEST" and slack.message("CDIGEST", ts) is not None
    dumped = everything(posted)
    assert "Resilience dominated the week." in dumped
    assert "Summary written by Claude" in dumped
    for secret in SECRETS:
        assert secret not in request
        assert secret not in dumped
    assert "OPTED-IN" not in request and "OPTED-IN" not in dumped


async def test_permalinks_are_fetched_for_the_threads_shown_only(
    tmp_path: Path, store: Store, slack: FakeSlack
) -> None:
    seeder = Seeder(store)
    roots = []
    for i in range(15):
        ts, _ = seeder.answer(
            channel=PUBLIC, question=f"Question number {i}", answer=Answer(kind="answer", text="a", topic="Caching")
        )
        roots.append(ts)
        if i != 0:  # the first one was deleted from Slack since
            slack.add_message(PUBLIC, f"question {i}", user="U1", ts=ts)
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    since, until = window()
    data = await collect_digest(store, settings_for(tmp_path), since=since, until=until, slack=client)
    listed = data.topics["Caching"]
    assert len(listed) == 14 and data.skipped == {"deleted": 1}
    assert [t.line for t in listed[:12]] == [f"Question number {i}" for i in range(1, 13)]
    assert all(t.permalink for t in listed[:12])  # the 13th took the deleted one's place, and is linked
    # 12 shown at first, one of them deleted, then one more: 13 calls, not 15.
    assert len(slack.calls_to("chat.getPermalink", include_failed=True)) == 13
    assert "- …and 2 more" in render_markdown(data)


async def test_an_opted_in_private_channel_is_shown(tmp_path: Path, store: Store, slack: FakeSlack) -> None:
    threads = seed(store)
    add_to_slack(slack, threads)
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    since, until = window()
    settings = settings_for(tmp_path, digest_channels_opt_in=[OPTED])
    data = await collect_digest(store, settings, since=since, until=until, slack=client)
    assert data.topics["Sharding"][0].line == "OPTED-IN question about sharding"
    assert data.private_left_out == 3  # still not the others


async def test_model_failure_gives_the_plain_digest(
    tmp_path: Path, store: Store, slack: FakeSlack, model: FakeAnthropic
) -> None:
    threads = seed(store)
    add_to_slack(slack, threads)
    model.fail(500, times=10)
    settings = settings_for(
        tmp_path,
        anthropic_api_key=MODEL_KEY,
        anthropic_base_url=model.base_url,
        model=DEFAULT_MODELS[0],
        model_max_retries=0,
    )
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    since, until = window()
    ts = await post_scheduled_digest(settings, store, client, None, channel="CDIGEST", since=since, until=until)
    assert ts
    assert len(model.message_requests) == 1
    dumped = everything([c.args for c in slack.calls_to("chat.postMessage")])
    assert "Plain digest: the model was not available." in dumped
    assert "Threads answered" in dumped


async def test_without_a_model_no_request_is_made(tmp_path: Path, store: Store, model: FakeAnthropic) -> None:
    seed(store)
    since, until = window()
    data = await build_digest(settings_for(tmp_path), store, None, None, since=since, until=until)
    assert data.summary is None and not data.summary_failed
    assert model.requests == []
    assert "This week" not in render_markdown(data)


async def test_an_empty_week(tmp_path: Path, store: Store, slack: FakeSlack) -> None:
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    since, until = window()
    data = await collect_digest(store, settings_for(tmp_path), since=since, until=until, slack=client)
    assert data.empty
    assert "No architecture questions in this period." in render_markdown(data)
    messages = render_slack_messages(data)
    assert len(messages) == 1
    await client.chat_postMessage(channel="CDIGEST", text=messages[0].text, blocks=messages[0].blocks)


async def test_only_the_window_is_read(tmp_path: Path, store: Store) -> None:
    seed(store)
    now = datetime.now(UTC)
    data = await collect_digest(
        store, settings_for(tmp_path), since=now + timedelta(minutes=1), until=now + timedelta(days=1)
    )
    assert data.empty


# -- Slack limits ------------------------------------------------------------------------------
def big_digest(threads: int, line_chars: int = 150) -> DigestData:
    now = datetime(2025, 3, 31, 9, tzinfo=UTC)
    data = DigestData(since=now - timedelta(days=7), until=now)
    for i in range(threads):
        topic = f"Topic {i % 40:02d} " + "x" * 30
        line = (f"Question {i} " + "about a long architecture matter " * 10)[:line_chars]
        data.topics.setdefault(topic, []).append(
            ThreadItem(
                channel=PUBLIC,
                thread_ts=f"1.{i}",
                topic=topic,
                line=line,
                permalink=f"https://fake.slack/archives/{PUBLIC}/p{i:016d}",
            )
        )
    data.numbers.questions = threads
    return data


def check_limits(messages: list[Any]) -> None:
    for m in messages:
        assert len(m.blocks) <= MAX_BLOCKS
        assert len(m.text) <= TEXT_LIMIT
        for block in m.blocks:
            if block["type"] == "section":
                assert len(block["text"]["text"]) <= SECTION_LIMIT
            if block["type"] == "header":
                assert len(block["text"]["text"]) <= 150


async def test_a_long_digest_is_split_into_a_parent_and_its_thread(slack: FakeSlack) -> None:
    data = big_digest(480)
    data.summary = "- A busy week."
    messages = render_slack_messages(data)
    assert len(messages) > 2
    check_limits(messages)
    parent_blocks = json.dumps(messages[0].blocks)
    assert "A busy week." in parent_blocks and "The details are in the thread." in parent_blocks
    assert "Threads answered" not in parent_blocks

    from bot.digest import post_digest

    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    ts = await post_digest(client, channel="CDIGEST", messages=messages)
    replies = slack.thread("CDIGEST", ts)
    assert len(replies) == len(messages)  # the parent, then every part in its thread
    assert not [c for c in slack.calls_to("chat.postMessage", include_failed=True) if c.failed]
    posted = everything([c.args.get("blocks") for c in slack.calls_to("chat.postMessage")])
    assert "Question 0 " in posted
    assert posted.count("https://fake.slack/archives/") == 150  # the listing budget; the rest are counted
    assert "…and 324 threads in 27 other topics." in posted  # 12 topics x 12, then 6 of the 13th


async def test_a_short_digest_is_one_message() -> None:
    messages = render_slack_messages(big_digest(5))
    assert len(messages) == 1
    check_limits(messages)


def test_a_single_overlong_line_is_cut_not_refused() -> None:
    data = big_digest(1, line_chars=10)
    data.topics[next(iter(data.topics))][0].line = "y" * 5000
    check_limits(render_slack_messages(data))


def test_format_range() -> None:
    since = datetime(2025, 3, 24, 9, tzinfo=UTC)
    assert format_range(since, since + timedelta(days=7)) == "24 Mar – 31 Mar 2025"
    assert (
        format_range(datetime(2024, 12, 30, tzinfo=UTC), datetime(2025, 1, 6, tzinfo=UTC)) == "30 Dec 2024 – 5 Jan 2025"
    )


def test_markdown_in_questions_is_shown_literally() -> None:
    data = big_digest(1)
    item = next(iter(data.topics.values()))[0]
    item.line = "Is *this* [a link](http://evil.example) or <!channel>?"
    messages = render_slack_messages(data)
    dumped = everything([m.blocks for m in messages])
    assert "<http://evil.example" not in dumped and "<!channel>" not in dumped
    assert "*this*" in render_markdown(data).replace("\\", "")


# -- the CLI -----------------------------------------------------------------------------------
def test_post_without_a_channel_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["digest", "--post"],
        env={"ARCHBOT_DB": str(tmp_path / "a.db"), "SLACK_BOT_TOKEN": "xoxb-test-token"},
    )
    assert result.exit_code == 2
    assert "ARCHBOT_DIGEST_CHANNEL" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "xoxb-test-token" not in result.output + result.stderr


def test_post_without_a_token_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["digest", "--post"], env={"ARCHBOT_DB": str(tmp_path / "a.db"), "ARCHBOT_DIGEST_CHANNEL": "CDIGEST"}
    )
    assert result.exit_code == 2
    assert "SLACK_BOT_TOKEN" in result.stderr


def test_dry_run_prints_markdown(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    store = Store(db)
    seed(store)
    store.close()
    since = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")
    for args in (["digest"], ["digest", "--dry-run", "--since", since]):
        result = CliRunner().invoke(cli, args, env={"ARCHBOT_DB": str(db)})
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("# Architecture digest")
        assert "Should retries use jitter?" in result.stdout
        assert "PRIVATE-ZEBRA" not in result.stdout


async def test_cli_post_reaches_the_channel(tmp_path: Path, slack: FakeSlack) -> None:
    db = tmp_path / "a.db"
    store = Store(db)
    threads = seed(store)
    store.close()
    add_to_slack(slack, threads)
    env = {
        "ARCHBOT_DB": str(db),
        "ARCHBOT_DIGEST_CHANNEL": "CDIGEST",
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_API_URL": slack.api_url,
    }
    # The CLI runs its own event loop: give it a thread, while the fake Slack serves on this one.
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["digest", "--post"], env=env)
    assert result.exit_code == 0, result.output + result.stderr
    assert "Posted the digest to CDIGEST" in result.stdout
    parents = [c for c in slack.calls_to("chat.postMessage") if c.args["channel"] == "CDIGEST"]
    assert parents and "Should retries use jitter?" in everything([c.args for c in parents])


async def test_dry_run_and_post_together_exit_2_and_post_nothing(tmp_path: Path, slack: FakeSlack) -> None:
    db = tmp_path / "a.db"
    store = Store(db)
    add_to_slack(slack, seed(store))
    store.close()
    env = {
        "ARCHBOT_DB": str(db),
        "ARCHBOT_DIGEST_CHANNEL": "CDIGEST",
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_API_URL": slack.api_url,
    }
    for args in (["digest", "--dry-run", "--post"], ["digest", "--post", "--dry-run"], ["digest", "--repost"]):
        result = await asyncio.to_thread(CliRunner().invoke, cli, args, env=env)
        assert result.exit_code == 2, args
        assert "--post" in result.stderr
    assert slack.calls_to("chat.postMessage") == []


async def test_a_posted_window_is_not_posted_again_without_repost(tmp_path: Path, slack: FakeSlack) -> None:
    db = tmp_path / "a.db"
    store = Store(db)
    add_to_slack(slack, seed(store))
    store.close()
    env = {
        "ARCHBOT_DB": str(db),
        "ARCHBOT_DIGEST_CHANNEL": "CDIGEST",
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_API_URL": slack.api_url,
    }

    def parents() -> list[Any]:
        return [m for m in slack.messages("CDIGEST") if not m.is_reply]

    first = await asyncio.to_thread(CliRunner().invoke, cli, ["digest", "--post"], env=env)
    assert first.exit_code == 0, first.output + first.stderr
    assert len(parents()) == 1
    again = await asyncio.to_thread(CliRunner().invoke, cli, ["digest", "--post"], env=env)
    assert again.exit_code == 0
    assert "already posted to CDIGEST" in again.stdout and "--repost" in again.stdout
    assert len(parents()) == 1  # nothing new in the channel
    forced = await asyncio.to_thread(CliRunner().invoke, cli, ["digest", "--post", "--repost"], env=env)
    assert forced.exit_code == 0, forced.output + forced.stderr
    assert len(parents()) == 2
    store = Store(db)
    rows = store.query("SELECT period, status, ts FROM digests")
    store.close()
    assert len(rows) == 1 and rows[0]["status"] == "posted" and rows[0]["ts"] == parents()[-1].ts


async def test_a_failed_post_leaves_the_window_free(tmp_path: Path, slack: FakeSlack) -> None:
    db = tmp_path / "a.db"
    store = Store(db)
    add_to_slack(slack, seed(store))
    store.close()
    env = {
        "ARCHBOT_DB": str(db),
        "ARCHBOT_DIGEST_CHANNEL": "CDIGEST",
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_API_URL": slack.api_url,
    }
    slack.add_channel("CDIGEST", is_member=False)
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["digest", "--post"], env=env)
    assert result.exit_code == 1
    assert "not_in_channel" in result.stderr
    store = Store(db)
    assert store.query("SELECT * FROM digests") == []
    store.close()


async def test_the_digest_speaks_archbot_language(tmp_path: Path, store: Store, model: FakeAnthropic) -> None:
    seed(store)
    since, until = window()
    data = await collect_digest(store, settings_for(tmp_path, language="zh"), since=since, until=until)
    assert {o.note for o in data.open_questions} == {"等待补充信息", "回答被标记 👎"}
    assert "已评审：Split billing into its own service" in [d.text for d in data.decisions]
    text = render_markdown(data)
    assert text.startswith("# 架构周报 · ")
    for expected in ("## 本周数据", "## 已回答的话题", "## 决定", "## 待解决的问题", "## 知识缺口", "**文档不一致：**"):
        assert expected in text, expected
    for english in ("Threads answered", "Knowledge gaps", "Docs disagree", "private or direct-message"):
        assert english not in text, english
    messages = render_slack_messages(data)
    assert messages[0].blocks[0]["text"]["text"].startswith("架构周报 · ")
    assert messages[0].text.startswith("架构周报")
    # with a model, the summary is asked for in that language
    settings = settings_for(
        tmp_path, language="zh", anthropic_api_key="sk-ant-fake-0123456789abcdef", anthropic_base_url=model.base_url
    )
    await build_digest(settings, store, None, None, since=since, until=until)
    request = model.message_requests[-1].body
    assert request is not None and "请用简体中文写这些要点。" in json.dumps(request, ensure_ascii=False)


def test_format_range_in_chinese() -> None:
    since = datetime(2025, 3, 24, 9, tzinfo=UTC)
    assert format_range(since, since + timedelta(days=7), "zh") == "2025年3月24日 – 3月31日"
