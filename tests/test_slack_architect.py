"""The architect's Slack surfaces end to end: `/arch-review`, its modal, feedback, citations, clarify.

Real Bolt, slack_sdk and anthropic clients against the fakes, through the real transports:
signed HTTP posts (slash commands, interactivity, events) and Socket Mode envelopes. Assertions
cover what the fake Slack received, what the fake model was sent, and what the store holds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.architect.prompt import Prompts
from bot.config import PROMPTS_DIR
from bot.runtime import Bot
from bot.slack.interactions import FEEDBACK_CALLBACK, REVIEW_CALLBACK, REVIEW_QUEUED
from bot.slack.render import FEEDBACK_ACTION_ID
from tests.conftest import bot_settings, running_bot
from tests.fakes.anthropic import Cite, FakeAnthropic, Reply, Segment, ToolUse, search_results
from tests.fakes.signing import post_event, post_interactive, post_slash_command
from tests.fakes.slack import (
    FakeSlack,
    StoredMessage,
    block_actions_payload,
    event_callback,
    mention_event,
    message_event,
    new_trigger_id,
    slash_command_payload,
    view_submission_payload,
)
from tests.helpers import answers_in, message_text, wait_answers

NOTES = Prompts.load(PROMPTS_DIR, None).notes
REVIEW_MARK = ":building_construction:"
PROPOSAL = "Move device events from direct HTTP calls to RabbitMQ with a transactional outbox in device-service."


def url(bot: Bot) -> str:
    return f"http://127.0.0.1:{bot.port}"


def last_user_texts(body: dict[str, Any]) -> list[str]:
    """The text blocks of the request's last user message (notes and the question)."""
    content = body["messages"][-1]["content"]
    if isinstance(content, str):
        return [content]
    return [b["text"] for b in content if b.get("type") == "text"]


def all_texts(body: dict[str, Any]) -> str:
    """Every text the model was sent in the conversation, joined."""
    out = []
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, str):
            out.append(content)
            continue
        out.extend(b["text"] for b in content if b.get("type") == "text")
    return "\n".join(out)


def answer_requests(model: FakeAnthropic) -> list[dict[str, Any]]:
    """The streamed answer requests (the record_reply follow-ups are not streamed)."""
    return [r.body for r in model.message_requests if r.body and r.body.get("stream")]


def review_parents(slack: FakeSlack, channel: str) -> list[StoredMessage]:
    return [m for m in slack.bot_messages(channel) if not m.is_reply and m.text.startswith(REVIEW_MARK)]


async def wait_review(slack: FakeSlack, channel: str) -> tuple[StoredMessage, StoredMessage]:
    """The review thread's parent (a new top-level message) and the review under it."""
    parent = (await slack.wait_for(lambda f: review_parents(f, channel)))[0]
    answers = await wait_answers(slack, channel, parent.ts)
    return parent, answers[0]


async def followup(bot: Bot, slack: FakeSlack, *, channel: str, thread_ts: str, text: str, user: str = "U2") -> str:
    """A reply in a thread, without a mention, delivered as Slack's `message` event over HTTP."""
    reply = slack.add_message(channel, text, user=user, thread_ts=thread_ts)
    payload = event_callback(message_event(text, channel=channel, user=user, ts=reply.ts, thread_ts=thread_ts))
    status, _ = await post_event(url(bot), slack.signing_secret, payload)
    assert status == 200
    return reply.ts


async def ask(bot: Bot, slack: FakeSlack, text: str, *, channel: str = "C1", user: str = "U1") -> StoredMessage:
    """A top-level mention over HTTP; returns the question message (the thread's parent)."""
    parent = slack.add_message(channel, f"<@UBOT> {text}", user=user)
    payload = event_callback(mention_event(parent.text, channel=channel, user=user, ts=parent.ts))
    assert (await post_event(url(bot), slack.signing_secret, payload))[0] == 200
    return parent


def review_values(*, title: str = "", proposal: str = "", context: str = "", concerns: str = "") -> dict[str, Any]:
    def field(value: str) -> dict[str, Any]:
        return {"value": {"type": "plain_text_input", "value": value or None}}

    return {"title": field(title), "proposal": field(proposal), "context": field(context), "concerns": field(concerns)}


async def metrics_text(bot: Bot) -> str:
    async with aiohttp.ClientSession() as session, session.get(url(bot) + "/metrics") as resp:
        return await resp.text()


