"""Slash command, modals and buttons: `/arch-review` and answer feedback.

Everything here acks within Slack's 3 seconds and leaves slow work to a Job:
- `/arch-review <text>` queues a review job (the review appears in the channel as a new
  thread); `/arch-review` alone opens a modal at once (a trigger_id lives 3 s, once), and
  its submission queues the same job, the channel carried in `private_metadata`.
- A 👍/👎 click is stored with the answer and the clicker, counted in `/metrics`, and
  acknowledged privately; a 👎 offers an optional "what was missing?" modal.
- A proposal's text and title are redacted (`bot/redaction.py`) before they are queued: a
  credential pasted into a review reaches neither the store, the model nor the thread.

Language: what answers a text (a proposal, a click under an answer) follows that text's language;
the empty review form, which has none, is in the language of the user's own recent questions (else
`ARCHBOT_LANGUAGE`), and its language rides in the view's `private_metadata` so its errors and the
composed proposal match it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import StoreUnavailable
from bot.i18n import DEFAULT_LANG, Lang, detect_language, parse_lang, t
from bot.proposals import short_title
from bot.redaction import redact_text
from bot.slack.deps import Deps
from bot.slack.post import open_view, post_ephemeral
from bot.slack.render import FEEDBACK_ACTION_ID

log = logging.getLogger(__name__)

REVIEW_CALLBACK = "arch_review_modal"
FEEDBACK_CALLBACK = "archbot_feedback_comment"
REVIEW_QUEUED = t("review.queued")
REVIEW_FIELDS = (("title", False, False), ("proposal", True, False), ("context", True, True), ("concerns", True, True))


def build_review_modal(*, channel_id: str, lang: Lang = DEFAULT_LANG) -> dict[str, Any]:
    def field(block_id: str, *, multiline: bool, optional: bool) -> dict[str, Any]:
        return {
            "type": "input",
            "block_id": block_id,
            "optional": optional,
            "label": {"type": "plain_text", "text": t(f"review.field_{block_id}", lang)},
            "element": {
                "type": "plain_text_input",
                "action_id": "value",
                "multiline": multiline,
                "placeholder": {"type": "plain_text", "text": t(f"review.hint_{block_id}", lang)},
            },
        }

    return {
        "type": "modal",
        "callback_id": REVIEW_CALLBACK,
        "private_metadata": json.dumps({"channel": channel_id, "lang": lang}),
        "title": {"type": "plain_text", "text": t("review.modal_title", lang)},
        "submit": {"type": "plain_text", "text": t("review.modal_submit", lang)},
        "close": {"type": "plain_text", "text": t("review.modal_cancel", lang)},
        "blocks": [field(b, multiline=m, optional=o) for b, m, o in REVIEW_FIELDS],
    }


def build_feedback_modal(*, channel: str, message_ts: str, lang: Lang = DEFAULT_LANG) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": FEEDBACK_CALLBACK,
        "private_metadata": json.dumps({"channel": channel, "message_ts": message_ts}),
        "title": {"type": "plain_text", "text": t("feedback.modal_title", lang)},
        "submit": {"type": "plain_text", "text": t("feedback.modal_submit", lang)},
        "close": {"type": "plain_text", "text": t("feedback.modal_skip", lang)},
        "blocks": [
            {
                "type": "input",
                "block_id": "comment",
                "optional": True,
                "label": {"type": "plain_text", "text": t("feedback.modal_question", lang)},
                "element": {"type": "plain_text_input", "action_id": "value", "multiline": True},
            }
        ],
    }


def _value(values: dict[str, Any], block_id: str) -> str:
    return str(((values.get(block_id) or {}).get("value") or {}).get("value") or "").strip()


def compose_proposal(values: dict[str, Any], lang: Lang = DEFAULT_LANG) -> tuple[str, str]:
    """Modal values → (title, the proposal text the review job reads), labelled in the form's language."""
    title = _value(values, "title")
    colon = "：" if lang == "zh" else ": "
    parts = [f"{t('review.label_proposal', lang)}{colon}{title}", _value(values, "proposal")]
    for block in ("context", "concerns"):
        text = _value(values, block)
        if text:
            parts.append(f"{t(f'review.field_{block}', lang)}{colon}{text}")
    return title, "\n\n".join(p for p in parts if p)


def _message_language(message: dict[str, Any]) -> Lang:
    """The language of a message the bot wrote (an answer under which a button was clicked)."""
    texts = [str(b.get("text") or "") for b in message.get("blocks") or [] if b.get("type") == "markdown"]
    return detect_language(" ".join(texts) or str(message.get("text") or ""))


