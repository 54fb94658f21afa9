"""The architect against the fake Anthropic API, with the real AsyncAnthropic client.

Assertions are on what the model was sent (the fake's request log) and on the Answer returned.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anthropic
import pytest

from bot.architect import Architect, build_anthropic_client, check_model, cost_usd, retrieval_only_answer
from bot.architect.prompt import build_search_results, clean_turns, passage_title, wants_direct_answer
from bot.config import Settings
from bot.errors import ConfigError, ModelError
from bot.tokens import estimate_tokens, open_fence
from bot.types import Hit, Turn, Usage
from tests.fakes.anthropic import DEFAULT_API_KEY, Cite, FakeAnthropic, Segment, ToolUse, search_results
from tests.fakes.anthropic import Reply as Scripted

MODEL = "claude-sonnet-5-5"  # the current Sonnet: thinks by default, refuses forced tool_choice


def make_settings(base_url: str, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "anthropic_api_key": DEFAULT_API_KEY,
        "anthropic_base_url": base_url,
        "model": MODEL,
        "db_path": tmp_path / "archbot.db",
        "model_max_retries": 2,
        "model_timeout": 10.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def settings(fake: FakeAnthropic, tmp_path: Path) -> Settings:
    return make_settings(fake.base_url, tmp_path)


@pytest.fixture
async def architect(settings: Settings) -> AsyncIterator[Architect]:
    arch = Architect(settings, backoff=0.01)
    yield arch
    await arch.close()


def hit(path: str, heading: str, text: str, *, source: str = "docs", url: str | None = None) -> Hit:
    return Hit(path=path, heading=heading, score=1.0, snippet=text[:80], text=text, source=source, url=url)


HITS = [
    hit(
        "backend/device-service/README.md",
        "Device service > Events",
        "The device service publishes device.connection.lost on the cloudphone.events exchange.\n\n"
        "Consumers bind durable queues and ack manually.",
    ),
    hit(
        "knowledge/patterns/transactional-outbox.md",
        "Transactional outbox > How it works",
        "Write the event row in the same transaction as the state change; a relay publishes it.",
        source="knowledge",
    ),
]
PORTS_A = hit("docs/deploy/ports.md", "Ports > Device range", "Cloud phone ADB ports use the range 5555-5655.")
PORTS_B = hit("docs/ops/network.md", "Network > ADB", "ADB ports for devices are allocated from 40000-40999.")


def record(kind: str = "answer", **fields: object) -> ToolUse:
    return ToolUse(name="record_reply", input={"kind": kind, **fields})


def user(text: str) -> list[Turn]:
    return [Turn("user", text)]


def all_text(content: object) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content if isinstance(b, dict))  # type: ignore[union-attr]


# -- the happy path -----------------------------------------------------------------------
async def test_streams_text_and_calls_on_text_with_the_full_text(fake: FakeAnthropic, architect: Architect) -> None:
    body = "Use the transactional outbox. " * 6
    fake.script(
        Scripted(text=body, chunk_delay=0.001), Scripted(tool_use=record(topic="event delivery", confidence="high"))
    )
    shown: list[str] = []

    async def on_text(text: str) -> None:
        shown.append(text)

    answer = await architect.respond(
        turns=user("How should device events reach notifications?"), hits=HITS, on_text=on_text
    )

    assert answer.kind == "answer"
    assert answer.text == body.strip()
    assert len(shown) > 3
    assert all(b.startswith(a) for a, b in itertools.pairwise(shown))  # growing, never deltas
    assert shown[-1].strip() == answer.text
    assert answer.topic == "event delivery" and answer.confidence == "high"
    assert answer.model == MODEL
    assert answer.usage.input_tokens > 0 and answer.usage.output_tokens > 0
    assert answer.usage.cost_usd > 0
    answer_request, record_request = (r.body for r in fake.message_requests)
    assert answer_request is not None and record_request is not None
    assert answer_request["stream"] is True and answer_request["model"] == MODEL
    assert answer_request["tool_choice"] == {"type": "none"}  # the answer is text only
    assert record_request["tool_choice"] == {"type": "auto"}  # never forced: current models refuse that
    assert not record_request.get("stream")
    assistant, ask = record_request["messages"][-2:]
    assert assistant == {"role": "assistant", "content": answer.text}  # the reply as shown, [n] markers and all
    assert ask["role"] == "user" and ask["content"].startswith(architect.prompts.notes["record"])
    assert record_request["system"] == answer_request["system"] and record_request["tools"] == answer_request["tools"]


async def test_the_record_request_of_a_follow_up_repeats_what_people_said_not_the_earlier_answers(
    fake: FakeAnthropic, architect: Architect
) -> None:
    earlier_answer = "A long earlier answer about outboxes and relays. " * 40
    turns = [
        Turn("user", "Should billing use an outbox?"),
        Turn("assistant", earlier_answer),
        Turn("user", "We decided: outbox in billing only. How do we drain it?"),
    ]
    await architect.respond(turns=turns, hits=HITS)
    record_request = fake.message_requests[-1].body
    sent = json.dumps(record_request["messages"], ensure_ascii=False)
    assert "Should billing use an outbox?" in sent and "We decided: outbox in billing only." in sent
    assert "A long earlier answer" not in sent
    assert [m["role"] for m in record_request["messages"]] == ["user", "assistant", "user"]


async def test_the_record_request_lists_the_passages_instead_of_resending_them(
    fake: FakeAnthropic, settings: Settings
) -> None:
    question = "How should device events reach notifications?"
    texts = []
    for record_context in ("full", "compact"):
        fake.reset()
        fake.script(
            Scripted(text=[Segment("Device events use the topic exchange.", [Cite(search_result_index=0)])]),
            Scripted(tool_use=record(sources=["backend/device-service/README.md"])),
        )
        async with Architect(settings, backoff=0.01, record_context=record_context) as arch:  # type: ignore[arg-type]
            answer = await arch.respond(turns=user(question), hits=HITS)
        record_request = fake.message_requests[-1].body
        texts.append(json.dumps(record_request["messages"], ensure_ascii=False))
        assert answer.record_usage.input_tokens > 0
        assert answer.usage.input_tokens > answer.record_usage.input_tokens  # usage covers both requests
        if record_context == "compact":
            assert not search_results(record_request)  # the passages are named, not re-sent
            sent = all_text(record_request["messages"][0]["content"])
            assert "`backend/device-service/README.md` — Device service > Events" in sent
            assert "`knowledge/patterns/transactional-outbox.md`" in sent and question in sent
            assert "[1] `backend/device-service/README.md`" in record_request["messages"][-1]["content"]
            assert [c.path for c in answer.citations] == ["backend/device-service/README.md"]
            compact_tokens = answer.record_usage.input_tokens
        else:
            assert search_results(record_request)
            full_tokens = answer.record_usage.input_tokens
    assert HITS[1].text not in texts[1] and HITS[1].text in texts[0]
    assert compact_tokens < full_tokens


@pytest.mark.parametrize("model", ["claude-haiku-4-5", "claude-sonnet-4-6", "claude-opus-5"])
async def test_other_models(fake: FakeAnthropic, tmp_path: Path, model: str) -> None:
    arch = Architect(make_settings(fake.base_url, tmp_path, model=model), backoff=0.01)
    try:
        fake.script(Scripted(text="Short answer."), Scripted(tool_use=record(topic="t")))
        answer = await arch.respond(turns=user("q?"), hits=HITS)
    finally:
        await arch.close()
    assert answer.text == "Short answer." and answer.topic == "t" and answer.model == model


async def test_citations_map_back_to_paths(fake: FakeAnthropic, architect: Architect) -> None:
    docs_url = "https://git.example.com/docs/blob/main/backend/device-service/README.md"
    hits = [HITS[0].__class__(**{**HITS[0].__dict__, "url": docs_url}), HITS[1]]
    fake.script(
        Scripted(
            text=[
                Segment("Devices publish their events on the exchange. ", [Cite(source=docs_url)]),
                Segment("Publish them through an outbox.", [Cite(search_result_index=1, cited_text="Write the event")]),
            ],
        )
    )
    answer = await architect.respond(turns=user("How do device events flow?"), hits=hits)

    assert [(c.path, c.heading, c.source, c.url) for c in answer.citations] == [
        ("backend/device-service/README.md", "Device service > Events", "docs", docs_url),
        ("knowledge/patterns/transactional-outbox.md", "Transactional outbox > How it works", "knowledge", None),
    ]
    assert answer.citations[1].cited_text == "Write the event"
    # the passages went out as search_result blocks named by ref (url when set, else path)
    last = fake.message_requests[0].body["messages"][-1]  # type: ignore[index]
    results = [b for b in last["content"] if b["type"] == "search_result"]
    assert [r["source"] for r in results] == [docs_url, HITS[1].path]
    assert [r["title"] for r in results] == [passage_title(HITS[0]), passage_title(HITS[1])]
    assert all(r["citations"] == {"enabled": True} for r in results)


async def test_sources_listed_but_not_quoted_become_citations_only_when_real(
    fake: FakeAnthropic, architect: Architect
) -> None:
    fake.script(Scripted(text="Answer."), Scripted(tool_use=record(sources=[HITS[1].path, "invented/path.md"])))
    answer = await architect.respond(turns=user("q?"), hits=HITS)
    assert [c.path for c in answer.citations] == [HITS[1].path]


# -- clarify and "just answer" ------------------------------------------------------------
async def test_clarifying_questions(fake: FakeAnthropic, architect: Architect) -> None:
    questions = ["How many devices per tenant at peak?", "Who runs RabbitMQ today?"]
    text = "Before I recommend anything:\n1. " + questions[0] + "\n2. " + questions[1]
    fake.script(Scripted(text=text), Scripted(tool_use=record("clarify", questions=questions)))
    answer = await architect.respond(turns=user("Should we move to Kafka?"), hits=HITS)
    assert answer.kind == "clarify"
    assert answer.questions == questions
    assert answer.text == text


async def test_clarify_carries_its_provisional_answer(fake: FakeAnthropic, architect: Architect) -> None:
    questions = ["How many devices per tenant at peak?"]
    provisional = "Stay on RabbitMQ with a consistent-hash exchange for now."
    text = f"{provisional} Assuming under 1k events/s.\n\n1. {questions[0]}"
    fake.script(
        Scripted(text=text),
        Scripted(tool_use=record("clarify", questions=questions, provisional=provisional, assumptions=["<1k/s"])),
    )
    answer = await architect.respond(turns=user("Should we move to Kafka?"), hits=HITS)
    assert answer.kind == "clarify" and answer.provisional == provisional
    assert answer.assumptions == ["<1k/s"] and answer.text == text
    assert "provisional" in fake.message_requests[-1].body["tools"][0]["input_schema"]["properties"]


def test_a_clarify_record_without_text_still_shows_its_provisional_answer() -> None:
    from bot.architect.core import assemble_answer
    from bot.architect.reply import Reply as Record

    reply = Record(kind="clarify", questions=["What scale?"], provisional="Start with one queue per consumer.")
    answer = assemble_answer(text="", reply=reply, message=SimpleNamespace(content=[]), sent=[], mode="chat")
    assert answer.text == "Start with one queue per consumer.\n\n1. What scale?"


async def test_clarify_without_questions_is_invalid_and_reasked(fake: FakeAnthropic, architect: Architect) -> None:
    fake.script(
        Scripted(text="Could you tell me the scale?"),
        Scripted(tool_use=record("clarify")),
        Scripted(tool_use=record("clarify", questions=["What scale?"])),
    )
    answer = await architect.respond(turns=user("Kafka?"), hits=HITS)
    assert answer.kind == "clarify" and answer.questions == ["What scale?"]
    assert answer.text == "Could you tell me the scale?"


async def test_just_answer_is_passed_to_the_model_and_assumptions_recorded(
    fake: FakeAnthropic, architect: Architect
) -> None:
    turns = [
        Turn("user", "Should we move device events to Kafka?"),
        Turn("assistant", "1. How many events per second?\n2. Who operates the broker?"),
        Turn("user", "just answer please"),
    ]
    fake.script(
        Scripted(text="Assuming about 500 events/s and the current team: stay on RabbitMQ."),
        Scripted(tool_use=record(assumptions=["about 500 events per second", "no dedicated Kafka operator"])),
    )
    answer = await architect.respond(turns=turns, hits=HITS)

    assert answer.kind == "answer"
    assert answer.assumptions == ["about 500 events per second", "no dedicated Kafka operator"]
    body = fake.message_requests[0].body
    assert body is not None
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert all_text(body["messages"][1]["content"]).startswith("1. How many events")
    last = all_text(body["messages"][-1]["content"])
    assert "just answer please" in last
    assert architect.prompts.notes["just_answer"] in last  # the explicit signal
    system = "\n".join(b["text"] for b in body["system"])
    assert '"just answer"' in system and "assumptions" in system


async def test_without_just_answer_no_direct_note(fake: FakeAnthropic, architect: Architect) -> None:
    await architect.respond(turns=user("Should we move to Kafka?"), hits=HITS)
    last = all_text(fake.message_requests[0].body["messages"][-1]["content"])  # type: ignore[index]
    assert architect.prompts.notes["just_answer"] not in last


def test_direct_answer_phrases() -> None:
    assert wants_direct_answer(user("Just answer the question"))
    assert wants_direct_answer(user("no more questions, answer anyway"))
    assert wants_direct_answer(user("别问了，直接回答"))
    assert not wants_direct_answer(user("Which questions should we ask in the review?"))
    assert not wants_direct_answer([Turn("user", "just answer"), Turn("assistant", "ok"), Turn("user", "why?")])


# -- grounding: conflicts and gaps --------------------------------------------------------
async def test_conflicting_passages_are_recorded_with_both_paths(fake: FakeAnthropic, architect: Architect) -> None:
    fake.script(
        Scripted(
            text=[
                Segment("The docs disagree on the ADB port range: one says 5555-5655 ", [PORTS_A.path]),
                Segment("and another 40000-40999.", [PORTS_B.path]),
            ],
        ),
        Scripted(
            tool_use=record(
                conflicts=[{"summary": "ADB port range", "sources": [PORTS_A.path, PORTS_B.path]}],
                gaps=["which range is current"],
            ),
        ),
    )
    answer = await architect.respond(turns=user("Which ports do devices use?"), hits=[PORTS_A, PORTS_B])
    assert len(answer.conflicts) == 1
    assert PORTS_A.path in answer.conflicts[0] and PORTS_B.path in answer.conflicts[0]
    assert {c.path for c in answer.citations} == {PORTS_A.path, PORTS_B.path}
    assert answer.gaps == ["which range is current"]


async def test_no_passages_tells_the_model_so(fake: FakeAnthropic, architect: Architect) -> None:
    await architect.respond(turns=user("How is the billing service deployed?"), hits=[])
    content = fake.message_requests[0].body["messages"][-1]["content"]  # type: ignore[index]
    assert not [b for b in content if b["type"] == "search_result"]
    assert architect.prompts.notes["no_passages"] in all_text(content)


# -- the structured reply: invalid, missing ------------------------------------------------
async def test_invalid_record_is_asked_once_more(fake: FakeAnthropic, architect: Architect) -> None:
    fake.script(
        Scripted(text="Use an outbox.", citations=[HITS[1].path]),
        Scripted(tool_use=record("banana")),
        Scripted(tool_use=record("answer", topic="outbox")),
    )
    answer = await architect.respond(turns=user("How to publish events reliably?"), hits=HITS)
    assert answer.kind == "answer" and answer.topic == "outbox"
    assert answer.text == "Use an outbox. [1]"  # the marker of the passage it cites
    assert [c.path for c in answer.citations] == [HITS[1].path]
    _first, second, third = (r.body for r in fake.message_requests)
    assert third is not None and second is not None
    assert third["tool_choice"] == {"type": "auto"}
    assert third["messages"][: len(second["messages"])] == second["messages"]
    failed, reply_to_it = third["messages"][-2:]
    assert failed["role"] == "assistant" and failed["content"][0]["type"] == "thinking"
    assert failed["content"][-1]["type"] == "tool_use"
    result = reply_to_it["content"][0]
    assert result["type"] == "tool_result" and result["is_error"] is True and "kind" in result["content"]
    assert result["tool_use_id"] == failed["content"][-1]["id"]
    assert answer.usage.output_tokens > 0


async def test_invalid_twice_falls_back_to_plain_text(fake: FakeAnthropic, architect: Architect) -> None:
    fake.script(
        Scripted(text="The full answer, cited.", citations=[HITS[0].path]),
        Scripted(tool_use=record("banana")),
        Scripted(tool_use=record("still-wrong")),
    )
    answer = await architect.respond(turns=user("q?"), hits=HITS)
    assert answer.kind == "answer"
    assert answer.text == "The full answer, cited. [1]"
    assert [c.path for c in answer.citations] == [HITS[0].path]
    assert len(fake.message_requests) == 3


async def test_missing_record_is_requested_again(fake: FakeAnthropic, architect: Architect) -> None:
    fake.script(Scripted(text="An answer."), Scripted(text="I have recorded it."), Scripted(tool_use=record(topic="t")))
    answer = await architect.respond(turns=user("q?"), hits=HITS)
    assert answer.topic == "t" and answer.text == "An answer."
    follow = fake.message_requests[2].body["messages"][-1]  # type: ignore[index]
    assert architect.prompts.notes["repair_missing"] in all_text(follow["content"])


async def test_record_failure_keeps_the_answer(fake: FakeAnthropic, architect: Architect) -> None:
    fake.script(Scripted(text="Kept.", citations=[HITS[0].path]))
    fake.fail(500, times=10, skip=1)  # the streamed answer succeeds; the record request always fails
    answer = await architect.respond(turns=user("q?"), hits=HITS)
    assert answer.text == "Kept. [1]" and answer.kind == "answer"
    assert [c.path for c in answer.citations] == [HITS[0].path]
    assert len(fake.message_requests) == 4  # the answer + the record and its two SDK retries


async def test_review_kind_follows_the_mode(fake: FakeAnthropic, architect: Architect) -> None:
    fake.script(Scripted(text="An answer."), Scripted(tool_use=record("review")))
    answer = await architect.respond(turns=user("q?"), hits=HITS)
    assert answer.kind == "answer"


async def test_no_forced_tool_choice_ever(fake: FakeAnthropic, architect: Architect) -> None:
    fake.script(Scripted(text="a"), Scripted(tool_use=record("banana")), Scripted(text="no call"))
    await architect.respond(turns=user("q?"), hits=HITS)
    assert len(fake.message_requests) == 3
    assert all(r.body["tool_choice"]["type"] in ("auto", "none") for r in fake.message_requests)  # type: ignore[index]


# -- failures and retries -----------------------------------------------------------------
async def test_overloaded_twice_then_one_answer(fake: FakeAnthropic, architect: Architect) -> None:
    fake.fail(529, times=2)
    fake.script(Scripted(text="Finally."))
    answer = await architect.respond(turns=user("q?"), hits=HITS)
    assert answer.text == "Finally."
    assert len(fake.message_requests) == 4  # three tries of the answer, then the record
    assert [r.headers["x-stainless-retry-count"] for r in fake.message_requests[:3]] == ["0", "1", "2"]


async def test_always_500_raises_model_error(fake: FakeAnthropic, architect: Architect) -> None:
    fake.fail(500, times=50)
    with pytest.raises(ModelError) as caught:
        await architect.respond(turns=user("q?"), hits=HITS)
    assert caught.value.status == 500
    assert caught.value.retryable
    assert DEFAULT_API_KEY not in str(caught.value)
    assert len(fake.message_requests) == 3  # 1 + ARCHBOT_MODEL_RETRIES


async def test_bad_request_is_not_retried(fake: FakeAnthropic, architect: Architect) -> None:
    fake.fail(400, times=5, error_type="invalid_request_error")
    with pytest.raises(ModelError) as caught:
        await architect.respond(turns=user("q?"), hits=HITS)
    assert caught.value.status == 400 and not caught.value.retryable
    assert len(fake.message_requests) == 1


async def test_stream_cut_mid_way_is_restarted(fake: FakeAnthropic, architect: Architect) -> None:
    body = "A long answer that gets cut in the middle and must arrive whole. " * 3
    fake.script(Scripted(text=body))
    fake.cut_stream_after(8)  # after the thinking block and two text deltas
    shown: list[str] = []

    async def on_text(text: str) -> None:
        shown.append(text)

    answer = await architect.respond(turns=user("q?"), hits=HITS, on_text=on_text)
    assert answer.text == body.strip()
    assert len(fake.message_requests) == 3  # cut, restarted, then the record
    restart = next(i for i in range(1, len(shown)) if not shown[i].startswith(shown[i - 1]))
    assert shown[restart] == shown[0]  # the caller sees the text start over, then complete
    assert shown[-1].strip() == body.strip()
    # both attempts are counted: the cut one wrote the cache, the restart read it
    assert answer.usage.cache_creation_input_tokens > 0 and answer.usage.cache_read_input_tokens > 0


async def test_overloaded_error_event_mid_stream_is_restarted(fake: FakeAnthropic, architect: Architect) -> None:
    fake.script(Scripted(text="Whole answer."))
    fake.error_mid_stream(after_events=4, error_type="overloaded_error", times=2)
    answer = await architect.respond(turns=user("q?"), hits=HITS)
    assert answer.text == "Whole answer."
    assert len(fake.message_requests) == 4


async def test_stream_cut_every_time_gives_up(fake: FakeAnthropic, architect: Architect) -> None:
    fake.cut_stream_after(4, times=10)
    with pytest.raises(ModelError) as caught:
        await architect.respond(turns=user("q?"), hits=HITS)
    assert caught.value.status is None and caught.value.retryable
    assert "after 3 attempts" in str(caught.value)
    assert len(fake.message_requests) == 3


async def test_invalid_request_error_event_is_not_restarted(fake: FakeAnthropic, architect: Architect) -> None:
    fake.error_mid_stream(after_events=3, error_type="invalid_request_error")
    with pytest.raises(ModelError) as caught:
        await architect.respond(turns=user("q?"), hits=HITS)
    assert len(fake.message_requests) == 1
    assert not caught.value.retryable and "invalid_request_error" in str(caught.value)


async def test_unknown_model_is_a_clear_error(fake: FakeAnthropic, tmp_path: Path) -> None:
    arch = Architect(make_settings(fake.base_url, tmp_path, model="claude-nonexistent-9"), backoff=0.01)
    try:
        with pytest.raises(ModelError) as caught:
            await arch.respond(turns=user("q?"), hits=HITS)
    finally:
        await arch.close()
    assert caught.value.status == 404 and "ARCHBOT_MODEL" in str(caught.value)


# -- request shape: caching, turns, modes, secrets -----------------------------------------
async def test_stable_prefix_is_cached_and_read_from_the_second_question(
    fake: FakeAnthropic, architect: Architect
) -> None:
    first = await architect.respond(turns=user("How do device events flow?"), hits=HITS)
    second = await architect.respond(turns=user("And how do we retry failed deliveries?"), hits=HITS[:1])

    body = fake.message_requests[0].body
    assert body is not None
    assert body["tools"][0]["name"] == "record_reply"
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "team you work with" in body["system"][-1]["text"]  # here: that none is configured
    assert all("cache_control" not in b for b in body["system"][:-1])
    marks = [
        b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"] if "cache_control" in b
    ]
    assert marks == []  # passages and turns come after the cached prefix, unmarked
    prefix = first.usage.cache_creation_input_tokens
    assert prefix > 1024  # the first answer request writes the prefix...
    assert [u["cache_read_input_tokens"] for u in fake.usages] == [
        0,
        prefix,
        prefix,
        prefix,
    ]  # ...every later one reads it
    assert first.usage.cache_read_input_tokens == prefix  # its record request already read it
    assert second.usage.cache_read_input_tokens == 2 * prefix and second.usage.cache_creation_input_tokens == 0
    assert second.usage.cache_read_input_tokens > second.usage.input_tokens
    assert second.usage.cost_usd < first.usage.cost_usd


async def test_no_team_facts_reach_the_model_without_a_profile(fake: FakeAnthropic, architect: Architect) -> None:
    from bot.config import EXAMPLE_TEAM_PROFILE

    assert architect.settings.team_profile is None  # the default
    await architect.respond(turns=user("Which broker do we use?"), hits=HITS)
    example = EXAMPLE_TEAM_PROFILE.read_text(encoding="utf-8")
    telling_lines = [line for line in example.splitlines() if len(line) > 40 and not line.startswith(">")]
    assert len(telling_lines) > 10
    for request in fake.message_requests:
        sent = json.dumps(request.body, ensure_ascii=False)
        assert "Team profile (example)" not in sent
        assert not [line for line in telling_lines if line.strip() in sent]
        assert "No team profile is configured" in request.body["system"][-1]["text"]


async def test_a_configured_profile_is_sent_in_the_cached_prefix(fake: FakeAnthropic, tmp_path: Path) -> None:
    profile = tmp_path / "team.md"
    profile.write_text("# Our team\n\n- Services are Go on Kubernetes; events go through NATS.\n", encoding="utf-8")
    async with Architect(make_settings(fake.base_url, tmp_path, team_profile=profile)) as arch:
        await arch.respond(turns=user("Which broker do we use?"), hits=HITS)
    last = fake.message_requests[0].body["system"][-1]
    assert "events go through NATS" in last["text"] and last["cache_control"] == {"type": "ephemeral"}
    assert "No team profile is configured" not in json.dumps(fake.message_requests[0].body)


async def test_thread_history_is_cached_for_the_next_follow_up(fake: FakeAnthropic, architect: Architect) -> None:
    long_answer = "An earlier, long answer about retries and dead-letter queues. " * 80
    turns = [Turn("user", "How do we retry?"), Turn("assistant", long_answer), Turn("user", "And the DLQ?")]
    await architect.respond(turns=turns, hits=HITS)
    await architect.respond(
        turns=[*turns, Turn("assistant", "Drain it daily."), Turn("user", "Who owns it?")], hits=HITS
    )
    answer_1, record_1, answer_2, _ = (r.body for r in fake.message_requests)
    assert answer_1 is not None and record_1 is not None and answer_2 is not None
    assert answer_1["messages"][-2]["content"][-1]["cache_control"] == {"type": "ephemeral"}  # end of the history
    assert not [
        b for m in record_1["messages"] if isinstance(m["content"], list) for b in m["content"] if "cache_control" in b
    ]
    assert answer_2["messages"][-2]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    written_1 = fake.usages[0]["cache_creation_input_tokens"]  # the stable prefix and the thread so far
    system_only = fake.usages[1]["cache_read_input_tokens"]  # the record request differs in tool_choice
    assert written_1 > system_only > 1024
    assert fake.usages[2]["cache_read_input_tokens"] == written_1  # the next follow-up reads the earlier thread
    assert fake.usages[2]["cache_creation_input_tokens"] > 0  # and writes the newer turns


async def test_turns_are_cleaned_before_sending(fake: FakeAnthropic, architect: Architect) -> None:
    turns = [
        Turn("assistant", "Here is the review of the proposal."),
        Turn("user", "   "),
        Turn("user", "Alice: what about retries?"),
        Turn("user", "Bob: and timeouts?"),
        Turn("assistant", ""),
        Turn("user", "Alice: also the DLQ"),
    ]
    await architect.respond(turns=turns, hits=HITS)
    messages = fake.message_requests[0].body["messages"]  # type: ignore[index]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert all_text(messages[1]["content"]) == "Here is the review of the proposal."
    assert "Alice: what about retries?\n\nBob: and timeouts?\n\nAlice: also the DLQ" in all_text(messages[2]["content"])


def test_clean_turns_rejects_a_conversation_not_ending_with_the_user() -> None:
    with pytest.raises(ValueError):
        clean_turns([Turn("user", "q"), Turn("assistant", "a")])
    with pytest.raises(ValueError):
        clean_turns([Turn("user", "  ")])


async def test_review_mode(fake: FakeAnthropic, architect: Architect) -> None:
    fake.script(
        Scripted(text="### Summary\nGo with changes."), Scripted(tool_use=record("answer", decision="go with changes"))
    )
    answer = await architect.respond(turns=user("Proposal: move billing to Kafka."), hits=HITS, mode="review")
    assert answer.kind == "review" and answer.decision == "go with changes"
    body = fake.message_requests[0].body
    assert body is not None
    assert architect.prompts.notes["review"] in all_text(body["messages"][-1]["content"])
    review_system = body["system"]
    await architect.respond(turns=user("q?"), hits=HITS)
    assert fake.message_requests[2].body["system"] == review_system  # type: ignore[index]  # one shared prefix


async def test_no_secret_in_any_request(fake: FakeAnthropic, architect: Architect) -> None:
    fake.script(Scripted(text="x"), Scripted(tool_use=record("banana")))  # includes a repair request
    await architect.respond(turns=user("q?"), hits=HITS)
    assert len(fake.requests) == 3
    for request in fake.requests:
        assert request.authenticated
        assert DEFAULT_API_KEY not in json.dumps(request.body)
        assert DEFAULT_API_KEY not in json.dumps(request.headers)


async def test_wrong_key_is_a_clear_error_without_the_key(fake: FakeAnthropic, tmp_path: Path) -> None:
    wrong = "sk-ant-wrong-key-000000000000"
    arch = Architect(make_settings(fake.base_url, tmp_path, anthropic_api_key=wrong), backoff=0.01)
    try:
        with pytest.raises(ModelError) as caught:
            await arch.respond(turns=user("q?"), hits=HITS)
    finally:
        await arch.close()
    assert caught.value.status == 401 and "ANTHROPIC_API_KEY" in str(caught.value)
    assert wrong not in str(caught.value)


def test_passages_fit_the_token_budget() -> None:
    long_hits = [hit(f"docs/{i}.md", f"H{i}", ("word " * 50 + "\n\n") * 20) for i in range(12)]
    blocks, sent = build_search_results(long_hits, budget_tokens=2000)
    assert 0 < len(sent) < len(long_hits)
    assert [b["source"] for b in blocks] == [h.path for h in sent]
    sizes = [estimate_tokens("\n\n".join(c["text"] for c in b["content"])) for b in blocks]
    assert sum(sizes) <= 2000
    assert all(c["text"].strip() for b in blocks for c in b["content"])
    empty = build_search_results([hit("docs/e.md", "E", "   ")])
    assert empty == ([], [])


def test_a_passage_cut_to_the_budget_closes_its_code_block() -> None:
    code = "```ts\n" + "const x = 1;\n" * 400 + "```"
    blocks, _ = build_search_results([hit("docs/c.md", "C", "Intro\n\n" + code)], budget_tokens=300)
    text = "\n\n".join(c["text"] for c in blocks[0]["content"])
    assert estimate_tokens(text) <= 300 and open_fence(text) is None


def test_passage_titles_carry_provenance() -> None:
    team = Hit(
        path="docs/archive/OLD.md",
        heading="Saga #2: DEVICE_CREATION",
        score=1.0,
        snippet="",
        text="x",
        source="docs",
        status="archived",
        date="2025-10-30",
    )
    assert passage_title(team) == "docs/archive/OLD.md › Saga #2: DEVICE_CREATION [archived, 2025-10-30]"
    library = hit("saga.md", "Saga", "x", source="knowledge")
    assert passage_title(library) == "knowledge/saga.md › Saga [pattern library: ours, not a team doc]"


# -- client, model check, retrieval-only, pricing -----------------------------------------
async def test_check_model(fake: FakeAnthropic, settings: Settings, tmp_path: Path) -> None:
    ok, message = await check_model(settings)
    assert ok and MODEL in message
    ok, message = await check_model(make_settings(fake.base_url, tmp_path, model="claude-sonnet-9-9"))
    assert not ok
    assert "claude-sonnet-9-9" in message and "does not exist" in message and MODEL in message
    ok, message = await check_model(make_settings(fake.base_url, tmp_path, anthropic_api_key="sk-ant-nope-1234567"))
    assert not ok and "401" in message and "sk-ant-nope" not in message
    ok, message = await check_model(make_settings(fake.base_url, tmp_path, anthropic_api_key=None))
    assert ok and "retrieval-only" in message
    ok, message = await check_model(make_settings(fake.base_url, tmp_path, model="claude-sonnet-4-5"))
    assert ok and "deprecated" in message and "2026-11-30" in message


def test_build_anthropic_client(settings: Settings, tmp_path: Path) -> None:
    client = build_anthropic_client(settings)
    assert str(client.base_url).rstrip("/") == settings.anthropic_base_url
    assert client.max_retries == 2
    assert client.timeout.read == 10.0  # type: ignore[union-attr]
    with pytest.raises(ConfigError) as caught:
        build_anthropic_client(make_settings("http://127.0.0.1:9", tmp_path, anthropic_api_key=None))
    assert caught.value.variable == "ANTHROPIC_API_KEY"


def test_retrieval_only_answer() -> None:
    answer = retrieval_only_answer("How do device events flow?", HITS)
    assert answer.kind == "retrieval_only"
    assert "No model configured (ANTHROPIC_API_KEY unset): here are the most relevant passages" in answer.text
    assert HITS[0].heading in answer.text and HITS[0].path in answer.text
    assert "device.connection.lost" in answer.text  # an excerpt
    assert [c.path for c in answer.citations] == [h.path for h in HITS]
    nothing = retrieval_only_answer("zzz", [])
    assert nothing.kind == "retrieval_only" and "ANTHROPIC_API_KEY unset" in nothing.text and not nothing.citations


def test_cost() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert cost_usd("claude-sonnet-4-5-20250929", usage) == pytest.approx(18.0)
    assert cost_usd("claude-haiku-4-5", usage) == pytest.approx(6.0)
    assert cost_usd("claude-opus-4-1", usage) == pytest.approx(90.0)
    assert cost_usd("claude-opus-4-5", usage) == pytest.approx(30.0)
    assert cost_usd("claude-3-5-haiku-20241022", usage) == pytest.approx(4.8)
    cached = Usage(cache_read_input_tokens=1_000_000, cache_creation_input_tokens=1_000_000)
    assert cost_usd("claude-sonnet-4-5", cached) == pytest.approx(0.3 + 3.75)


def test_sdk_error_classes_still_exist() -> None:
    # the retry logic depends on these names; fail loudly if an SDK upgrade renames them
    assert issubclass(anthropic.OverloadedError, anthropic.APIStatusError)
    assert issubclass(anthropic.APITimeoutError, anthropic.APIConnectionError)


# -- end to end with the real index -------------------------------------------------------
async def test_conflicting_docs_from_the_real_index(fake: FakeAnthropic, tmp_path: Path) -> None:
    docs = tmp_path / "team-docs"
    (docs / "deploy").mkdir(parents=True)
    (docs / "ops").mkdir()
    (docs / "deploy" / "ports.md").write_text(
        "# Device ports\n\n## ADB range\n\nCloud phone ADB ports are allocated from the range 5555-5655.\n"
    )
    (docs / "ops" / "network.md").write_text(
        "# Network\n\n## ADB range\n\nADB ports for cloud phone devices come from the range 40000-40999.\n"
    )
    from bot.retrieval import Searcher, index_sources

    settings = make_settings(fake.base_url, tmp_path, docs=[docs])
    await asyncio.to_thread(index_sources, settings)
    hits = Searcher(settings.db_path).search("Which ADB port range do cloud phone devices use?", k=4)
    assert {h.path for h in hits} >= {"deploy/ports.md", "ops/network.md"}

    def cite_both(body: dict[str, Any]) -> Scripted:
        sources = [r["source"] for r in search_results(body) if "ADB" in r["content"][0]["text"]]
        return Scripted(
            text=[Segment("One doc says 5555-5655 ", [sources[0]]), Segment("and another 40000-40999.", [sources[1]])]
        )

    def record_conflict(body: dict[str, Any]) -> Scripted:
        listed = all_text(body["messages"][0]["content"])  # the record request names the passages
        sources = [s for s in ("deploy/ports.md", "ops/network.md") if f"`{s}`" in listed]
        return Scripted(tool_use=record(conflicts=[{"summary": "ADB port range", "sources": sources}]))

    fake.script(cite_both, record_conflict)
    async with Architect(settings, backoff=0.01) as arch:
        answer = await arch.respond(turns=user("Which ADB port range do cloud phone devices use?"), hits=hits)
    assert {c.path for c in answer.citations} == {"deploy/ports.md", "ops/network.md"}
    assert all(c.source == "team-docs" for c in answer.citations)
    assert "deploy/ports.md" in answer.conflicts[0] and "ops/network.md" in answer.conflicts[0]


# -- evidence in the text, truncation, language ---------------------------------------------
async def test_markers_follow_each_cited_claim_and_the_stream_only_grows(
    fake: FakeAnthropic, architect: Architect
) -> None:
    fake.script(
        Scripted(
            text=[
                Segment("Devices publish on the events exchange.\n\n", [Cite(search_result_index=0)]),
                Segment("Write the event with the state change, ", [Cite(search_result_index=1, cited_text="Write")]),
                Segment(
                    "as the device service already does.", [Cite(search_result_index=0), Cite(search_result_index=1)]
                ),
                Segment("\n\nThat is all."),
            ],
            chunk_chars=7,
        ),
        Scripted(tool_use=record()),
    )
    seen: list[str] = []

    async def on_text(full: str) -> None:
        seen.append(full)

    answer = await architect.respond(turns=user("How do device events flow?"), hits=HITS, on_text=on_text)
    assert answer.text == (
        "Devices publish on the events exchange. [1]\n\n"
        "Write the event with the state change, [2] as the device service already does. [1][2]\n\nThat is all."
    )
    assert [(c.number, c.path) for c in answer.citations] == [(1, HITS[0].path), (2, HITS[1].path)]
    assert answer.citations[0].cited_text.startswith("The device service publishes")  # the API's cited_text
    assert seen[-1] == answer.text
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(seen))  # never rewritten


async def test_a_reply_cut_at_max_tokens_is_marked(fake: FakeAnthropic, architect: Architect) -> None:
    fake.script(
        Scripted(text="Step 1: add the outbox table. Step 2:", stop_reason="max_tokens"), Scripted(tool_use=record())
    )
    answer = await architect.respond(turns=user("Plan the outbox migration"), hits=HITS)
    assert answer.truncated and answer.text.endswith("Step 2:")
    fake.script(Scripted(text="Done."), Scripted(tool_use=record()))
    assert not (await architect.respond(turns=user("q?"), hits=HITS)).truncated


async def test_continue_after_a_cut_reply_asks_the_model_to_pick_up(fake: FakeAnthropic, architect: Architect) -> None:
    turns = [
        Turn("user", "Plan the outbox migration"),
        Turn("assistant", "Step 1: add the table. Step 2:"),
        Turn("user", "continue"),
    ]
    fake.script(Scripted(text="Step 2: the relay."), Scripted(tool_use=record()))
    await architect.respond(turns=turns, hits=HITS)
    last = all_text(fake.message_requests[0].body["messages"][-1]["content"])  # type: ignore[index]
    assert architect.prompts.notes["continue"] in last
    fake.script(Scripted(text="x"), Scripted(tool_use=record()))
    await architect.respond(turns=user("continue"), hits=HITS)  # nothing to continue: no note
    assert architect.prompts.notes["continue"] not in all_text(fake.message_requests[2].body["messages"][-1]["content"])  # type: ignore[index]


async def test_a_chinese_question_asks_for_chinese_headings(fake: FakeAnthropic, architect: Architect) -> None:
    fake.script(
        Scripted(text="### 问题分析"), Scripted(tool_use=record()), Scripted(text="x"), Scripted(tool_use=record())
    )
    await architect.respond(turns=user("设备事件应该如何送达通知服务？"), hits=HITS)
    await architect.respond(turns=user("How should device events reach the notification service?"), hits=HITS)
    zh, en = (
        all_text(r.body["messages"][-1]["content"]) for r in fake.message_requests if r.body and r.body.get("stream")
    )
    assert architect.prompts.notes["language_zh"] in zh and "### 问题分析" in zh
    assert architect.prompts.notes["language_zh"] not in en


@pytest.mark.parametrize(
    ("reply", "resumes"),
    [
        ("continue", True),
        ("Alice: continue please", True),
        ("请继续", True),
        ("继续写吧", True),
        ("continue with option B", False),
        ("继续讨论方案B", False),
    ],
)
def test_what_counts_as_continue(reply: str, resumes: bool) -> None:
    from bot.architect.prompt import wants_continuation

    assert wants_continuation([Turn("user", "Plan it"), Turn("assistant", "Step 1"), Turn("user", reply)]) is resumes
