"""The fake Anthropic server speaks the wire format the real SDK expects (and fails the way the API does)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import httpx2
import pytest

from tests.fakes.anthropic import DEFAULT_API_KEY, Cite, FakeAnthropic, Segment, ToolUse, minimal_input
from tests.fakes.anthropic import Reply as Scripted

MODEL = "claude-sonnet-5-5"
OLD_MODEL = "claude-haiku-4-5"
RESULT = {
    "type": "search_result",
    "source": "docs/a.md",
    "title": "A > Ports",
    "content": [{"type": "text", "text": "Ports 5555-5655."}],
    "citations": {"enabled": True},
}
TOOL = {
    "name": "record_reply",
    "description": "record",
    "input_schema": {
        "type": "object",
        "properties": {"kind": {"type": "string", "enum": ["answer", "clarify"]}, "n": {"type": "integer"}},
        "required": ["kind"],
    },
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(fake: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    sdk = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key=DEFAULT_API_KEY, max_retries=2)
    yield sdk
    await sdk.close()


def ask(text: str = "Which ports?", *, results: bool = True) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [RESULT] if results else []
    return [{"role": "user", "content": [*content, {"type": "text", "text": text}]}]


async def raw_sse(fake: FakeAnthropic, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The SSE events exactly as sent, read without the SDK."""
    headers = {"x-api-key": DEFAULT_API_KEY, "anthropic-version": "2023-06-01"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.base_url}/v1/messages", json=body, headers=headers) as response,
    ):
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = (await response.read()).decode()
    events = []
    for chunk in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


async def test_streamed_events_have_the_api_shape(fake: FakeAnthropic) -> None:
    fake.script(
        Scripted(
            text=[Segment("Plain. "), Segment("Cited.", [Cite(source="docs/a.md")])],
            tool_use=ToolUse("record_reply", {"kind": "answer"}),
        )
    )
    body = {"model": OLD_MODEL, "max_tokens": 100, "stream": True, "messages": ask(), "tools": [TOOL]}
    events = await raw_sse(fake, body)
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in events)
    deltas = [d["delta"]["type"] for n, d in events if n == "content_block_delta"]
    assert {"text_delta", "citations_delta", "input_json_delta"} <= set(deltas)
    citation = next(
        d["delta"]["citation"]
        for n, d in events
        if n == "content_block_delta" and d["delta"]["type"] == "citations_delta"
    )
    assert citation == {
        "type": "search_result_location",
        "source": "docs/a.md",
        "title": "A > Ports",
        "cited_text": "Ports 5555-5655.",
        "search_result_index": 0,
        "start_block_index": 0,
        "end_block_index": 1,
    }
    final = events[-2][1]
    assert final["delta"]["stop_reason"] == "tool_use" and final["usage"]["output_tokens"] > 0


async def test_real_sdk_stream_and_json(client: anthropic.AsyncAnthropic, fake: FakeAnthropic) -> None:
    fake.script(Scripted(text="Streamed answer.", citations=["docs/a.md"]), Scripted(text="JSON answer."))
    async with client.messages.stream(model=OLD_MODEL, max_tokens=100, messages=ask()) as stream:
        texts = [event.text async for event in stream if event.type == "text"]
        message = await stream.get_final_message()
    assert "".join(texts) == "Streamed answer."
    assert message.content[0].citations[0].source == "docs/a.md"  # type: ignore[union-attr, index]
    assert message.stop_reason == "end_turn"
    response = await client.messages.create(model=OLD_MODEL, max_tokens=100, messages=ask())
    assert response.content[0].text == "JSON answer."  # type: ignore[union-attr]
    assert response.usage.input_tokens > 0


async def test_default_reply_echoes_and_calls_the_tool(client: anthropic.AsyncAnthropic) -> None:
    response = await client.messages.create(
        model=OLD_MODEL,
        max_tokens=100,
        messages=ask("What about ports?"),
        tools=[TOOL],  # type: ignore[list-item]
    )
    text = "".join(b.text for b in response.content if b.type == "text")
    assert "What about ports?" in text
    call = next(b for b in response.content if b.type == "tool_use")
    assert call.name == "record_reply" and call.input == {"kind": "answer"}
    quiet = await client.messages.create(
        model=OLD_MODEL,
        max_tokens=100,
        messages=ask(),
        tools=[TOOL],
        tool_choice={"type": "none"},  # type: ignore[list-item]
    )
    assert all(b.type == "text" for b in quiet.content)


