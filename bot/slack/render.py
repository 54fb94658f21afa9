"""Render answers for Slack: pure functions from values to Block Kit dicts and text. No I/O.

The answer body stays standard markdown and goes out in Slack's `markdown` block (and as
`markdown_text` chunks when streaming), which Slack renders itself: links whose URLs hold
parentheses, nested lists and fenced code survive, where a regex conversion to mrkdwn
mangles them. Slack also needs a plain `text` fallback (notifications, old clients): that
one is converted to mrkdwn with markdown-it's parser, not with regexes.

Limits (PROTOCOL_NOTES): a markdown block holds at most 12 000 characters per message,
`text` at most 40 000, a context block at most 10 elements. Long answers are split on block
boundaries, never inside a fenced code block unless that block alone is too long (then the
fence is closed and reopened).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from markdown_it import MarkdownIt
from markdown_it.token import Token

from bot.slack.neutralise import TRUST, mention_user, trusted_label
from bot.types import Answer, Citation

MARKDOWN_BLOCK_LIMIT = 11_000  # per message, leaving room under Slack's 12 000 for sources
FALLBACK_LIMIT = 3_000  # notification text: short is better
FEEDBACK_ACTION_ID = "archbot_feedback"
_md = MarkdownIt("commonmark").enable(["table", "strikethrough"])

FAILURE_TEXT = (
    ":warning: Sorry, I couldn't answer this one: the model service is not responding right now "
    "(I retried a few times). Nothing is lost: ask again in a minute, or mention me to retry."
)
INTERNAL_FAILURE_TEXT = (
    ":warning: Sorry, something went wrong on my side while answering. "
    "The team running archbot can find the details in its logs; please ask again."
)


# -- mrkdwn ------------------------------------------------------------------------------
def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack treats as control characters in text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link_label(text: str) -> str:
    return escape_mrkdwn(text).replace("|", "¦")


_LINKABLE = re.compile(r"(?:https?://|mailto:)[^\s<>|]+", re.IGNORECASE)


def _mrkdwn_link(href: str, label: str) -> str:
    """A markdown link as mrkdwn. Only web and mail targets become links, and only a label the bot
    marked (`trusted_label`) may stand in for the URL: `[team](!channel)` stays text, and
    `[the runbook](https://x)` shows its URL."""
    label = label.replace("|", "¦")
    if not _LINKABLE.fullmatch(href):
        target = escape_mrkdwn(href)
        return f"{label} ({target})" if label and label != target else target
    if not label or label == escape_mrkdwn(href):
        return f"<{href}>"
    if label.startswith(TRUST):
        return f"<{href}|{label}>"
    return f"{label} (<{href}>)"


def _inline(children: list[Token]) -> str:
    out: list[str] = []
    link_stack: list[str] = []
    label: list[str] = []
    for tok in children:
        target = label if link_stack else out
        if tok.type == "text":
            target.append(escape_mrkdwn(tok.content))
        elif tok.type == "code_inline":
            target.append(f"`{escape_mrkdwn(tok.content)}`")
        elif tok.type in ("strong_open", "strong_close"):
            target.append("*")
        elif tok.type in ("em_open", "em_close"):
            target.append("_")
        elif tok.type in ("s_open", "s_close"):
            target.append("~")
        elif tok.type in ("softbreak", "hardbreak"):
            target.append("\n")
        elif tok.type == "link_open":
            link_stack.append(str(tok.attrGet("href") or ""))
            label = []
        elif tok.type == "link_close" and link_stack:
            out.append(_mrkdwn_link(link_stack.pop(), "".join(label)))
            label = []
        elif tok.type == "image":
            out.append(_mrkdwn_link(str(tok.attrGet("src") or ""), _link_label(tok.content or "image")))
        elif tok.type in ("html_inline",):
            target.append(escape_mrkdwn(tok.content))
        else:
            target.append(escape_mrkdwn(tok.content))
    return "".join(out)


def to_mrkdwn(markdown: str) -> str:
    """Convert standard markdown to Slack mrkdwn (for `text` fallbacks and section blocks)."""
    tokens = _md.parse(markdown)
    lines: list[str] = []
    list_stack: list[list[int]] = []  # [is_ordered, counter]
    quote_depth = 0
    row: list[str] | None = None  # cells of the table row being read
    pending_prefix = ""

    def emit(text: str) -> None:
        nonlocal pending_prefix
        prefix = "> " * quote_depth
        for i, line in enumerate(text.split("\n")):
            lead = pending_prefix if i == 0 else " " * len(pending_prefix)
            lines.append(f"{prefix}{lead}{line}")
        pending_prefix = ""

    for tok in tokens:
        t = tok.type
        if t == "heading_open":
            pass
        elif t == "inline":
            content = _inline(tok.children or [])
            if row is not None:
                row.append(content)
            else:
                emit(content)
        elif t == "heading_close":
            if lines:
                lines[-1] = f"*{lines[-1].strip('*')}*"
        elif t in ("paragraph_close",):
            if not list_stack:
                lines.append("")
        elif t in ("bullet_list_open", "ordered_list_open"):
            list_stack.append([1 if t == "ordered_list_open" else 0, int(tok.attrGet("start") or 1) - 1])
        elif t in ("bullet_list_close", "ordered_list_close"):
            list_stack.pop()
            if not list_stack:
                lines.append("")
        elif t == "list_item_open":
            indent = "    " * (len(list_stack) - 1)
            ordered, _ = list_stack[-1]
            if ordered:
                list_stack[-1][1] += 1
                pending_prefix = f"{indent}{list_stack[-1][1]}. "
            else:
                pending_prefix = f"{indent}• "
        elif t in ("fence", "code_block"):
            code = escape_mrkdwn(tok.content.rstrip("\n"))
            emit(f"```\n{code}\n```")
            lines.append("")
        elif t == "blockquote_open":
            quote_depth += 1
        elif t == "blockquote_close":
            quote_depth -= 1
        elif t == "hr":
            emit("──────────")
        elif t == "tr_open":
            row = []
        elif t == "tr_close":
            emit(" | ".join(row or []))
            row = None
        elif t == "table_close":
            lines.append("")
        elif t == "html_block":
            emit(escape_mrkdwn(tok.content.rstrip("\n")))
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# -- splitting ---------------------------------------------------------------------------
_FENCE = re.compile(r"^(\s*)(```+|~~~+)")


def split_markdown(text: str, limit: int = MARKDOWN_BLOCK_LIMIT) -> list[str]:
    """Split markdown into parts of at most `limit` chars, on paragraph boundaries outside code fences."""
    if len(text) <= limit:
        return [text]
    blocks: list[str] = []  # paragraphs, with each fenced code block kept whole
    current: list[str] = []
    fence: str | None = None
    for line in text.split("\n"):
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(2)
        elif fence is not None and m and m.group(2).startswith(fence[0]) and len(m.group(2)) >= len(fence):
            fence = None
            current.append(line)
            continue
        if fence is None and not line.strip():
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))

    parts: list[str] = []
    buf = ""
    for block in blocks:
        for piece in _split_block(block, limit):
            candidate = f"{buf}\n\n{piece}" if buf else piece
            if len(candidate) <= limit:
                buf = candidate
            else:
                if buf:
                    parts.append(buf)
                buf = piece
    if buf:
        parts.append(buf)
    return parts


def _split_block(block: str, limit: int) -> list[str]:
    if len(block) <= limit:
        return [block]
    lines = block.split("\n")
    m = _FENCE.match(lines[0])
    opener, closer = (lines[0], m.group(1) + m.group(2)) if m else ("", "")
    body = lines[1:-1] if m and _FENCE.match(lines[-1]) else (lines[1:] if m else lines)
    room = limit - (len(opener) + len(closer) + 2 if m else 0)
    pieces: list[str] = []
    buf: list[str] = []
    size = 0
    for line in body:
        while len(line) > room:  # a single monster line: hard cut
            if buf:
                pieces.append("\n".join(buf))
                buf, size = [], 0
            pieces.append(line[:room])
            line = line[room:]
        if size + len(line) + 1 > room and buf:
            pieces.append("\n".join(buf))
            buf, size = [], 0
        buf.append(line)
        size += len(line) + 1
    if buf:
        pieces.append("\n".join(buf))
    if m:
        return [f"{opener}\n{p}\n{closer}" for p in pieces]
    return pieces


# -- citations and blocks ----------------------------------------------------------------
def citation_url(c: Citation) -> str | None:
    """A link target safe inside markdown and mrkdwn: parentheses and spaces percent-encoded."""
    if not c.url:
        return None
    return quote(c.url, safe=":/#?&=%+@,;~!*'")


def citation_label(c: Citation) -> str:
    place = c.path if c.source != "knowledge" else f"knowledge/{c.path}"
    return f"{place} › {c.heading}" if c.heading else place


def unique_citations(citations: list[Citation], limit: int = 8) -> list[Citation]:
    seen: set[tuple[str, str, str]] = set()
    out: list[Citation] = []
    for c in citations:
        key = (c.source, c.path, c.heading)
        if key in seen:
            continue
        seen.add(key)
        out.append(c)
        if len(out) >= limit:
            break
    return out


def render_sources_markdown(citations: list[Citation]) -> str:
    """The 'Sources' list appended under an answer, as markdown links (or plain paths)."""
    items = unique_citations(citations)
    if not items:
        return ""
    lines = ["**Sources**"]
    for i, c in enumerate(items, 1):
        label = citation_label(c).replace("[", "(").replace("]", ")")
        url = citation_url(c)
        lines.append(f"{i}. [{trusted_label(label)}]({url})" if url else f"{i}. `{label}`")
    return "\n".join(lines)


REVIEW_QUOTE_LIMIT = 2500  # the proposal quoted under a review thread's opening message


def build_review_parent_text(*, title: str, user: str | None, proposal: str) -> str:
    """The channel message that opens a review thread: what is reviewed, for whom, and the proposal
    itself, quoted (shortened), so readers and every follow-up in the thread have it."""
    head = f":building_construction: Architecture review of *{escape_mrkdwn(title)}*"
    if user:
        head += f", requested by {mention_user(user)}"
    body = proposal.strip()
    if len(body) > REVIEW_QUOTE_LIMIT:
        body = body[:REVIEW_QUOTE_LIMIT].rstrip() + " …"
    return f"{head}\n>>> {escape_mrkdwn(body)}" if body else head


def build_feedback_block() -> dict:
    """Slack's feedback buttons (👍/👎) under an answer."""
    return {
        "type": "context_actions",
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": FEEDBACK_ACTION_ID,
                "positive_button": {
                    "text": {"type": "plain_text", "text": "Helpful"},
                    "accessibility_label": "Mark this answer as helpful",
                    "value": "up",
                },
                "negative_button": {
                    "text": {"type": "plain_text", "text": "Not helpful"},
                    "accessibility_label": "Mark this answer as not helpful",
                    "value": "down",
                },
            }
        ],
    }


