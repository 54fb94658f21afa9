"""What a reader sees, end to end: inline citation markers, the quoted evidence, the record's
conflicts/gaps/confidence, a cut-off reply, and the asker's language in every fixed string.

Real Bolt, slack_sdk and anthropic clients against the fakes, in both ways of showing a reply
(Slack's chat streaming API and post-then-update); assertions are on what the fake Slack holds,
the calls it received, and what the fake model was sent.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from bot.architect.prompt import Prompts
from bot.config import PROMPTS_DIR
from bot.i18n import t
from bot.runtime import Bot
from bot.slack.interactions import REVIEW_CALLBACK
from bot.slack.render import FEEDBACK_ACTION_ID
from tests.conftest import bot_settings, running_bot
from tests.fakes.anthropic import Cite, FakeAnthropic, Reply, Segment, ToolUse
from tests.fakes.signing import post_event, post_interactive, post_slash_command
from tests.fakes.slack import (
    FakeSlack,
    StoredMessage,
    block_actions_payload,
    event_callback,
    mention_event,
    message_event,
    slash_command_payload,
    view_submission_payload,
)
from tests.helpers import message_text, wait_answers

NOTES = Prompts.load(PROMPTS_DIR, None).notes
DOCS_URL = "https://git.example.com/team/docs/blob/main"
EVENTS_DOC = (
    "---\nstatus: current\n---\n# Device events\n\n## Routing keys\n\n"
    "Device events use the routing key device.connection.lost on the cloudphone.events exchange.\n"
)
LEGACY_DOC = (
    "# Notification consumer\n\n## Bindings\n\nThe consumer binds device.connection_lost from cloudphone.events.\n"
)
QUOTE = "Device events use the routing key device.connection.lost on the cloudphone.events exchange."


def url(bot: Bot) -> str:
    return f"http://127.0.0.1:{bot.port}"


async def ask(bot: Bot, slack: FakeSlack, text: str, *, channel: str = "C1") -> StoredMessage:
    parent = slack.add_message(channel, f"<@UBOT> {text}", user="U1")
    payload = event_callback(mention_event(parent.text, channel=channel, user="U1", ts=parent.ts))
    assert (await post_event(url(bot), slack.signing_secret, payload))[0] == 200
    return parent


def team_docs(tmp_path: Path) -> Path:
    docs = tmp_path / "team-docs"
    (docs / "backend").mkdir(parents=True)
    (docs / "backend" / "device-events.md").write_text(EVENTS_DOC, encoding="utf-8")
    (docs / "backend" / "notification-consumer.md").write_text(LEGACY_DOC, encoding="utf-8")
    return docs


def feedback_labels(blocks: list[dict[str, Any]] | None) -> tuple[str, str]:
    actions = next(b for b in blocks or [] if b["type"] == "context_actions")
    buttons = actions["elements"][0]
    return buttons["positive_button"]["text"]["text"], buttons["negative_button"]["text"]["text"]


def last_turn_text(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else "\n".join(b.get("text", "") for b in content)


def stream_requests(model: FakeAnthropic) -> list[dict[str, Any]]:
    return [r.body for r in model.message_requests if r.body and r.body.get("stream")]


@pytest.mark.parametrize("mode", ["stream", "update"])
async def test_a_cited_answer_shows_markers_quotes_paths_and_the_record(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic, mode: str
) -> None:
    from bot.retrieval import index_sources

    settings = bot_settings(tmp_path, slack, model, docs=[team_docs(tmp_path)], docs_url=DOCS_URL, stream_mode=mode)
    await asyncio.to_thread(index_sources, settings)
    events = f"{DOCS_URL}/backend/device-events.md"
    legacy = f"{DOCS_URL}/backend/notification-consumer.md"
    model.script(
        Reply(
            text=[
                Segment(
                    "The device service publishes `device.connection.lost`.", [Cite(source=events, cited_text=QUOTE)]
                ),
                Segment("\n\nBut the consumer binds `device.connection_lost`.", [Cite(source=legacy)]),
            ]
        ),
        Reply(
            tool_use=ToolUse(
                name="record_reply",
                input={
                    "kind": "answer",
                    "sources": [events, legacy],
                    "conflicts": [{"summary": "routing key spelling", "sources": [events, legacy]}],
                    "gaps": ["who owns the DLX"],
                    "confidence": "medium",
                    "confidence_reason": "two docs spell the key differently",
                },
            )
        ),
    )
    async with running_bot(settings) as bot:
        parent = await ask(bot, slack, "Which routing key does the connection-lost event use?")
        answer = (await wait_answers(slack, "C1", parent.ts))[0]
        shown = message_text(answer)
        lines = shown.splitlines()
        assert "The device service publishes `device.connection.lost`. [1]" in lines
        assert "But the consumer binds `device.connection_lost`. [2]" in lines
        assert ":warning: **Docs disagree:** routing key spelling: [1] vs [2]" in lines
        assert "**Not in the docs:** who owns the DLX" in lines
        assert "**Confidence:** medium — two docs spell the key differently" in lines
        first = next(i for i, line in enumerate(lines) if line.startswith("1. "))
        assert lines[first].startswith(
            f"1. [backend/device-events.md › Device events > Routing keys]({DOCS_URL}/backend/device-events.md)"
        )
        assert re.search(r" · _current · \d{4}-\d{2}-\d{2}_$", lines[first])  # the doc's status and date
        assert lines[first + 1] == f"   > “{QUOTE}”"  # the passage the model quoted, under its path
        assert lines[first + 2].startswith("2. [backend/notification-consumer.md › Notification consumer > Bindings]")
        assert lines[first + 3].startswith("   > “The consumer binds device.connection_lost")
        assert feedback_labels(answer.blocks) == ("Helpful", "Not helpful")
        if mode == "stream":
            assert slack.calls_to("chat.startStream") and not slack.calls_to("chat.update")
            stop = slack.calls_to("chat.stopStream")[-1]
            assert feedback_labels(stop.args["blocks"]) == ("Helpful", "Not helpful")
        else:
            assert not slack.calls_to("chat.startStream")


@pytest.mark.parametrize("mode", ["stream", "update"])
async def test_a_chinese_question_gets_chinese_fixed_strings(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic, mode: str
) -> None:
    from bot.retrieval import index_sources

    settings = bot_settings(tmp_path, slack, model, docs=[team_docs(tmp_path)], stream_mode=mode)
    await asyncio.to_thread(index_sources, settings)
    model.script(
        Reply(text=[Segment("### 问题分析\n\n设备服务发布 `device.connection.lost`。", [Cite(search_result_index=0)])]),
        Reply(
            tool_use=ToolUse(
                name="record_reply", input={"kind": "answer", "gaps": ["DLX 的归属"], "confidence": "high"}
            )
        ),
    )
    async with running_bot(settings) as bot:
        parent = await ask(bot, slack, "设备断连事件 device.connection.lost 用哪个 routing key？")
        answer = (await wait_answers(slack, "C1", parent.ts))[0]
        shown = message_text(answer)
        assert "**来源**" in shown and "**文档未涉及：** DLX 的归属" in shown
        assert "**把握程度：** 高 — 有 1 段文档原文支持" in shown
        assert "Sources" not in shown and "Confidence" not in shown
        assert feedback_labels(answer.blocks) == ("有帮助", "没帮助")
        if mode == "stream":
            stop = slack.calls_to("chat.stopStream")[-1]  # the stream's final blocks
            assert feedback_labels(stop.args["blocks"]) == ("有帮助", "没帮助")
            streamed = "".join(c.args.get("markdown_text") or "" for c in slack.calls_to("chat.appendStream"))
            assert "来源" in streamed
        else:
            assert "来源" in answer.text  # the notification fallback
        assert NOTES["language_zh"] in last_turn_text(stream_requests(model)[0])


async def test_a_chinese_question_gets_a_chinese_failure(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    model.fail(status=500, times=50)
    async with running_bot(bot_settings(tmp_path, slack, model, model_max_retries=0)) as bot:
        parent = await ask(bot, slack, "通知服务为什么会丢设备事件？")
        failure = (await wait_answers(slack, "C1", parent.ts))[0]
        assert failure.text.startswith(":warning: 抱歉")


async def test_a_truncated_reply_is_marked_and_continue_picks_it_up(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    model.script(
        Reply(text="### Plan\n\n1. Add the outbox table.\n2. Write the", stop_reason="max_tokens"),
        Reply(tool_use=ToolUse(name="record_reply", input={"kind": "answer"})),
        Reply(text="relay that publishes the rows."),
        Reply(tool_use=ToolUse(name="record_reply", input={"kind": "answer"})),
    )
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        parent = await ask(bot, slack, "Plan the outbox migration for device events")
        cut = (await wait_answers(slack, "C1", parent.ts))[0]
        shown = message_text(cut)
        assert ":scissors: _The answer stopped at the length limit._" in shown
        assert "Reply *continue* in this thread" in shown
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})

        reply = slack.add_message("C1", "continue", user="U1", thread_ts=parent.ts)
        payload = event_callback(message_event("continue", channel="C1", user="U1", ts=reply.ts, thread_ts=parent.ts))
        assert (await post_event(url(bot), slack.signing_secret, payload))[0] == 200
        answers = await wait_answers(slack, "C1", parent.ts, n=2)
        assert "relay that publishes the rows." in message_text(answers[-1])
        assert "length limit" not in message_text(answers[-1])
        request = stream_requests(model)[-1]
        assert NOTES["continue"] in last_turn_text(request)
        assert any(m["role"] == "assistant" and "Write the" in str(m["content"]) for m in request["messages"])


# -- reviews, forms and feedback in the asker's language -----------------------------------------
REVIEW_MARK = ":building_construction:"


async def test_a_chinese_review_is_acknowledged_opened_and_answered_in_chinese(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        proposal = "把设备事件从直接 HTTP 调用改为 RabbitMQ，并在 device-service 中使用事务性 outbox。"
        fields = slash_command_payload("/arch-review", proposal, user="U1", channel="C1")
        status, body = await post_slash_command(url(bot), slack.signing_secret, fields)
        assert status == 200 and json.loads(body)["text"] == t("review.queued", "zh")
        parent = (await slack.wait_for(lambda f: [m for m in f.bot_messages("C1") if m.text.startswith(REVIEW_MARK)]))[
            0
        ]
        assert parent.text.startswith(f"{REVIEW_MARK} 架构评审：") and "，发起人 <@U1>" in parent.text
        review = (await wait_answers(slack, "C1", parent.ts))[0]
        assert feedback_labels(review.blocks) == ("有帮助", "没帮助")


async def test_the_empty_review_form_follows_archbot_language(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    async with running_bot(bot_settings(tmp_path, slack, model, language="zh")) as bot:
        fields = slash_command_payload("/arch-review", "", user="U1", channel="C7")
        assert (await post_slash_command(url(bot), slack.signing_secret, fields))[0] == 200
        view = slack.calls_to("views.open")[0].args["view"]
        assert view["title"]["text"] == "架构评审" and view["submit"]["text"] == "评审"
        assert [b["label"]["text"] for b in view["blocks"]] == ["标题", "方案", "背景与约束", "具体顾虑"]
        stored = next(iter(slack.views.values()))
        empty = {k: {"value": {"type": "plain_text_input", "value": None}} for k in ("title", "proposal")}
        status, body = await post_interactive(
            url(bot),
            slack.signing_secret,
            view_submission_payload(
                callback_id=REVIEW_CALLBACK,
                values=empty,
                user="U1",
                private_metadata=stored["private_metadata"],
                view_id=stored["id"],
            ),
        )
        assert status == 200
        assert json.loads(body)["errors"] == {"title": "请给方案起个标题。", "proposal": "请描述方案内容。"}


async def test_feedback_on_a_chinese_answer_is_thanked_in_chinese(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        parent = await ask(bot, slack, "计费逻辑应该放在哪个服务？")
        answer = (await wait_answers(slack, "C1", parent.ts))[0]
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})

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

        assert (await post_interactive(url(bot), slack.signing_secret, click("U5", "up")))[0] == 200
        thanks = await slack.wait_for(lambda f: [e for e in f.ephemerals if e.user == "U5"])
        assert thanks[0].text == "感谢反馈！"
        assert (await post_interactive(url(bot), slack.signing_secret, click("U6", "down")))[0] == 200
        opened = await slack.wait_for(lambda f: f.calls_to("views.open"))
        assert opened[0].args["view"]["title"]["text"] == "缺了什么？"


async def test_a_follow_up_sends_the_earlier_answer_without_its_quotes(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    from bot.retrieval import index_sources

    settings = bot_settings(tmp_path, slack, model, docs=[team_docs(tmp_path)])
    await asyncio.to_thread(index_sources, settings)
    model.script(
        Reply(
            text=[
                Segment("Device events use `device.connection.lost`.", [Cite(search_result_index=0, cited_text=QUOTE)])
            ]
        ),
        Reply(tool_use=ToolUse(name="record_reply", input={"kind": "answer"})),
    )
    async with running_bot(settings) as bot:
        parent = await ask(bot, slack, "Which routing key does the connection-lost event use?")
        first = (await wait_answers(slack, "C1", parent.ts))[0]
        assert f"   > “{QUOTE}”" in message_text(first)
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
        reply = slack.add_message("C1", "and who consumes it?", user="U1", thread_ts=parent.ts)
        event = message_event(reply.text, channel="C1", user="U1", ts=reply.ts, thread_ts=parent.ts)
        assert (await post_event(url(bot), slack.signing_secret, event_callback(event)))[0] == 200
        await wait_answers(slack, "C1", parent.ts, n=2)
        earlier = next(m for m in stream_requests(model)[-1]["messages"] if m["role"] == "assistant")
        text = earlier["content"] if isinstance(earlier["content"], str) else str(earlier["content"])
        assert "Device events use `device.connection.lost`. [1]" in text and "**Sources**" in text
        assert QUOTE not in text


async def test_the_empty_review_form_speaks_the_askers_own_language(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        parent = await ask(bot, slack, "计费逻辑应该放在哪个服务？")  # U1 asks in Chinese
        await wait_answers(slack, "C1", parent.ts)
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
        for user in ("U1", "U2"):  # U2 never asked: ARCHBOT_LANGUAGE (English)
            fields = slash_command_payload("/arch-review", "", user=user, channel="C7")
            assert (await post_slash_command(url(bot), slack.signing_secret, fields))[0] == 200
        titles = [c.args["view"]["title"]["text"] for c in slack.calls_to("views.open")]
        assert titles == ["架构评审", "Architecture review"]
