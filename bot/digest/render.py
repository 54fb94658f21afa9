"""Stage 3: the digest as markdown (the CLI) or as Slack messages (the post). Pure.

Slack limits are respected: section text ≤ 3000 characters, ≤ 50 blocks and a short `text`
fallback per message; a digest too long for one message becomes a parent message (title,
summary, numbers) with the detailed sections as replies in its thread. Headings and labels come
from the catalogue (`bot.i18n`) in the digest's language (`ARCHBOT_LANGUAGE`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.digest.data import MAX_ITEMS, OTHER_TOPIC, DigestData, format_range, listing
from bot.i18n import Lang, t

SECTION_LIMIT = 3000  # Slack: a section block's text
MAX_BLOCKS = 50  # Slack: blocks per message
TEXT_LIMIT = 40_000  # Slack: `text` per message
MESSAGE_CHARS = 11_000  # our own cap per message, so a digest reads without "show more" walls
FALLBACK_CHARS = 300  # notification text

SKIP_REASONS = ("deleted", "channel_left", "channel_check_failed", "unverified", "permalink_failed")


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~#])")


def md_escape(text: str) -> str:
    """Escape user text so it shows literally in markdown (and, converted, in Slack mrkdwn)."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def _md_link(label: str, url: str | None) -> str:
    if not url:
        return label
    from bot.slack.neutralise import trusted_label
    from bot.slack.render import citation_url
    from bot.types import Citation

    safe = citation_url(Citation(path="", source="", url=url)) or url
    return f"[{trusted_label(label)}]({safe})"  # a bot-composed link: its label may stand in for the URL


@dataclass
class Section:
    title: str
    lines: list[str]  # markdown, one item per line
    detail: bool = True  # False: stays in the parent message when the digest is split


def _count(n: int, noun: str, lang: Lang) -> str:
    """`1 thread`, `2 threads`: the catalogue's `digest.<noun>_one` / `_many`."""
    return t(f"digest.{noun}_{'one' if n == 1 else 'many'}", lang, n=n)


def _more(total: int, lang: Lang) -> list[str]:
    return [t("digest.more", lang, n=total - MAX_ITEMS)] if total > MAX_ITEMS else []


def _skip_label(reason: str, n: int, lang: Lang) -> str:
    return _count(n, f"skip_{reason}", lang) if reason in SKIP_REASONS else f"{n} {reason}"


def build_sections(data: DigestData) -> list[Section]:
    """The digest as titled markdown sections (shared by the markdown print and the Slack post)."""
    lang = data.lang
    sections: list[Section] = []
    if data.summary:
        sections.append(Section(t("digest.this_week", lang), data.summary.splitlines(), detail=False))
    n = data.numbers
    latency = (
        "–"
        if n.median_latency_ms is None
        else (f"{n.median_latency_ms / 1000:.1f} s" if n.median_latency_ms >= 1000 else f"{n.median_latency_ms:.0f} ms")
    )
    cost = f"{'~' if n.cost_estimated else ''}${n.cost_usd:.2f}"
    sections.append(
        Section(
            t("digest.numbers", lang),
            [
                t(
                    "digest.questions_line",
                    lang,
                    questions=n.questions,
                    threads=_count(n.threads, "thread", lang),
                    answered=n.answered,
                    clarifications=_count(n.clarifications, "clarification", lang),
                    failures=n.failures,
                ),
                t("digest.latency_line", lang, latency=latency),
                t("digest.feedback_line", lang, up=n.thumbs_up, down=n.thumbs_down),
                t("digest.tokens_line", lang, tokens=f"{n.tokens:,}", cost=cost),
            ],
            detail=False,
        )
    )
    if data.topics:
        lines: list[str] = []
        shown, left_threads, left_topics = listing(data.topics)
        for topic, items, more in shown:
            if lines:
                lines.append("")  # a blank line, so the heading does not continue the list above
            name = t("digest.other_topic", lang) if topic == OTHER_TOPIC else topic
            lines.append(f"**{md_escape(name)}** ({len(items) + more})")
            lines.extend(f"- {_md_link(md_escape(item.line), item.permalink)}" for item in items)
            if more:
                lines.append(t("digest.more", lang, n=more))
        if left_threads:
            threads, topics = _count(left_threads, "thread", lang), _count(left_topics, "topic", lang)
            lines += ["", t("digest.more_threads", lang, threads=threads, topics=topics)]
        sections.append(Section(t("digest.threads_answered", lang), lines))
    if data.decisions:
        lines = [
            f"- {_md_link(md_escape(d.text), d.permalink)}" + (f" _({d.note})_" if d.note else "")
            for d in data.decisions[:MAX_ITEMS]
        ]
        sections.append(Section(t("digest.decisions", lang), lines + _more(len(data.decisions), lang)))
    if data.open_questions:
        lines = [f"- {_md_link(md_escape(o.text), o.permalink)} _({o.note})_" for o in data.open_questions[:MAX_ITEMS]]
        sections.append(Section(t("digest.open_questions", lang), lines + _more(len(data.open_questions), lang)))
    if data.gaps:
        lines = []
        for g in data.gaps[:MAX_ITEMS]:
            label = t("digest.conflict" if g.kind == "conflict" else "digest.gap", lang)
            files = ", ".join(f"`{f}`" for f in g.files) if g.files else t("digest.no_document", lang)
            description = _md_link(md_escape(g.description), g.permalink)
            lines.append(t("digest.gap_line", lang, label=label, description=description, files=files))
        sections.append(Section(t("digest.gaps", lang), lines + _more(len(data.gaps), lang)))
    if data.top_docs:
        sections.append(
            Section(
                t("digest.top_docs", lang),
                [f"- {_md_link(md_escape(d.label), d.url)} ({d.count})" for d in data.top_docs],
            )
        )
    return sections


