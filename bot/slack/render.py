"""Render answers for Slack: pure functions from values to Block Kit dicts and text. No I/O.

The answer body stays standard markdown and goes out in Slack's `markdown` block (and as
`markdown_text` chunks when streaming), which Slack renders itself: links whose URLs hold
parentheses, nested lists and fenced code survive, where a regex conversion to mrkdwn
mangles them. Slack also needs a plain `text` fallback (notifications, old clients): that
one is converted to mrkdwn with markdown-it's parser, not with regexes.

An answer reads, top to bottom: the body with `[n]` markers where the model cited a passage;
a note when it stopped at the length limit; the clarifying questions; short "Docs disagree",
"Not in the docs" and "Confidence" lines when the record has them; then the sources, each
numbered source with its path (linked when `ARCHBOT_DOCS_URL` is set), heading, status, date
and the quoted passage, and apart from them the sources the model only listed. Every fixed
string comes from the catalogue (`bot.i18n`) in the asker's language.

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

from bot.i18n import DEFAULT_LANG, Lang, catalogue, t
from bot.slack.neutralise import TRUST, mention_user, trusted_label
from bot.types import Answer, Citation

MARKDOWN_BLOCK_LIMIT = 11_000  # per message, leaving room under Slack's 12 000 for sources
FALLBACK_LIMIT = 3_000  # notification text: short is better
FEEDBACK_ACTION_ID = "archbot_feedback"
_md = MarkdownIt("commonmark").enable(["table", "strikethrough"])

QUOTE_WIDTH = 200  # a quoted passage under a source: about two lines (a CJK character counts 2)
MAX_NUMBERED = 20
MAX_LISTED = 8


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


HEADING_CHARS = 60  # a longer heading path shows its last section only


def citation_label(c: Citation) -> str:
    place = c.path if c.source != "knowledge" else f"knowledge/{c.path}"
    heading = c.heading
    if _width(heading) > HEADING_CHARS and " > " in heading:
        heading = "… > " + heading.rsplit(" > ", 1)[1]
    return f"{place} › {heading}" if heading else place


def unique_citations(citations: list[Citation], limit: int = MAX_LISTED) -> list[Citation]:
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


def _width(text: str) -> int:
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)


def trim_quote(text: str, width: int = QUOTE_WIDTH) -> str:
    """A cited passage as one short line: markdown line markers dropped, whitespace collapsed, cut
    at a word (or, in CJK text, anywhere) near `width` display columns."""
    text = re.sub(r"```[\w+-]*", " ", text)  # code fences: the code reads fine inline
    lines = [re.sub(r"^\s*(?:[#>|*+-]+\s+|\d+[.)]\s+|[|>]+)", "", line) for line in text.splitlines()]
    flat = " ".join(" ".join(lines).split()).replace("|", "¦")
    if _width(flat) <= width:
        return flat
    cut, used = [], 0
    for ch in flat:
        used += 2 if ord(ch) > 0x2E7F else 1
        if used > width - 1:
            break
        cut.append(ch)
    short = "".join(cut)
    if " " in short[len(short) // 2 :]:
        short = short.rsplit(" ", 1)[0]
    return short.rstrip(" ,;:.，。；：") + "…"


def _source_link(c: Citation) -> str:
    label = citation_label(c).replace("[", "(").replace("]", ")")
    url = citation_url(c)
    return f"[{trusted_label(label)}]({url})" if url else f"`{label}`"


def _status_word(status: str, lang: Lang) -> str:
    key = f"status.{status.strip().lower()}"
    return t(key, lang) if key in catalogue() else status.strip()


def render_sources_markdown(citations: list[Citation], *, lang: Lang = DEFAULT_LANG) -> str:
    """The sources under an answer, as markdown: the quoted ones numbered as their `[n]` markers, each
    with its status, date and the passage quoted; then, apart, the ones the model only listed."""
    numbered = sorted((c for c in citations if c.number), key=lambda c: c.number)[:MAX_NUMBERED]
    quoted_keys = {(c.source, c.path, c.heading) for c in numbered}
    listed = unique_citations(
        [c for c in citations if not c.number and (c.source, c.path, c.heading) not in quoted_keys]
    )
    if not numbered and not listed:
        return ""
    lines = [f"**{t('answer.sources', lang)}**"]
    for c in numbered:
        facts = [w for w in (_status_word(c.status, lang) if c.status else "", c.date.strip()) if w]
        facts = facts if c.source != "knowledge" else []  # our pattern library has no team status
        line = f"{c.number}. {_source_link(c)}" + (f" · _{' · '.join(facts)}_" if facts else "")
        lines.append(line)
        quote = trim_quote(c.cited_text) if c.cited_text else ""
        if quote:
            lines.append(f"   > “{quote}”")
    if listed:
        items = ", ".join(_source_link(c) for c in listed)
        if numbered:
            lines += ["", f"{t('answer.listed', lang)} {items}"]
        else:
            lines += [f"{i}. {_source_link(c)}" for i, c in enumerate(listed, 1)]
    return "\n".join(lines)


_QUOTE_LINE = re.compile(r"^   > “.*”$\n?", re.MULTILINE)


def without_quotes(markdown: str) -> str:
    """An answer as the model reads it back in a thread: the quoted passages under its sources are
    dropped (the passages are retrieved again; the paths and [n] markers stay)."""
    return _QUOTE_LINE.sub("", markdown)


def _ref(path: str, numbered: dict[str, int]) -> str:
    return f"[{numbered[path]}]" if path in numbered else f"`{path}`"


def render_record_lines(answer: Answer, *, lang: Lang = DEFAULT_LANG) -> str:
    """Short "Docs disagree", "Not in the docs" and "Confidence" lines, from the answer's record."""
    if answer.kind not in ("answer", "review", "clarify"):
        return ""
    numbered: dict[str, int] = {}
    for c in sorted((c for c in answer.citations if c.number), key=lambda c: c.number):
        numbered.setdefault(c.path, c.number)
    paragraphs: list[str] = []
    versus = f" {t('answer.versus', lang)} "
    if answer.disagreements:
        colon = "：" if lang == "zh" else ": "
        sides = [f"{d.summary}{colon}{versus.join(_ref(p, numbered) for p in d.sides)}" for d in answer.disagreements]
    else:
        sides = list(answer.conflicts)
    if sides:
        head = f"**{t('answer.disagree', lang)}**"
        if len(sides) == 1:
            paragraphs.append(f":warning: {head} {sides[0]}")
        else:
            paragraphs.append(f":warning: {head}\n" + "\n".join(f"- {line}" for line in sides))
    if answer.gaps:
        paragraphs.append(f"**{t('answer.gaps', lang)}** " + "; ".join(answer.gaps))
    if answer.confidence in ("high", "medium", "low"):
        level = t(f"answer.confidence_{answer.confidence}", lang)
        paragraphs.append(f"**{t('answer.confidence', lang)}** {level} — {confidence_reason(answer, lang)}")
    return "\n\n".join(paragraphs)