async def test_current_models_think_and_refuse_forced_tools(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(
            model=MODEL,
            max_tokens=100,
            messages=ask(),
            tools=[TOOL],  # type: ignore[list-item]
            tool_choice={"type": "tool", "name": "record_reply"},
        )
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(model=MODEL, max_tokens=100, messages=ask(), extra_body={"temperature": 0.2})
    response = await client.messages.create(model=MODEL, max_tokens=100, messages=ask(), tools=[TOOL])  # type: ignore[list-item]
    assert [b.type for b in response.content] == ["thinking", "thinking", "thinking", "tool_use"]  # text before a call
    call = response.content[-1]
    result = [{"type": "tool_result", "tool_use_id": call.id, "content": "ok"}]  # type: ignore[union-attr]
    without_thinking = [{"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}]  # type: ignore[union-attr]
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(
            model=MODEL,
            max_tokens=100,
            tools=[TOOL],  # type: ignore[list-item]
            messages=[*ask(), {"role": "assistant", "content": without_thinking}, {"role": "user", "content": result}],  # type: ignore[list-item]
        )


async def test_requests_are_recorded_without_the_key(client: anthropic.AsyncAnthropic, fake: FakeAnthropic) -> None:
    waiter = asyncio.create_task(fake.wait_for(lambda r: r.path == "/v1/messages", timeout=5))
    await client.messages.create(model=OLD_MODEL, max_tokens=10, messages=ask("hello"))
    seen = await waiter
    assert seen.authenticated and seen.body is not None and seen.body["messages"][0]["content"][-1]["text"] == "hello"
    assert seen.headers["authorization"] == "[redacted]"
    assert DEFAULT_API_KEY not in json.dumps([r.headers for r in fake.requests])
    with pytest.raises(asyncio.TimeoutError):
        await fake.wait_for(lambda r: r.path == "/never", timeout=0.05)


async def test_wrong_key_is_401(fake: FakeAnthropic) -> None:
    sdk = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="sk-ant-wrong-00000000", max_retries=0)
    try:
        with pytest.raises(anthropic.AuthenticationError):
            await sdk.messages.create(model=OLD_MODEL, max_tokens=10, messages=ask())
        with pytest.raises(anthropic.AuthenticationError):
            await sdk.models.retrieve(OLD_MODEL)
    finally:
        await sdk.close()
    assert not fake.requests[0].authenticated


async def test_models_list_retrieve_and_404(client: anthropic.AsyncAnthropic, fake: FakeAnthropic) -> None:
    ids = [m.id async for m in client.models.list(limit=3)]  # pages through every model
    assert ids == fake.models
    info = await client.models.retrieve(MODEL)
    assert info.id == MODEL and info.lifecycle == "active"
    old = await client.models.retrieve("claude-sonnet-4-5")
    assert old.lifecycle == "deprecated" and old.retires_at is not None
    with pytest.raises(anthropic.NotFoundError) as caught:
        await client.models.retrieve("claude-nope-1")
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.create(model="claude-nope-1", max_tokens=10, messages=ask())


async def test_count_tokens(client: anthropic.AsyncAnthropic) -> None:
    small = await client.messages.count_tokens(model=OLD_MODEL, messages=ask("hi", results=False))
    large = await client.messages.count_tokens(model=OLD_MODEL, messages=ask("hi " * 400, results=False))
    assert 0 < small.input_tokens < large.input_tokens


async def test_status_failures_then_success(client: anthropic.AsyncAnthropic, fake: FakeAnthropic) -> None:
    fake.fail(529, times=2)
    fake.script(Scripted(text="after two 529s"))
    response = await client.messages.create(model=OLD_MODEL, max_tokens=10, messages=ask())
    assert response.content[0].text == "after two 529s"  # type: ignore[union-attr]
    assert len(fake.message_requests) == 3
    fake.fail(429, times=5)
    with pytest.raises(anthropic.RateLimitError):
        await client.messages.create(model=OLD_MODEL, max_tokens=10, messages=ask())


async def test_cut_and_error_event_mid_stream(client: anthropic.AsyncAnthropic, fake: FakeAnthropic) -> None:
    fake.script(Scripted(text="survives the cut and the error " * 4))
    fake.cut_stream_after(4)
    with pytest.raises(httpx2.TransportError):
        async with client.messages.stream(model=OLD_MODEL, max_tokens=10, messages=ask()) as stream:
            async for _ in stream:
                pass
    fake.error_mid_stream(after_events=4)
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with client.messages.stream(model=OLD_MODEL, max_tokens=10, messages=ask()) as stream:
            async for _ in stream:
                pass
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    async with client.messages.stream(model=OLD_MODEL, max_tokens=10, messages=ask()) as stream:
        message = await stream.get_final_message()
    assert message.content[0].text.startswith("survives")  # type: ignore[union-attr]  # the script was kept


@pytest.mark.parametrize(
    ("messages", "extra"),
    [
        ([{"role": "user", "content": [{"type": "text", "text": ""}]}], {}),
        ([{"role": "user", "content": "   "}], {}),
        ([{"role": "user", "content": []}], {}),
        ([], {}),
        (ask(), {"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}),
        (
            [
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t1", "name": "record_reply", "input": {}}],
                },
                {"role": "user", "content": "no result"},
            ],
            {"tools": [TOOL]},
        ),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": f"{i}", "cache_control": {"type": "ephemeral"}} for i in range(5)
                    ],
                }
            ],
            {},
        ),
    ],
    ids=[
        "empty-text",
        "blank-string",
        "empty-list",
        "no-messages",
        "citations+structured",
        "tool-without-result",
        "five-marks",
    ],
)
async def test_invalid_requests_are_400(fake: FakeAnthropic, messages: list[Any], extra: dict[str, Any]) -> None:
    headers = {"x-api-key": DEFAULT_API_KEY}
    body = {"model": OLD_MODEL, "max_tokens": 10, "messages": messages, **extra}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.base_url}/v1/messages", json=body, headers=headers) as response,
    ):
        assert response.status == 400
        error = await response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"