# -- /arch-review with text -------------------------------------------------------------------
async def test_arch_review_with_text_starts_a_thread_that_takes_follow_ups(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        model.pause()  # the ack must not wait for the model
        fields = slash_command_payload("/arch-review", PROPOSAL, user="U1", channel="C1")
        status, body = await post_slash_command(url(bot), slack.signing_secret, fields)
        assert status == 200
        assert json.loads(body) == {"response_type": "ephemeral", "text": REVIEW_QUEUED}
        model.resume()

        parent, review = await wait_review(slack, "C1")
        assert "<@U1>" in parent.text and PROPOSAL in parent.text  # the channel sees what is reviewed
        assert review.thread_ts == parent.ts
        request = answer_requests(model)[-1]
        notes = last_user_texts(request)
        assert NOTES["review"] in "\n".join(notes)
        assert PROPOSAL in notes[-1]
        assert NOTES["just_answer"] not in all_texts(request)
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
        stored = bot.store.query("SELECT kind, message_ts, thread_ts FROM answers")
        assert stored == [{"kind": "review", "message_ts": review.ts, "thread_ts": parent.ts}]

        # The review thread now works like any other: a reply without a mention is answered,
        # with the review (and what was reviewed) as context.
        await followup(bot, slack, channel="C1", thread_ts=parent.ts, text="what about the outbox relay lag?")
        answers = await wait_answers(slack, "C1", parent.ts, n=2)
        assert "what about the outbox relay lag?" in message_text(answers[-1])
        request = answer_requests(model)[-1]
        sent = all_texts(request)
        assert "what about the outbox relay lag?" in sent
        assert NOTES["review"] not in sent  # a follow-up is a conversation, not another review
        assert PROPOSAL in sent and message_text(review).strip() in sent
        roles = [m["role"] for m in request["messages"]]
        assert "assistant" in roles and roles[-1] == "user"


# -- /arch-review without text: the modal -----------------------------------------------------
async def test_arch_review_modal_over_socket_mode(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic) -> None:
    async with running_bot(bot_settings(tmp_path, slack, model, socket_mode=True)) as bot:
        await asyncio.wait_for(slack.socket_connected.wait(), 5)
        envelope = await slack.socket_send_slash_command(
            slash_command_payload("/arch-review", "", user="U1", channel="C7")
        )
        ack = await slack.wait_for_ack(envelope, timeout=3)
        assert not (ack.payload or {}).get("text")  # no ephemeral notice: the modal is the answer
        opened = slack.calls_to("views.open")
        assert len(opened) == 1
        view = opened[0].args["view"]
        assert view["callback_id"] == REVIEW_CALLBACK
        assert json.loads(view["private_metadata"]) == {"channel": "C7", "lang": "en"}
        assert {b["block_id"] for b in view["blocks"]} == {"title", "proposal", "context", "concerns"}

        # Missing required fields: the modal stays open with errors, nothing is queued.
        stored_view = next(iter(slack.views.values()))
        envelope = await slack.socket_send_interactive(
            view_submission_payload(
                callback_id=REVIEW_CALLBACK,
                values=review_values(context="tiny team"),
                user="U1",
                private_metadata=stored_view["private_metadata"],
                view_id=stored_view["id"],
            )
        )
        ack = await slack.wait_for_ack(envelope, timeout=3)
        assert ack.payload is not None and ack.payload["response_action"] == "errors"
        assert set(ack.payload["errors"]) == {"title", "proposal"}
        assert bot.store.query("SELECT COUNT(*) AS n FROM jobs")[0]["n"] == 0

        envelope = await slack.socket_send_interactive(
            view_submission_payload(
                callback_id=REVIEW_CALLBACK,
                values=review_values(
                    title="Outbox for device events",
                    proposal=PROPOSAL,
                    context="Four engineers, 20k devices",
                    concerns="Relay lag under load",
                ),
                user="U1",
                private_metadata=stored_view["private_metadata"],
                view_id=stored_view["id"],
            )
        )
        ack = await slack.wait_for_ack(envelope, timeout=3)
        assert not (ack.payload or {}).get("response_action")  # the modal closes
        parent, review = await wait_review(slack, "C7")
        assert "Outbox for device events" in parent.text
        request = answer_requests(model)[-1]
        question = last_user_texts(request)[-1]
        for part in (PROPOSAL, "Four engineers, 20k devices", "Relay lag under load"):
            assert part in question
        assert NOTES["review"] in "\n".join(last_user_texts(request))
        assert review.thread_ts == parent.ts


async def test_expired_trigger_gets_a_clear_private_message(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        trigger = new_trigger_id()
        slack.expire_trigger(trigger)
        fields = slash_command_payload("/arch-review", "", user="U1", channel="C1", trigger_id=trigger)
        status, body = await post_slash_command(url(bot), slack.signing_secret, fields)
        assert status == 200
        notice = json.loads(body)
        assert notice["response_type"] == "ephemeral"
        assert "Run `/arch-review` again" in notice["text"] and "/arch-review <proposal>" in notice["text"]
        assert [c.error for c in slack.calls_to("views.open", include_failed=True)] == ["expired_trigger_id"]
        assert not slack.views and not slack.bot_messages()
        # Nothing broke: the bot still answers.
        parent = await ask(bot, slack, "still there?")
        await wait_answers(slack, "C1", parent.ts)


# -- the bot cannot post in the channel --------------------------------------------------------
class ResponseUrls:
    """A tiny receiver for slash command `response_url` posts (Slack's side of them)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def start(self) -> None:
        async def receive(request: web.Request) -> web.Response:
            self.posts.append({"path": request.path, **(await request.json())})
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/commands/{rest:.*}", receive)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def response_urls() -> AsyncIterator[ResponseUrls]:
    receiver = ResponseUrls()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


async def test_review_in_a_channel_the_bot_is_not_in(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic, response_urls: ResponseUrls
) -> None:
    slack.add_channel("C9", name="design", is_member=False)
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        fields = slash_command_payload("/arch-review", PROPOSAL, user="U1", channel="C9")
        fields["response_url"] = f"{response_urls.base}/commands/T1/1234/abcd"
        status, _ = await post_slash_command(url(bot), slack.signing_secret, fields)
        assert status == 200
        await slack.wait_for(lambda f: bot.store.job_counts() == {"failed": 1})
        assert len(response_urls.posts) == 1
        notice = response_urls.posts[0]
        assert notice["response_type"] == "ephemeral"
        assert "can't post in <#C9>" in notice["text"] and "/invite" in notice["text"]
        assert not slack.bot_messages("C9")
        assert not model.message_requests  # nothing to post into: the model is never asked
        assert bot.store.query("SELECT error FROM jobs") == [{"error": "slack: not_in_channel"}]

        # A modal submission has no response_url. In a private channel the bot is not in, Slack
        # refuses the ephemeral too (the bot cannot see the channel): the requester gets a DM.
        slack.add_channel("G9", name="secret-design", is_private=True, is_member=False)
        slack.fail("chat.postEphemeral", error="channel_not_found", times=None)
        status, _ = await post_interactive(
            url(bot),
            slack.signing_secret,
            view_submission_payload(
                callback_id=REVIEW_CALLBACK,
                values=review_values(title="Outbox", proposal=PROPOSAL),
                user="U1",
                private_metadata=json.dumps({"channel": "G9"}),
            ),
        )
        assert status == 200
        await slack.wait_for(lambda f: bot.store.job_counts() == {"failed": 2})
        dm = await slack.wait_for(lambda f: [m for m in f.bot_messages() if m.channel.startswith("D")])
        assert "can't post in <#G9>" in dm[0].text and "/invite" in dm[0].text
        assert [c.args["users"] for c in slack.calls_to("conversations.open")] == ["U1"]
        assert not slack.bot_messages("G9")
        slack.clear_failures()
        # And the bot still works elsewhere.
        parent = await ask(bot, slack, "still answering?")
        await wait_answers(slack, "C1", parent.ts)


# -- feedback ----------------------------------------------------------------------------------
async def test_feedback_is_stored_counted_and_acknowledged(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        parent = await ask(bot, slack, "should billing use an outbox?")
        answer = (await wait_answers(slack, "C1", parent.ts))[0]
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
        answer_id = bot.store.query("SELECT id FROM answers WHERE message_ts=?", (answer.ts,))[0]["id"]
        feedback = next(b for b in answer.blocks or [] if b["type"] == "context_actions")
        button = feedback["elements"][0]
        assert button["type"] == "feedback_buttons" and button["action_id"] == FEEDBACK_ACTION_ID

        def click(user: str, value: str) -> dict[str, Any]:
            return block_actions_payload(
                action_id=FEEDBACK_ACTION_ID,
                value=value,
                user=user,
                channel="C1",
                message_ts=answer.ts,
                thread_ts=parent.ts,
                action_type="feedback_buttons",
                message=slack.render_message(answer),
            )

        status, _ = await post_interactive(url(bot), slack.signing_secret, click("U5", "up"))
        assert status == 200
        rows = bot.store.query("SELECT answer_id, channel, message_ts, user, value, comment FROM feedback")
        assert rows == [
            {
                "answer_id": answer_id,
                "channel": "C1",
                "message_ts": answer.ts,
                "user": "U5",
                "value": "up",
                "comment": None,
            }
        ]
        thanks = await slack.wait_for(lambda f: [e for e in f.ephemerals if e.user == "U5"])
        assert thanks[0].channel == "C1" and thanks[0].thread_ts == parent.ts and "Thanks" in thanks[0].text
        assert not slack.calls_to("views.open")
        assert 'archbot_feedback_total{value="up"} 1.0' in await metrics_text(bot)

        # 👎 opens the optional "what was missing?" modal; its submission stores the comment.
        status, _ = await post_interactive(url(bot), slack.signing_secret, click("U6", "down"))
        assert status == 200
        opened = await slack.wait_for(lambda f: f.calls_to("views.open"))
        view = opened[0].args["view"]
        assert view["callback_id"] == FEEDBACK_CALLBACK and view["title"]["text"] == "What was missing?"
        assert not [e for e in slack.ephemerals if e.user == "U6"]
        stored_view = next(iter(slack.views.values()))
        comment = "It never mentioned how the relay handles duplicates."
        status, body = await post_interactive(
            url(bot),
            slack.signing_secret,
            view_submission_payload(
                callback_id=FEEDBACK_CALLBACK,
                values={"comment": {"value": {"type": "plain_text_input", "value": comment}}},
                user="U6",
                private_metadata=stored_view["private_metadata"],
                view_id=stored_view["id"],
            ),
        )
        assert status == 200 and not body
        rows = bot.store.query("SELECT answer_id, user, value, comment FROM feedback WHERE user='U6'")
        assert rows == [{"answer_id": answer_id, "user": "U6", "value": "down", "comment": comment}]
        text = await metrics_text(bot)
        assert 'archbot_feedback_total{value="down"} 1.0' in text
        assert 'archbot_feedback_total{value="up"} 1.0' in text


async def test_feedback_over_socket_mode(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic) -> None:
    async with running_bot(bot_settings(tmp_path, slack, model, socket_mode=True)) as bot:
        await asyncio.wait_for(slack.socket_connected.wait(), 5)
        parent = slack.add_message("C1", "<@UBOT> what is a saga?", user="U1")
        await slack.socket_send_event(event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts)))
        answer = (await wait_answers(slack, "C1", parent.ts))[0]
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
        envelope = await slack.socket_send_interactive(
            block_actions_payload(
                action_id=FEEDBACK_ACTION_ID,
                value="up",
                user="U1",
                channel="C1",
                message_ts=answer.ts,
                thread_ts=parent.ts,
                action_type="feedback_buttons",
                message=slack.render_message(answer),
            )
        )
        await slack.wait_for_ack(envelope, timeout=3)
        await slack.wait_for(lambda f: [e for e in f.ephemerals if e.user == "U1"])
        rows = bot.store.query("SELECT user, value FROM feedback")
        assert rows == [{"user": "U1", "value": "up"}]


# -- citations --------------------------------------------------------------------------------
DOCS_URL = "https://git.example.com/team/docs/blob/main"
DOC_PATH = "runbooks/Device events (v2).md"
DOC_TEXT = """# Device events

## Zorblax retry policy

The zorblax gateway retries device event deliveries five times with exponential backoff
starting at 200 ms, then parks the event in the device-events dead-letter queue.
"""


async def test_cited_answer_links_to_the_doc(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic) -> None:
    from bot.retrieval import index_sources

    docs = tmp_path / "team-docs"
    (docs / "runbooks").mkdir(parents=True)
    (docs / DOC_PATH).write_text(DOC_TEXT, encoding="utf-8")
    settings = bot_settings(tmp_path, slack, model, docs=[docs], docs_url=DOCS_URL)
    await asyncio.to_thread(index_sources, settings)
    raw_url = f"{DOCS_URL}/{DOC_PATH}"
    model.script(
        Reply(
            text=[
                Segment("The gateway retries five times with exponential backoff", [Cite(source=raw_url)]),
                Segment(", then parks the event in a dead-letter queue."),
            ]
        )
    )
    async with running_bot(settings) as bot:
        parent = await ask(bot, slack, "What is the zorblax gateway retry policy for device events?")
        answer = (await wait_answers(slack, "C1", parent.ts))[0]
        shown = message_text(answer)
        link = f"{DOCS_URL}/runbooks/Device%20events%20%28v2%29.md"
        line = f"1. [{DOC_PATH} › Device events > Zorblax retry policy]({link})"
        assert any(shown_line.startswith(line) for shown_line in shown.splitlines())
        assert "The gateway retries five times" in shown

        request = answer_requests(model)[0]
        results = search_results(request)
        cited = [r for r in results if r["source"] == raw_url]
        assert len(cited) == 1
        # provenance for the model: path, heading path, status and date
        title = "runbooks/Device events (v2).md › Device events > Zorblax retry policy [current, "
        assert cited[0]["title"].startswith(title)
        assert cited[0]["citations"] == {"enabled": True}
        assert "five times with exponential backoff" in cited[0]["content"][0]["text"]

        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
        sources = bot.store.query("SELECT path, source, heading, url FROM answer_sources")
        assert sources == [
            {"path": DOC_PATH, "source": "team-docs", "heading": "Device events > Zorblax retry policy", "url": raw_url}
        ]


# -- clarify, then answer ------------------------------------------------------------------------
QUESTIONS = [
    "How many device events per second do you expect at peak?",
    "Does the notification service need events in order per device?",
]


PROVISIONAL = "For now, publish device events to the topic exchange and give notifications its own durable queue."
ASSUMPTION = "Assuming a few hundred events a second and no ordering need"


async def test_clarify_then_answer_in_the_thread(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic) -> None:
    clarifying = (
        f"{PROVISIONAL}\n\n{ASSUMPTION}.\n\nTwo things could change this:\n\n1. {QUESTIONS[0]}\n2. {QUESTIONS[1]}"
    )
    record = {"kind": "clarify", "questions": QUESTIONS, "provisional": PROVISIONAL, "assumptions": [ASSUMPTION]}
    model.script(Reply(text=clarifying), Reply(tool_use=ToolUse(name="record_reply", input=record)))
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        parent = await ask(bot, slack, "how should device events reach the notification service?")
        first = (await wait_answers(slack, "C1", parent.ts))[0]
        shown = message_text(first)
        # one reply carries the provisional answer, its assumptions and the questions: no round trip for nothing
        assert PROVISIONAL in shown and ASSUMPTION in shown
        assert shown.index(PROVISIONAL) < shown.index(QUESTIONS[0])
        for question in QUESTIONS:
            assert question in shown
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
        assert bot.store.query("SELECT kind FROM answers") == [{"kind": "clarify"}]
        first_request = answer_requests(model)[-1]
        assert NOTES["just_answer"] not in all_texts(first_request)
        system = "\n".join(b["text"] for b in first_request["system"])
        assert "clarify *and* answer" in system and "provisional recommendation" in system

        # The asker replies in the thread, no mention: the conversation continues.
        await followup(
            bot,
            slack,
            channel="C1",
            thread_ts=parent.ts,
            user="U1",
            text="About 2000 a second, order per device matters. Just answer, no more questions.",
        )
        answers = await wait_answers(slack, "C1", parent.ts, n=2)
        assert "About 2000 a second" in message_text(answers[-1])
        request = answer_requests(model)[-1]
        notes = "\n".join(last_user_texts(request))
        assert NOTES["just_answer"] in notes
        sent = all_texts(request)
        assert QUESTIONS[0] in sent and "how should device events reach the notification service?" in sent
        assert PROVISIONAL in sent  # the refinement starts from the provisional answer
        roles = [m["role"] for m in request["messages"]]
        assert roles == ["user", "assistant", "user"]
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 2})
        assert answers_in(slack, "C1", parent.ts)[-1].ts == answers[-1].ts