def confidence_reason(answer: Answer, lang: Lang = DEFAULT_LANG) -> str:
    """The model's own reason when it gave one; else what the evidence shows."""
    if answer.confidence_reason:
        return answer.confidence_reason
    if answer.conflicts or answer.disagreements:
        return t("answer.reason_conflict", lang)
    quoted = len({(c.path, c.heading) for c in answer.citations if c.number})
    return t("answer.reason_quoted", lang, n=quoted) if quoted else t("answer.reason_none", lang)


REVIEW_QUOTE_LIMIT = 2500  # the proposal quoted under a review thread's opening message
PROVISIONAL_MIN_CHARS = 120  # letters besides the questions that count as a written provisional answer


def build_review_parent_text(*, title: str, user: str | None, proposal: str, lang: Lang = DEFAULT_LANG) -> str:
    """The channel message that opens a review thread: what is reviewed, for whom, and the proposal
    itself, quoted (shortened), so readers and every follow-up in the thread have it."""
    head = t("review.parent", lang, title=escape_mrkdwn(title))
    if user:
        head += t("review.requested_by", lang, user=mention_user(user))
    body = proposal.strip()
    if len(body) > REVIEW_QUOTE_LIMIT:
        body = body[:REVIEW_QUOTE_LIMIT].rstrip() + " …"
    return f"{head}\n>>> {escape_mrkdwn(body)}" if body else head