def build_answer_body(answer: Answer) -> str:
    """The full markdown shown for an answer: body, then open questions, then sources."""
    body = answer.text.strip() or "_(empty answer)_"
    extras: list[str] = []
    if answer.kind == "clarify" and answer.questions and not any(q in body for q in answer.questions):
        extras.append("\n".join(f"{i}. {q}" for i, q in enumerate(answer.questions, 1)))
    sources = render_sources_markdown(answer.citations)
    if sources:
        extras.append(sources)
    return "\n\n".join([body, *extras])


def build_message_parts(answer: Answer, *, limit: int = MARKDOWN_BLOCK_LIMIT) -> list[tuple[str, list[dict]]]:
    """(fallback text, blocks) for each message of an answer; feedback buttons on the last one."""
    parts = split_markdown(build_answer_body(answer), limit)
    out: list[tuple[str, list[dict]]] = []
    for i, part in enumerate(parts):
        blocks: list[dict] = [{"type": "markdown", "text": part}]
        if i == len(parts) - 1 and answer.kind in ("answer", "review", "clarify", "retrieval_only"):
            blocks.append(build_feedback_block())
        out.append((build_fallback_text(part), blocks))
    return out


def build_fallback_text(markdown: str, limit: int = FALLBACK_LIMIT) -> str:
    text = to_mrkdwn(markdown)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def build_failure_message(*, internal: bool = False) -> tuple[str, list[dict]]:
    text = INTERNAL_FAILURE_TEXT if internal else FAILURE_TEXT
    return text, [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]


def build_progress_text(markdown: str) -> str:
    """A partial answer while it streams (update mode): the text so far and a cursor."""
    return markdown.rstrip() + " ▍"
