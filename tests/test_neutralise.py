"""The output neutraliser: nothing archbot writes to Slack pings a crowd, mentions anyone it did not
mean to, or hides a link's target.

Unit tests of `bot/slack/neutralise.py`, a structural check that every Slack write goes through
`bot/slack/post.py`, and end-to-end runs with hostile model output (streamed, updated, clarifying
questions, the digest, views) checked on every write the fake Slack recorded.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.neutralise import (
    TRUST,
    WORD_JOINER,
    mention_channel,
    mention_user,
    neutralise_blocks,
    neutralise_markdown,
    neutralise_mrkdwn,
    neutralise_plain,
    slack_date,
    stable_markdown_prefix,
    trusted_label,
)
from bot.slack.post import open_view, post_ephemeral, post_message, publish_view, update_message
from bot.slack.render import to_mrkdwn
from tests.conftest import REPO_ROOT, bot_settings, running_bot
from tests.fakes.anthropic import FakeAnthropic, Reply, ToolUse
from tests.fakes.signing import post_event
from tests.fakes.slack import Call, FakeSlack, event_callback, mention_event, new_trigger_id
from tests.helpers import message_text, wait_answers

EVIL = "https://evil.example/login"
HOSTILE = (
    "Heads up <!channel> <!here> <!everyone> <!subteam^S0123|@platform> <@U0BOSS> <#C0SECRET> "
    f"[team](!channel) [boss](@U0BOSS) [the runbook]({EVIL}) <{EVIL}|the docs> "
    f"@channel @here @Everyone ![img]({EVIL}) &lt;!channel&gt; <!channel|channel>\n\n"
    f"[click me][ref]\n\n[ref]: {EVIL}\n"
)

WRITE_METHODS = {
    "chat.postMessage",
    "chat.update",
    "chat.postEphemeral",
    "chat.startStream",
    "chat.appendStream",
    "chat.stopStream",
    "chat.scheduleMessage",
    "views.open",
    "views.update",
    "views.push",
    "views.publish",
    "assistant.threads.setStatus",
    "assistant.threads.setSuggestedPrompts",
    "assistant.threads.setTitle",
}


# -- a checker for what Slack received ------------------------------------------------------
def _strings(node: Any, fmt: str = "plain") -> list[tuple[str, str]]:
    """(format, text) for every string a Slack write carries."""
    if isinstance(node, str):
        return [(fmt, node)]
    if isinstance(node, list):
        return [s for n in node for s in _strings(n, fmt)]
    if not isinstance(node, dict):
        return []
    kind = node.get("type")
    out: list[tuple[str, str]] = []
    for key, value in node.items():
        if key == "text" and isinstance(value, str):
            out.append(("markdown" if kind in ("markdown", "markdown_text") else kind or fmt, value))
        elif key in ("text",) and kind is None:
            out += _strings(value, "mrkdwn")
        else:
            out += _strings(value, fmt)
    return out


def active_syntax(text: str, fmt: str = "markdown", *, allowed: tuple[str, ...] = ()) -> list[str]:
    """Every piece of live Slack syntax in `text` (of format `fmt`) that is not in `allowed`."""
    for ok in allowed:
        text = text.replace(ok, "")
    found: list[str] = []
    found += re.findall(r"<\s*[!@#][^>]*>?", text)
    found += [m.group(0) for m in re.finditer(r"<(?:https?|mailto):[^|>]*\|([^>]*)>", text)]
    found += re.findall(r"(?i)[@＠](?:channel|here|everyone)\b", text)
    if fmt == "markdown":  # markdown syntax is live only there
        for m in re.finditer(r"\[([^\]]*)\]\(([^)\s]*)\)", text):
            label, url = m.group(1), m.group(2)
            if label.strip().rstrip("/") not in (url.rstrip("/"), re.sub(r"^https?://", "", url).rstrip("/")):
                found.append(m.group(0))
        found += re.findall(r"(?m)^ {0,3}\[[^\]]+\]:", text)
        found += re.findall(r"&lt;\s*[!@#]", text)
    if TRUST in text or "\ue000" in text or "\ue001" in text:
        found.append("trust mark")
    return found


def writes(slack: FakeSlack) -> list[Call]:
    return [c for c in slack.calls if c.method in WRITE_METHODS]


def assert_nothing_active(slack: FakeSlack, *, allowed: tuple[str, ...] = ()) -> None:
    problems = []
    for call in writes(slack):
        for fmt, text in _strings({k: v for k, v in call.args.items() if k not in ("channel", "ts", "thread_ts")}):
            found = active_syntax(text, fmt, allowed=allowed)
            if found:
                problems.append((call.method, fmt, found, text[:200]))
    assert not problems, problems


# -- unit ------------------------------------------------------------------------------------
@pytest.mark.parametrize("convert", [neutralise_mrkdwn, neutralise_markdown, neutralise_plain])
def test_no_hostile_pattern_survives(convert) -> None:
    out = convert(HOSTILE)
    fmt_problems = active_syntax(out, "mrkdwn" if convert is neutralise_mrkdwn else "markdown")
    if convert is neutralise_plain:  # plain_text is never parsed: only the crowd pings matter there
        fmt_problems = [p for p in fmt_problems if not p.startswith(("[", "<http"))]
    assert not fmt_problems, (fmt_problems, out)
    assert convert(out) == out  # idempotent on text the bot did not mark
    if convert is not neutralise_plain:
        assert EVIL in out  # links stay, with their target in sight


def test_markdown_links_show_their_target() -> None:
    out = neutralise_markdown(f"read [the runbook]({EVIL}) or [{EVIL}]({EVIL}) or <{EVIL}>")
    assert out == f"read the runbook (<{EVIL}>) or <{EVIL}> or <{EVIL}>"
    mrkdwn = neutralise_mrkdwn(f"read <{EVIL}|the runbook> or <{EVIL}|{EVIL}> and {EVIL}.")
    assert mrkdwn == f"read the runbook (<{EVIL}>) or <{EVIL}> and <{EVIL}>."


def test_code_keeps_its_look() -> None:
    code = "```python\n@dataclass\nclass A:\n    x: list[int]\n```\nand `fns[0](x)` with `a < b` and 3 > 2"
    assert neutralise_markdown(code) == code
    assert WORD_JOINER in neutralise_markdown("```\n<!here>\n```")  # but no ping from inside code either


def test_the_mrkdwn_converter_makes_no_live_syntax() -> None:
    out = to_mrkdwn(f"[team](!channel) [boss](@U0BOSS) [chan](#C1) [the runbook]({EVIL}) <!here>")
    assert "<!" not in out and "<@" not in out and "<#" not in out
    assert f"the runbook (<{EVIL}>)" in out


def test_bot_composed_syntax_passes_only_when_marked() -> None:
    text = (
        f"asked by {mention_user('U42')} in {mention_channel('C7')} at {slack_date(1_700_000_000, '{date}', 'then')}; "
        f"<https://docs.example/a.md|{trusted_label('a.md › Retries')}> and {TRUST}<!channel>"
    )
    out = neutralise_mrkdwn(text)
    assert "<@U42>" in out and "<#C7>" in out and "<!date^1700000000^{date}|then>" in out
    assert "<https://docs.example/a.md|a.md › Retries>" in out
    assert "<!channel>" not in out  # broadcasts never pass, marked or not
    assert TRUST not in out and "\ue000" not in out
    md = neutralise_markdown(f"[{trusted_label('a.md')}](https://docs.example/a.md) [x](https://docs.example/b)")
    assert md == "[a.md](https://docs.example/a.md) x (<https://docs.example/b>)"
    forged = neutralise_mrkdwn("\ue000deadbeefdeadbeef\ue001<@U1> <https://e.example|\ue000x\ue001label>")
    assert "<@U1>" not in forged and "|" not in forged


def test_blocks_every_format() -> None:
    blocks = [
        {"type": "markdown", "text": "<!here> [x](https://e.example)"},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "<!channel>"},
            "fields": [{"type": "plain_text", "text": "@here"}],
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "<@U1>"}]},
        {
            "type": "rich_text",
            "elements": [
                {
                    "type": "rich_text_section",
                    "elements": [{"type": "broadcast", "range": "channel"}, {"type": "user", "user_id": "U1"}],
                }
            ],
        },
    ]
    out = neutralise_blocks(blocks)
    dumped = json.dumps(out, ensure_ascii=False)
    assert not active_syntax(dumped, "mrkdwn"), dumped
    assert "&lt;" not in out[0]["text"] and WORD_JOINER in out[0]["text"]
    assert '"broadcast"' not in dumped and '"type": "user"' not in dumped
    assert out[1]["text"]["verbatim"] is True


def test_streaming_prefix_is_stable_and_safe() -> None:
    shown = ""
    for i in range(1, len(HOSTILE) + 1):
        safe = neutralise_markdown(stable_markdown_prefix(HOSTILE[:i]))
        assert safe.startswith(shown), (HOSTILE[:i], shown, safe)
        shown = safe
    assert not active_syntax(shown)


def test_every_slack_write_goes_through_post_py() -> None:
    """No module but bot/slack/post.py calls a Slack write method (or a webhook)."""
    names = {m.replace(".", "_") for m in WRITE_METHODS} | {"chat_stream", "api_call", "AsyncWebhookClient"}
    offenders = []
    for path in (REPO_ROOT / "bot").rglob("*.py"):
        if path.name == "post.py" and path.parent.name == "slack":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
            if name in names:
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {name}")
    assert not offenders, offenders


# -- end to end: real clients, the fakes, every write checked ---------------------------------
async def _ask(bot, slack: FakeSlack, text: str):
    message = slack.add_message("C1", f"<@UBOT> {text}", user="U1")
    payload = event_callback(mention_event(message.text, channel="C1", user="U1", ts=message.ts))
    status, _ = await post_event(f"http://127.0.0.1:{bot.port}", slack.signing_secret, payload)
    assert status == 200
    return message


@pytest.mark.parametrize("mode", ["stream", "update"])
async def test_hostile_answer_pings_nobody(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic, mode: str):
    model.script(Reply(text=HOSTILE * 3, chunk_chars=7))
    async with running_bot(bot_settings(tmp_path, slack, model, stream_mode=mode)) as bot:
        parent = await _ask(bot, slack, "what do the docs say about notifications?")
        answer = (await wait_answers(slack, "C1", parent.ts))[0]
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
    assert EVIL in message_text(answer)
    methods = {c.method for c in writes(slack)}
    assert ("chat.appendStream" in methods) == (mode == "stream"), methods
    assert_nothing_active(slack)


async def test_hostile_clarifying_questions(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    questions = [f"Should I tell <!channel> and [the boss](@U0BOSS) via [this form]({EVIL})?", "@here how many?"]
    model.script(
        Reply(text="Before I answer: <!here> please reply."),
        Reply(tool_use=ToolUse(name="record_reply", input={"kind": "clarify", "questions": questions})),
    )
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        parent = await _ask(bot, slack, "should we split the monolith?")
        answer = (await wait_answers(slack, "C1", parent.ts))[0]
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
    assert "how many?" in message_text(answer) and EVIL in message_text(answer)
    assert_nothing_active(slack)


async def test_hostile_review_keeps_only_the_requester_mention(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    from tests.fakes.signing import post_slash_command
    from tests.fakes.slack import slash_command_payload

    model.script(Reply(text=HOSTILE))
    async with running_bot(bot_settings(tmp_path, slack, model)) as bot:
        proposal = f"Move to Kafka <!channel> [x]({EVIL}) and tell @here"
        fields = slash_command_payload("/arch-review", proposal, user="U1", channel="C1")
        status, _ = await post_slash_command(f"http://127.0.0.1:{bot.port}", slack.signing_secret, fields)
        assert status == 200
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1}, timeout=10)
    parents = [c for c in slack.calls_to("chat.postMessage") if "requested by" in str(c.args.get("text"))]
    assert parents and "<@U1>" in parents[0].args["text"]
    assert_nothing_active(slack, allowed=("<@U1>",))


async def test_hostile_digest_summary(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic):
    from bot.digest import post_scheduled_digest
    from bot.store import Store
    from tests.fakes.anthropic import DEFAULT_MODELS
    from tests.test_digest import MODEL_KEY, add_to_slack, seed, settings_for, window

    store = Store(tmp_path / "archbot.db")
    try:
        add_to_slack(slack, seed(store))
        model.script(Reply(text=f"- {HOSTILE}\n- The billing timeout needs <!here> one source of truth."))
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
        await post_scheduled_digest(settings, store, client, None, channel="CDIGEST", since=since, until=until)
    finally:
        store.close()
    posted = json.dumps([c.args for c in slack.calls_to("chat.postMessage")], ensure_ascii=False)
    assert "one source of truth" in posted and EVIL in posted
    assert "slack.com/archives" in posted or "/archives/" in posted  # thread permalinks stay links
    # the bot's own links (thread permalinks, cited docs) keep their labels; nothing from the model does
    bot_links = re.findall(r"<https?://(?!evil\.example)[^|>]*\|[^>]*>", posted)
    assert bot_links
    assert_nothing_active(slack, allowed=tuple(bot_links))


async def test_views_messages_and_ephemerals(slack: FakeSlack):
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    section = {"type": "section", "text": {"type": "mrkdwn", "text": HOSTILE}}
    home = {"type": "home", "blocks": [section, {"type": "markdown", "text": HOSTILE}]}
    await publish_view(client, user_id="U1", view=home)
    modal = {
        "type": "modal",
        "title": {"type": "plain_text", "text": "@here review"},
        "blocks": [section, {"type": "context", "elements": [{"type": "mrkdwn", "text": HOSTILE}]}],
    }
    await open_view(client, trigger_id=new_trigger_id(), view=modal)
    ts = await post_message(client, channel="C1", text=HOSTILE, blocks=[section])
    await update_message(client, channel="C1", ts=ts, text=HOSTILE, blocks=[{"type": "markdown", "text": HOSTILE}])
    await post_ephemeral(client, channel="C1", user="U1", text=HOSTILE)
    done = {c.method for c in writes(slack) if not c.failed}
    assert done >= {"views.publish", "views.open", "chat.postMessage", "chat.update", "chat.postEphemeral"}
    assert_nothing_active(slack)


def test_stream_chunks_and_task_updates() -> None:
    from bot.slack.neutralise import neutralise_chunks

    chunks = [
        {"type": "markdown_text", "text": f"[the runbook]({EVIL}) <!here>"},
        {"type": "task_update", "id": "t1", "title": "Pinging @channel", "status": "in_progress", "details": "<!here>"},
    ]
    out = neutralise_chunks(chunks)
    assert out is not None
    assert not active_syntax(out[0]["text"], "markdown") and EVIL in out[0]["text"]
    assert not active_syntax(json.dumps(out[1], ensure_ascii=False), "plain")
    assert out[1]["status"] == "in_progress" and out[1]["id"] == "t1"


def test_post_py_neutralises_every_payload_it_sends() -> None:
    """Inside post.py, each Slack write passes its text, blocks, chunks or view through a neutraliser
    (stream deltas are cut from text neutralised just before; see ReplyPoster)."""
    payload_args = {"text", "blocks", "view", "chunks", "markdown_text", "status", "title", "prompts"}
    methods = {m.replace(".", "_") for m in WRITE_METHODS} | {"send"}
    tree = ast.parse((REPO_ROOT / "bot" / "slack" / "post.py").read_text(encoding="utf-8"))
    unchecked = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in methods):
            continue
        for kw in node.keywords:
            if kw.arg not in payload_args:
                continue
            value = kw.value
            ok = (isinstance(value, ast.Call) and getattr(value.func, "id", "").startswith("neutralise_")) or (
                isinstance(value, ast.Name) and value.id == "delta"
            ) or isinstance(value, ast.ListComp | ast.Constant)
            if not ok:
                unchecked.append(f"post.py:{node.lineno} {node.func.attr}({kw.arg}=…)")
    assert not unchecked, unchecked
