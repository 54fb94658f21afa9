"""Credentials in what people and the model write: replaced by `[redacted: kind]` where that text
enters archbot, before it is stored, logged, searched or sent to the model, and again on its way
out to Slack.

The docs are redacted when they are indexed (`bot/retrieval/redact.py`); this applies the same
detector, and the same marks, to the rest:
- Slack text as it becomes plain text (`bot.slack.context.clean_text`): a question, every message
  of a thread read with `conversations.replies`, an `/arch-review` proposal, the digest's lines;
  the bot's own earlier answers as they become assistant turns (`build_turns`);
- `/arch-review` text and modal fields before they are queued (`bot/slack/interactions.py`),
  `archbot ask`'s question (`bot/ask.py`), the team profile read into the system prompt;
- the store: every free-text column it writes (a job's text, an answer's question, text, topic
  and decision, gaps, feedback comments), whoever the caller (`bot/store.py`, both backends);
- every Slack write (`bot/slack/neutralise.py`), so a model that repeats a credential shows the
  mark; a streaming answer shows only its `settled` part, never half a value;
- log records (`bot/logs.py`);
- what the store already holds, once per detector version: rows written before this detector
  existed are swept again at start (`Store.start_sweep`, run by `archbot run`).

Text is redacted paragraph by paragraph (blank-line separated) and each paragraph's result is
remembered, so a streaming answer, shown again every quarter second, costs the redaction of its
last paragraph rather than of the whole text. A paragraph is the unit the detector needs: none of
its patterns spans a blank line.
"""

from __future__ import annotations

import re
from functools import lru_cache

_PARAGRAPH = "\n\n"
# Where a value may be being written on a line that is not finished: a name that says secret,
# then its operator (`DB_PASSWORD=`, `password: "`, `--token '`), or nothing yet (the name is the
# last word so far), or a label in Chinese (密码：).
_VALUE_AHEAD = re.compile(
    r"""[A-Za-z0-9_.-]*(?:pass|pwd|secret|token|key|credential)[A-Za-z0-9_.-]*"""
    r"""(?:["'`]?[ \t]*(?::=|=>|=|:)|[ \t]+["'`]|["'`]?[ \t]*\Z)"""
    r"""|密码|口令|密钥|令牌""",
    re.IGNORECASE,
)


_LAST_WORD = re.compile(r"[!-~]+\Z")  # printable ASCII without spaces, at the end: may still grow


@lru_cache(maxsize=2048)
def _redact_paragraph(paragraph: str) -> str:
    from bot.retrieval.redact import redact_secrets

    return redact_secrets(paragraph).text


def detector_version() -> str:
    """The detector's version (`r6`, …): it changes when what is redacted changes. The store
    re-redacts what it holds once per version (`Store.start_sweep`)."""
    from bot.retrieval.redact import VERSION

    return VERSION


def redact_text(text: str) -> str:
    """`text` with every credential the index would redact replaced by `[redacted: kind]`."""
    if len(text) < 6 or not text.strip():
        return text  # "pw=ab": nothing there a detector would call a credential
    return _PARAGRAPH.join(_redact_paragraph(p) for p in text.split(_PARAGRAPH))


def settled(text: str) -> str:
    """The part of a growing text (an answer still streaming) that can be shown now: whole words,
    and on the unfinished last line nothing from where a credential may be being written. What is
    shown of it, redacted, is what the finished text will show there, so no part of a value is
    ever visible before the detector can see all of it."""
    unfinished = _LAST_WORD.search(text)  # a value is ASCII: Chinese text without spaces still shows
    if unfinished is not None:
        text = text[: unfinished.start()]
    if not text or text.endswith("\n"):
        return text
    line_start = text.rfind("\n") + 1
    ahead = _VALUE_AHEAD.search(text, line_start)
    return text[: ahead.start()] if ahead else text


def warm_up() -> None:
    """Load the detector now: detect-secrets' plugins take a moment the first time, which would
    otherwise fall on the first question (its enqueue redacts the text)."""
    redact_text("warm up: DB_PASSWORD=x1y2z3w4")