async def test_prompt_caching_emulation(client: anthropic.AsyncAnthropic, fake: FakeAnthropic) -> None:
    system = [{"type": "text", "text": "stable prefix " * 400, "cache_control": {"type": "ephemeral"}}]
    first = await client.messages.create(model=OLD_MODEL, max_tokens=10, system=system, messages=ask("one"))  # type: ignore[arg-type]
    second = await client.messages.create(model=OLD_MODEL, max_tokens=10, system=system, messages=ask("two"))  # type: ignore[arg-type]
    assert first.usage.cache_creation_input_tokens and first.usage.cache_creation_input_tokens > 1024
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0
    short = [{"type": "text", "text": "too short to cache", "cache_control": {"type": "ephemeral"}}]
    tiny = await client.messages.create(model=OLD_MODEL, max_tokens=10, system=short, messages=ask())  # type: ignore[arg-type]
    assert tiny.usage.cache_creation_input_tokens == 0 and tiny.usage.cache_read_input_tokens == 0
    other_model = await client.messages.create(model="claude-sonnet-4-6", max_tokens=10, system=system, messages=ask())  # type: ignore[arg-type]
    assert other_model.usage.cache_read_input_tokens == 0  # caches are per model


async def test_pause_holds_the_first_token(client: anthropic.AsyncAnthropic, fake: FakeAnthropic) -> None:
    fake.pause()

    async def first_text() -> str:
        async with client.messages.stream(model=OLD_MODEL, max_tokens=10, messages=ask("held")) as stream:
            async for event in stream:
                if event.type == "text":
                    return event.text
        return ""

    task = asyncio.create_task(first_text())
    await fake.wait_for(lambda r: r.path == "/v1/messages")
    await asyncio.sleep(0)
    assert not task.done()
    fake.resume()
    assert "Echo" in await asyncio.wait_for(task, 5)


def test_minimal_input() -> None:
    schema = {
        "type": "object",
        "properties": {
            "kind": {"enum": ["a", "b"]},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["kind", "tags"],
    }
    assert minimal_input(schema) == {"kind": "a", "tags": ["echo"]}