def build_footer(data: DigestData) -> str:
    lang = data.lang
    parts: list[str] = []
    if data.skipped:
        skipped = ", ".join(_skip_label(reason, n, lang) for reason, n in sorted(data.skipped.items()))
        parts.append(t("digest.skipped", lang, items=skipped))
    if data.private_left_out:
        parts.append(t("digest.private_left_out", lang, n=data.private_left_out))
    if data.summary:
        parts.append(t("digest.summary_by_model", lang))
    elif data.summary_failed:
        parts.append(t("digest.summary_failed", lang))
    return " ".join(parts)


def title(data: DigestData) -> str:
    return t("digest.title", data.lang, range=format_range(data.since, data.until, data.lang))


def render_markdown(data: DigestData) -> str:
    """The digest as one markdown document (for `archbot digest --dry-run`)."""
    out = [f"# {title(data)}", ""]
    if data.empty:
        out += [t("digest.empty", data.lang), ""]
    for s in build_sections(data):
        out += [f"## {s.title}", "", *s.lines, ""]
    footer = build_footer(data)
    if footer:
        out += ["---", f"_{footer}_", ""]
    from bot.slack.neutralise import strip_marks

    return strip_marks("\n".join(out).rstrip() + "\n")


@dataclass
class SlackMessage:
    text: str
    blocks: list[dict[str, Any]]


def _chunks(mrkdwn: str, limit: int = SECTION_LIMIT) -> list[str]:
    """Split on line boundaries into pieces of at most `limit` characters."""
    pieces: list[str] = []
    current = ""
    for line in mrkdwn.split("\n"):
        while len(line) > limit:  # a single overlong line: cut it
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[: limit - 1] + "…")
            line = ""
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            pieces.append(current)
            current = line
        else:
            current = candidate
    if current.strip():
        pieces.append(current)
    return [p for p in pieces if p.strip()]


_GROUP_HEADING = re.compile(r"^(\*[^\n]+\* \(\d+\))\n\n", re.MULTILINE)


def _section_blocks(section: Section) -> list[dict[str, Any]]:
    from bot.slack.render import to_mrkdwn

    body = to_mrkdwn("\n".join(section.lines)).strip("\n")
    body = _GROUP_HEADING.sub(r"\1\n", body)  # a topic's heading sits right above its threads
    text = f"*{section.title}*\n{body}"
    return [{"type": "section", "text": {"type": "mrkdwn", "text": piece}} for piece in _chunks(text)]


def _size(blocks: list[dict[str, Any]]) -> int:
    total = 0
    for b in blocks:
        text = b.get("text")
        if isinstance(text, dict):
            total += len(text.get("text", ""))
        for element in b.get("elements", []) or []:
            total += len(element.get("text", "")) if isinstance(element, dict) else 0
    return total


def _fallback(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= FALLBACK_CHARS else text[: FALLBACK_CHARS - 1] + "…"


def render_slack_messages(data: DigestData) -> list[SlackMessage]:
    """The digest as Slack messages: one when it fits, else a parent and its thread replies."""
    head = title(data)
    header: dict[str, Any] = {"type": "header", "text": {"type": "plain_text", "text": head[:150], "emoji": True}}
    sections = build_sections(data)
    footer_text = build_footer(data)
    footer: list[dict[str, Any]] = (
        [{"type": "context", "elements": [{"type": "mrkdwn", "text": footer_text[:3000]}]}] if footer_text else []
    )
    empty: list[dict[str, Any]] = (
        [{"type": "section", "text": {"type": "mrkdwn", "text": t("digest.empty", data.lang)}}] if data.empty else []
    )
    n = data.numbers
    summary_line = t("digest.summary_line", data.lang, title=head, questions=n.questions, gaps=len(data.gaps))

    every: list[dict[str, Any]] = [header, *empty]
    for s in sections:
        every += _section_blocks(s)
    every += footer
    if len(every) <= MAX_BLOCKS and _size(every) <= MESSAGE_CHARS:
        return [SlackMessage(text=_fallback(summary_line), blocks=every)]

    parent: list[dict[str, Any]] = [header, *empty]
    for s in sections:
        if not s.detail:
            parent += _section_blocks(s)
    details = t("digest.details_in_thread", data.lang)
    parent.append({"type": "context", "elements": [{"type": "mrkdwn", "text": details}]})
    parent += footer
    messages = [SlackMessage(text=_fallback(summary_line), blocks=parent[:MAX_BLOCKS])]
    current: list[dict[str, Any]] = []
    for s in sections:
        if not s.detail:
            continue
        for block in _section_blocks(s):
            if current and (len(current) + 1 > MAX_BLOCKS or _size(current) + _size([block]) > MESSAGE_CHARS):
                messages.append(SlackMessage(text="", blocks=current))
                current = []
            current.append(block)
    if current:
        messages.append(SlackMessage(text="", blocks=current))
    total = len(messages) - 1
    for i, m in enumerate(messages[1:], start=1):
        m.text = _fallback(t("digest.part", data.lang, title=head, i=i, n=total))
    return messages