def register_interactions(app: AsyncApp, deps: Deps) -> None:
    store = deps.store

    async def queue_review(*, channel: str, user: str, team: str | None, key: str, text: str, meta: dict) -> int | None:
        job_id = await store.quick.enqueue(
            kind="review",
            channel=channel,
            ts=key,
            thread_ts="",
            user=user,
            text=text,
            channel_type="command",
            team=team,
            meta=meta,
        )
        if job_id is not None:
            deps.metrics.queue_depth.inc()
            log.info("job queued", extra={"job_id": job_id, "kind": "review", "channel": channel})
            deps.wake.set()
        return job_id

    async def asker_language(user: str) -> Lang:
        """The language of the user's own recent questions (an empty form has no text to read), else
        ARCHBOT_LANGUAGE; any store trouble gives the setting (the form must open within 3 s)."""
        from bot.slack.home import load_user_language

        quick = store.quick
        try:
            return await quick.run(load_user_language, quick.sync, user, deps.settings.language)
        except Exception:
            log.info("review form: the asker's language is unknown; using ARCHBOT_LANGUAGE")
            return deps.settings.language

    @app.command("/arch-review")
    async def on_review(ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient) -> None:
        text = redact_text(str(command.get("text") or "").strip())  # its title is stored and shown too
        channel = str(command.get("channel_id") or "")
        lang = detect_language(text, default=deps.settings.language)
        if not text:
            lang = await asker_language(str(command.get("user_id") or ""))
            try:
                view = build_review_modal(channel_id=channel, lang=lang)
                await open_view(client, trigger_id=command["trigger_id"], view=view)
                await ack()
            except SlackApiError as exc:
                error = exc.response.get("error")
                log.info("review modal failed to open", extra={"error": error, "channel": channel})
                await ack(response_type="ephemeral", text=t("review.modal_slow", lang))
            return
        title = short_title(text)
        try:
            await queue_review(
                channel=channel,
                user=str(command.get("user_id")),
                team=command.get("team_id"),
                key=f"cmd:{command.get('trigger_id')}",
                text=text,
                meta={"title": title, "response_url": command.get("response_url")},
            )
        except StoreUnavailable:
            await ack(response_type="ephemeral", text=t("store.busy", lang))
            return
        await ack(response_type="ephemeral", text=t("review.queued", lang))

    @app.view(REVIEW_CALLBACK)
    async def on_review_submit(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        values = (view.get("state") or {}).get("values") or {}
        meta = json.loads(view.get("private_metadata") or "{}")
        lang = parse_lang(meta.get("lang"), deps.settings.language)
        title, text = (redact_text(v) for v in compose_proposal(values, lang))
        errors = {}
        if not title:
            errors["title"] = t("review.error_title", lang)
        if not _value(values, "proposal"):
            errors["proposal"] = t("review.error_proposal", lang)
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        user = (body.get("user") or {}).get("id")
        try:
            await queue_review(
                channel=str(meta.get("channel") or user),
                user=str(user),
                team=(body.get("team") or {}).get("id"),
                key=f"view:{view.get('id')}",
                text=text,
                meta={"title": title},
            )
        except StoreUnavailable:
            await ack(response_action="errors", errors={"proposal": t("store.busy", lang)})
            return
        await ack()

    @app.action(FEEDBACK_ACTION_ID)
    async def on_feedback(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        value = "up" if action.get("value") in ("up", "positive") else "down"
        channel = str((body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id"))
        message = body.get("message") or {}
        message_ts = str(message.get("ts") or (body.get("container") or {}).get("message_ts"))
        user = str((body.get("user") or {}).get("id"))
        lang = _message_language(message)
        try:
            await store.record_feedback(channel=channel, message_ts=message_ts, user=user, value=value)
        except StoreUnavailable:
            log.warning("feedback not recorded: database unavailable", extra={"channel": channel})
        deps.metrics.feedback.labels(value).inc()
        log.info("feedback", extra={"channel": channel, "message_ts": message_ts, "value": value})
        if value == "down" and body.get("trigger_id"):
            try:
                await open_view(
                    client,
                    trigger_id=body["trigger_id"],
                    view=build_feedback_modal(channel=channel, message_ts=message_ts, lang=lang),
                )
                return
            except SlackApiError:
                pass  # the thanks below is enough
        thanks = t("feedback.thanks_up" if value == "up" else "feedback.thanks_down", lang)
        await post_ephemeral(
            client, channel=channel, user=user, text=thanks, thread_ts=message.get("thread_ts") or message_ts
        )

    @app.view(FEEDBACK_CALLBACK)
    async def on_feedback_comment(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        await ack()
        meta = json.loads(view.get("private_metadata") or "{}")
        comment = _value((view.get("state") or {}).get("values") or {}, "comment")
        if comment and meta.get("channel") and meta.get("message_ts"):
            await store.record_feedback(
                channel=meta["channel"],
                message_ts=meta["message_ts"],
                user=str((body.get("user") or {}).get("id")),
                value="down",
                comment=comment,
            )