def build_feedback_block(lang: Lang = DEFAULT_LANG) -> dict:
    """Slack's feedback buttons (👍/👎) under an answer, labelled in the asker's language."""
    return {
        "type": "context_actions",
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": FEEDBACK_ACTION_ID,
                "positive_button": {
                    "text": {"type": "plain_text", "text": t("answer.helpful", lang)},
                    "accessibility_label": t("answer.helpful_label", lang),
                    "value": "up",
                },
                "negative_button": {
                    "text": {"type": "plain_text", "text": t("answer.not_helpful", lang)},
                    "accessibility_label": t("answer.not_helpful_label", lang),
                    "value": "down",
                },
            }
        ],
    }


def build_answer_body(answer: Answer, *, lang: Lang = DEFAULT_LANG) -> str:
    """The full markdown shown for an answer: body, a cut-off note, open questions, the record's
    conflicts/gaps/confidence lines, then the sources."""
    body = answer.text.strip() or t("answer.empty", lang)
    if answer.kind == "clarify" and answer.provisional and only_questions(body, answer.questions):
        body = f"{answer.provisional}\n\n{body}"  # the model only asked: still lead with its provisional answer
    extras: list[str] = []
    if answer.truncated:
        extras.append(f":scissors: {t('answer.truncated', lang)}")
    if answer.kind == "clarify" and answer.questions and not any(q in body for q in answer.questions):
        extras.append("\n".join(f"{i}. {q}" for i, q in enumerate(answer.questions, 1)))
    record = render_record_lines(answer, lang=lang)
    if record:
        extras.append(record)
    sources = render_sources_markdown(answer.citations, lang=lang)
    if sources:
        extras.append(sources)
    return "\n\n".join([body, *extras])


def only_questions(body: str, questions: list[str]) -> bool:
    """The reply is little more than its clarifying questions (no provisional answer written)."""
    rest = body
    for question in questions:
        rest = rest.replace(question, "")
    return len(re.sub(r"[\W\d_]+", "", rest)) < PROVISIONAL_MIN_CHARS


def build_message_parts(
    answer: Answer, *, lang: Lang = DEFAULT_LANG, limit: int = MARKDOWN_BLOCK_LIMIT
) -> list[tuple[str, list[dict]]]:
    """(fallback text, blocks) for each message of an answer; feedback buttons on the last one."""
    parts = split_markdown(build_answer_body(answer, lang=lang), limit)
    out: list[tuple[str, list[dict]]] = []
    for i, part in enumerate(parts):
        blocks: list[dict] = [{"type": "markdown", "text": part}]
        if i == len(parts) - 1 and answer.kind in ("answer", "review", "clarify", "retrieval_only"):
            blocks.append(build_feedback_block(lang))
        out.append((build_fallback_text(part), blocks))
    return out


def build_fallback_text(markdown: str, limit: int = FALLBACK_LIMIT) -> str:
    text = to_mrkdwn(markdown)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def build_failure_message(*, internal: bool = False, lang: Lang = DEFAULT_LANG) -> tuple[str, list[dict]]:
    text = t("failure.internal" if internal else "failure.model", lang)
    return text, [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]


def build_progress_text(markdown: str) -> str:
    """A partial answer while it streams (update mode): the text so far and a cursor."""
    return markdown.rstrip() + " ▍"
