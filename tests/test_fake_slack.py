"""The fake Slack behaves like Slack for the real slack_sdk and slack_bolt clients.

Other tests trust this fake, so these checks drive it only through real clients: AsyncWebClient
(with slack_sdk's own retry handler), slack_sdk's SignatureVerifier, and a Bolt AsyncApp over
both HTTP (its aiohttp server) and Socket Mode (AsyncSocketModeHandler).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes import (
    FakeSlack,
    event_callback,
    mention_event,
    message_event,
    post_event,
    sign,
    slash_command_payload,
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(redeliver_after=0.1) as server:
        yield server


def web_client(fake: FakeSlack, **kwargs: Any) -> AsyncWebClient:
    return AsyncWebClient(token=fake.bot_token, base_url=fake.api_url, **kwargs)


async def test_post_message_is_stored_as_the_bots_reply(fake: FakeSlack) -> None:
    client = web_client(fake)
    parent = fake.add_message("C1", "<@UBOT> how should we shard orders?", user="U1")

    response = await client.chat_postMessage(
        channel="C1",
        thread_ts=parent.ts,
        text="By tenant.",
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "By *tenant*."}}],
    )

    assert response["ok"] is True
    assert float(response["ts"]) > float(parent.ts)
    assert "chat:write" in response.headers["x-oauth-scopes"].split(",")
    call = fake.calls_to("chat.postMessage")[0]
    assert call.token == fake.bot_token
    assert call.args["blocks"][0]["text"]["text"] == "By *tenant*."
    replies = await client.conversations_replies(channel="C1", ts=parent.ts)
    parent_out, reply_out = replies["messages"]
    assert parent_out["reply_count"] == 1
    assert (reply_out["user"], reply_out["bot_id"], reply_out["thread_ts"]) == ("UBOT", "BBOT", parent.ts)

    edited = await client.chat_update(channel="C1", ts=response["ts"], text="By tenant id.")
    assert edited["message"]["edited"]["user"] == "UBOT"
    assert fake.thread("C1", parent.ts)[-1].text == "By tenant id."
    with pytest.raises(SlackApiError) as missing:
        await client.chat_update(channel="C1", ts="1.000001", text="x")
    assert missing.value.response["error"] == "message_not_found"


async def test_form_encoded_calls_and_auth(fake: FakeSlack) -> None:
    client = web_client(fake)
    message = fake.add_message("C1", "hello", user="U1")

    await client.reactions_add(channel="C1", timestamp=message.ts, name="eyes")  # params → query string
    await client.api_call("chat.postMessage", data={"channel": "C1", "text": "hi", "blocks": json.dumps([])})

    assert fake.message("C1", message.ts).reactions == {"eyes": ["UBOT"]}  # type: ignore[union-attr]
    assert fake.calls_to("chat.postMessage")[0].args["blocks"] == []
    identity = await client.auth_test()
    assert (identity["user_id"], identity["bot_id"], identity["team_id"]) == ("UBOT", "BBOT", "T1")
    with pytest.raises(SlackApiError) as bad:
        await AsyncWebClient(token="xoxb-unknown", base_url=fake.api_url).auth_test()
    assert bad.value.response["error"] == "invalid_auth"


async def test_scripted_429s_are_retried_by_slack_sdk(fake: FakeSlack) -> None:
    fake.fail("chat.postMessage", times=2, retry_after=0)
    client = web_client(fake, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=5)])

    await client.chat_postMessage(channel="C1", text="eventually")

    attempts = fake.calls_to("chat.postMessage", include_failed=True)
    assert [(c.status, c.failed) for c in attempts] == [(429, True), (429, True), (200, False)]
    assert len(fake.messages("C1")) == 1


async def test_scripted_error_without_retry_handler(fake: FakeSlack) -> None:
    fake.fail("conversations.info", error="channel_not_found", times=1)
    client = web_client(fake, retry_handlers=[])

    with pytest.raises(SlackApiError) as failed:
        await client.conversations_info(channel="C9")
    assert failed.value.response.status_code == 200
    assert failed.value.response["error"] == "channel_not_found"
    assert (await client.conversations_info(channel="C9"))["channel"]["is_private"] is False


async def test_replies_paginate_with_cursor(fake: FakeSlack) -> None:
    parent = fake.add_message("C1", "question", user="U1")
    for i in range(5):
        fake.add_message("C1", f"reply {i}", user="U2", thread_ts=parent.ts)
    client = web_client(fake)

    pages: list[list[str]] = []
    first = await client.conversations_replies(channel="C1", ts=parent.ts, limit=2)
    async for page in first:  # slack_sdk follows response_metadata.next_cursor
        pages.append([m["text"] for m in page["messages"]])

    assert pages == [["question", "reply 0"], ["reply 1", "reply 2"], ["reply 3", "reply 4"]]
    with pytest.raises(SlackApiError) as missing:
        await client.conversations_replies(channel="C1", ts="1.000001")
    assert missing.value.response["error"] == "thread_not_found"


async def test_streaming_and_expiry(fake: FakeSlack) -> None:
    fake.add_channel("D1", is_im=True, user="U1")
    parent = fake.add_message("D1", "explain sagas", user="U1")
    client = web_client(fake)

    stream = await client.chat_stream(channel="D1", thread_ts=parent.ts, buffer_size=5)
    await stream.append(markdown_text="Sagas are ")
    await stream.append(markdown_text="sequences.")
    await stream.stop(markdown_text=" Done.")
    assert fake.thread("D1", parent.ts)[-1].text == "Sagas are sequences. Done."
    assert fake.thread("D1", parent.ts)[-1].stream_state == "stopped"

    started = await client.chat_startStream(channel="D1", thread_ts=parent.ts, markdown_text="Part")
    fake.expire_streams()
    with pytest.raises(SlackApiError) as expired:
        await client.chat_appendStream(channel="D1", ts=started["ts"], markdown_text=" two")
    assert expired.value.response["error"] == "message_not_in_streaming_state"


async def test_views_open_rejects_expired_trigger(fake: FakeSlack) -> None:
    client = web_client(fake)
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Review"}, "blocks": []}
    fake.expire_trigger("trigger-old")

    with pytest.raises(SlackApiError) as expired:
        await client.views_open(trigger_id="trigger-old", view=view)
    assert expired.value.response["error"] == "expired_trigger_id"
    opened = await client.views_open(trigger_id="trigger-new", view=view)
    assert opened["view"]["id"] in fake.views


async def test_missing_scope_is_reported(fake: FakeSlack) -> None:
    fake.scopes = [s for s in fake.scopes if s != "users:read"]
    fake.add_user("U1", real_name="Ada Lovelace", display_name="ada")

    with pytest.raises(SlackApiError) as denied:
        await web_client(fake).users_info(user="U1")
    assert (denied.value.response["error"], denied.value.response["needed"]) == ("missing_scope", "users:read")


def test_signed_event_verifies_with_slack_sdk() -> None:
    payload = event_callback(mention_event("<@UBOT> hi", channel="C1", user="U1", ts="1700000000.000100"))
    body = json.dumps(payload).encode()

    headers = sign("s3cret", body)

    verifier = SignatureVerifier("s3cret")
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert not SignatureVerifier("other").is_valid_request(body, headers)


async def test_post_event_reaches_a_bolt_http_app(fake: FakeSlack) -> None:
    app = AsyncApp(client=web_client(fake), signing_secret=fake.signing_secret)
    seen: list[tuple[str, str | None]] = []

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any]) -> None:
        seen.append((event["text"], event.get("thread_ts")))

    runner = web.AppRunner(app.web_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        payload = event_callback(mention_event("<@UBOT> hi", channel="C1", user="U1", ts="1700000000.000100"))
        assert (await post_event(url, fake.signing_secret, payload, retry_num=1))[0] == 200
        assert (await post_event(url, "wrong-secret", payload))[0] == 401
    finally:
        await runner.cleanup()
    assert seen == [("<@UBOT> hi", None)]


async def test_socket_mode_round_trip_with_bolt(fake: FakeSlack) -> None:
    app = AsyncApp(client=web_client(fake))
    mentions: list[str] = []

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any]) -> None:
        mentions.append(event["text"])

    @app.command("/arch-review")
    async def on_review(ack: Any) -> None:
        await ack(text="On it.")

    handler = AsyncSocketModeHandler(app, app_token=fake.app_token)
    await handler.connect_async()
    try:
        await asyncio.wait_for(fake.socket_connected.wait(), 5)
        envelope_id = await fake.socket_send_event(
            event_callback(mention_event("<@UBOT> hello", channel="C1", user="U1", ts="1700000000.000100"))
        )
        ack = await fake.wait_for_ack(envelope_id)
        assert ack.envelope is not None and ack.envelope.retry_attempt == 0
        assert mentions == ["<@UBOT> hello"]

        command_id = await fake.socket_send_slash_command(
            slash_command_payload("/arch-review", "", user="U1", channel="C1")
        )
        assert (await fake.wait_for_ack(command_id)).payload == {"text": "On it."}

        # No listener for plain messages: Bolt answers 404, never acks, and the fake redelivers.
        unacked = await fake.socket_send_event(
            event_callback(message_event("hi", channel="C1", user="U1", ts="1700000000.000200"))
        )
        deliveries = await fake.wait_for(
            lambda f: [e.retry_attempt for e in f.envelopes if e.envelope_id == unacked] == [0, 1, 2, 3] or None
        )
        assert deliveries is True

        # Slack asks for a refresh: the client reconnects and keeps receiving.
        await fake.socket_disconnect()
        await fake.wait_for(lambda f: f.socket_connection_count >= 2 and f.socket_connected.is_set())
        again = await fake.socket_send_event(
            event_callback(mention_event("<@UBOT> again", channel="C1", user="U1", ts="1700000000.000300"))
        )
        assert (await fake.wait_for_ack(again)).envelope.connection == 2  # type: ignore[union-attr]
    finally:
        await handler.close_async()
    assert mentions == ["<@UBOT> hello", "<@UBOT> again"]


async def test_bot_messages_echo_back_over_socket_mode() -> None:
    async with FakeSlack(echo_bot_messages=True) as fake:
        client = web_client(fake)
        app = AsyncApp(client=client)  # Bolt skips the bot's own events but still acks them
        handler = AsyncSocketModeHandler(app, app_token=fake.app_token)
        await handler.connect_async()
        try:
            await asyncio.wait_for(fake.socket_connected.wait(), 5)
            posted = await client.chat_postMessage(channel="C1", text="answer")
            await client.chat_update(channel="C1", ts=posted["ts"], text="better answer")
            await fake.wait_for(lambda f: len(f.acks) == 2)
        finally:
            await handler.close_async()
    events = [ack.envelope.payload["event"] for ack in fake.acks if ack.envelope]
    assert [(e.get("subtype"), e.get("bot_id")) for e in events] == [(None, "BBOT"), ("message_changed", None)]
    assert events[1]["message"]["text"] == "better answer"


async def test_wait_for_times_out_with_a_dump(fake: FakeSlack) -> None:
    await web_client(fake).auth_test()

    with pytest.raises(TimeoutError) as timed_out:
        await fake.wait_for(lambda f: f.calls_to("chat.postMessage"), timeout=0.1)
    assert "auth.test [ok]" in str(timed_out.value)


async def test_failure_after_success_metadata_and_outages(fake: FakeSlack) -> None:
    client = web_client(fake, retry_handlers=[])
    parent = fake.add_message("C1", "<@UBOT> q", user="U1")
    meta = {"event_type": "archbot_message", "event_payload": {"job_id": 7, "part": 0}}
    fake.fail("chat.postMessage", status=500, times=1, after_success=True)
    with pytest.raises(SlackApiError) as failed:
        await client.chat_postMessage(channel="C1", thread_ts=parent.ts, text="posted anyway", metadata=meta)
    assert failed.value.response.status_code == 500
    [stored] = [m for m in fake.thread("C1", parent.ts) if m.bot_id]
    assert stored.text == "posted anyway" and stored.metadata == meta
    # Metadata comes back only when asked for, as Slack does.
    plain = await client.conversations_replies(channel="C1", ts=parent.ts)
    assert all("metadata" not in m for m in plain["messages"])
    full = await client.conversations_replies(channel="C1", ts=parent.ts, include_all_metadata=True)
    assert full["messages"][-1]["metadata"] == meta
    with pytest.raises(SlackApiError) as bad:
        await client.chat_postMessage(channel="C1", text="x", metadata={"event_type": "x", "event_payload": "no"})
    assert bad.value.response["error"] == "invalid_metadata_schema"
    # An outage: every method fails for a while, then works again.
    fake.fail("*", status=503, seconds=0.2)
    with pytest.raises(SlackApiError):
        await client.auth_test()
    await fake.wait_for(lambda f: not any(r.matches("auth.test") for r in f._failures), timeout=2)
    assert (await client.auth_test())["ok"]
