"""The output neutraliser: archbot pings, mentions and hides link targets only when it means to.

Text archbot writes to Slack mixes what the bot composed (a mention of the asker, a link to a
cited doc) with text it does not control: the model's answer, doc passages, thread messages,
digest summaries. The latter can carry Slack's active syntax, by accident or by prompt
injection: `<!channel>`, `<!here>`, `<!everyone>`, `<!subteam^…>`, `<@U…>`, `<#C…>`, links whose
label hides their target (`<https://evil|the runbook>`, `[the runbook](https://evil)`), markdown
links whose target is Slack syntax (`[team](!channel)`), and plain `@here` that Slack may
linkify itself. `bot/slack/post.py` runs every payload through these functions right before it
goes out, in the format of each field:

- `neutralise_mrkdwn`: message `text`, `mrkdwn` text objects. Slack parses `<…>` here, so any `<`
  that does not open an allowed token becomes `&lt;` (Slack's own escape, shown as `<`).
- `neutralise_markdown`: `markdown` blocks and streamed `markdown_text`. Slack converts these
  itself and does not document what survives, so a word joiner (U+2060, invisible) goes between
  `<` and `!`/`@`/`#`: no parser can read a token there, and code samples keep their look.
- `neutralise_plain`: `plain_text` objects and other plain strings (status, prompt titles).

A link whose label is not its URL becomes `label (<url>)`: still a link, with the target in
sight. `@channel`, `@here` and `@everyone` get a word joiner after the `@`.

Bot-composed syntax passes only when marked with the per-process `TRUST` mark, which the
helpers below add (`mention_user`, `mention_channel`, `slack_date`, `trusted_label`). The mark is
random per process and is stripped from everything sent, so neither Slack, the model nor a doc
ever sees it, and text that does not come from the bot cannot carry it. Broadcasts and
user-group mentions never pass, marked or not: archbot has no reason to send one.

Each of the three also redacts credentials first (`bot/redaction.py`): whatever the model, a doc
or a thread repeats, Slack shows `[redacted: kind]` in place of a password, key or token.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from bot.redaction import redact_text

_OPEN, _CLOSE = "\ue000", "\ue001"
TRUST = f"{_OPEN}{secrets.token_hex(8)}{_CLOSE}"
WORD_JOINER = "\u2060"

_USER_ID = re.compile(r"[UW][A-Z0-9]+")
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]+")
# What a TRUST-marked `<…>` may hold: one user, one channel, a date. Never `!here` and friends.
_TRUSTED_TOKEN = re.compile(r"@[UW][A-Z0-9]+|#[CGD][A-Z0-9]+|!date\^\d+\^[^|<>]*\|[^<>]*")
_SAFE_URL = re.compile(r"(?:https?://|mailto:)[^\s<>|]+", re.IGNORECASE)
_BROADCAST_WORD = re.compile(r"([@＠])(?=(?:channel|here|everyone)\b)", re.IGNORECASE)
_ANGLE = re.compile(r"<([^<>\n]*)>")
# `<` (or an entity for it) followed by what Slack reads as a special token
_ANGLE_ACTIVE = re.compile(r"(<|&lt;|&#0*60;|&#x0*3c;)([ \t]*)(?=[!@#])", re.IGNORECASE)
_REF_DEFINITION = re.compile(r"^( {0,3}\[[^\]\n]+\])(?=:)", re.MULTILINE)
_BARE_URL = re.compile(r"https?://(?:(?!&[lg]t;)[^\s<>|\"`])+", re.IGNORECASE)
_MRKDWN_SKIP = re.compile(r"```.*?(?:```|$)|`[^`\n]*`|<[^<>\n]*>", re.DOTALL)
_TRAILING_PUNCT = ".,;:!?)]}'\"*_~"


# -- bot-composed syntax ------------------------------------------------------------------
def mention_user(user_id: str) -> str:
    """`<@U…>` that the neutraliser lets through (for the asker, the bot itself)."""
    return f"{TRUST}<@{user_id}>" if _USER_ID.fullmatch(user_id or "") else "someone"


def mention_channel(channel_id: str) -> str:
    """`<#C…>` that the neutraliser lets through."""
    return f"{TRUST}<#{channel_id}>" if _CHANNEL_ID.fullmatch(channel_id or "") else "this channel"


def slack_date(ts: int, fmt: str, fallback: str) -> str:
    """`<!date^…>` (a date shown in the reader's timezone) that the neutraliser lets through."""
    return f"{TRUST}<!date^{int(ts)}^{fmt}|{fallback.replace('|', ' ')}>"


def trusted_label(label: str) -> str:
    """Mark a link label the bot composed (`[label](url)` or `<url|label>`): it may differ from its URL."""
    return f"{TRUST}{label}"


def strip_marks(text: str) -> str:
    return text.replace(TRUST, "").replace(_OPEN, "").replace(_CLOSE, "")


# -- shared pieces ------------------------------------------------------------------------
def _defuse_broadcast_words(text: str) -> str:
    return _BROADCAST_WORD.sub(lambda m: m.group(1) + WORD_JOINER, text)


def _same_target(label: str, url: str) -> bool:
    """True when the label shows the link's target (the URL, with or without its scheme)."""

    def norm(s: str) -> str:
        s = s.strip().replace("&amp;", "&").strip("<>").lower()
        s = re.sub(r"^(?:https?://|mailto:)", "", s)
        return s.rstrip("/")

    return bool(label.strip()) and norm(label) == norm(url)


# -- mrkdwn -------------------------------------------------------------------------------
def _mrkdwn_text(text: str) -> str:
    """Plain stretches of mrkdwn: no `<` opens anything, no broadcast word."""
    return _defuse_broadcast_words(text.replace("<", "&lt;"))


def _linkify_bare_urls(text: str) -> str:
    """Bare URLs as explicit `<url>` links (verbatim text objects do not auto-link), outside code and tokens."""

    def link(m: re.Match[str]) -> str:
        url, tail = m.group(0), ""
        while url and url[-1] in _TRAILING_PUNCT:
            url, tail = url[:-1], url[-1] + tail
        return f"<{url}>{tail}" if len(url) > len("https://") else m.group(0)

    out: list[str] = []
    pos = 0
    for m in _MRKDWN_SKIP.finditer(text):
        out.append(_BARE_URL.sub(link, text[pos : m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(_BARE_URL.sub(link, text[pos:]))
    return "".join(out)


def _mrkdwn_token(content: str, trusted: bool) -> str:
    escaped = "&lt;" + _defuse_broadcast_words(content.replace(TRUST, "")) + "&gt;"
    if content[:1] in "@#!":
        return f"<{content}>" if trusted and _TRUSTED_TOKEN.fullmatch(content) else escaped
    url, sep, label = content.partition("|")
    if not _SAFE_URL.fullmatch(url):
        return escaped
    if not sep or not label.replace(TRUST, "").strip():
        return f"<{url}>"
    trusted = trusted or label.startswith(TRUST)
    label = strip_marks(label)
    shown = _defuse_broadcast_words(label)
    if trusted:
        return f"<{url}|{shown}>"
    if _same_target(label, url):
        return f"<{url}>"
    return f"{shown} (<{url}>)"


def neutralise_mrkdwn(text: str) -> str:
    """Slack mrkdwn with only bot-marked mentions and with every link target visible."""
    if not text:
        return text
    text = redact_text(text)
    out: list[str] = []
    pos = 0
    for m in _ANGLE.finditer(text):
        before = text[pos : m.start()]
        trusted = before.endswith(TRUST)
        if trusted:
            before = before[: -len(TRUST)]
        out.append(_mrkdwn_text(strip_marks(before)))
        out.append(_mrkdwn_token(m.group(1), trusted))
        pos = m.end()
    out.append(_mrkdwn_text(strip_marks(text[pos:])))
    return _linkify_bare_urls(strip_marks("".join(out)))


# -- standard markdown (markdown blocks, streamed markdown_text) ----------------------------
def _code_ranges(text: str) -> list[tuple[int, int]]:
    """Spans of fenced code blocks and inline code (same line), where links are left alone."""
    ranges: list[tuple[int, int]] = []
    fence: str | None = None
    fence_start = 0
    pos = 0
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip(" ")
        marker = re.match(r"(`{3,}|~{3,})", stripped)
        if fence is None and marker and len(line) - len(stripped) < 4:
            fence, fence_start = marker.group(1), pos
        elif fence is not None:
            if marker and marker.group(1)[0] == fence[0] and len(marker.group(1)) >= len(fence):
                ranges.append((fence_start, pos + len(line)))
                fence = None
        else:
            runs = list(re.finditer(r"`+", line))
            i = 0
            while i < len(runs):
                j = next((k for k in range(i + 1, len(runs)) if runs[k].group(0) == runs[i].group(0)), None)
                if j is None:
                    i += 1
                    continue
                ranges.append((pos + runs[i].start(), pos + runs[j].end()))
                i = j + 1
        pos += len(line)
    if fence is not None:
        ranges.append((fence_start, len(text)))
    return ranges


def _in_ranges(i: int, ranges: list[tuple[int, int]]) -> bool:
    return any(a <= i < b for a, b in ranges)


def _link_end(text: str, start: int) -> tuple[int, str] | None:
    """Given the index just after `](`, the end of the link and its destination (None: not a link)."""
    n = len(text)
    i = start
    while i < n and text[i] in " \t":
        i += 1
    if i < n and text[i] == "<":
        close = text.find(">", i)
        if close < 0 or "\n" in text[i:close]:
            return None
        dest = text[i + 1 : close]
        i = close + 1
    else:
        depth = 0
        j = i
        while j < n and not text[j].isspace():
            ch = text[j]
            if ch == "\\" and j + 1 < n:
                j += 2
                continue
            if ch == "(":
                depth += 1
            elif ch == ")":
                if depth == 0:
                    break
                depth -= 1
            j += 1
        dest = text[i:j]
        i = j
    while i < n and text[i] in " \t":
        i += 1
    if i < n and text[i] in "\"'(":
        closer = ")" if text[i] == "(" else text[i]
        close = text.find(closer, i + 1)
        if close < 0:
            return None
        i = close + 1
        while i < n and text[i] in " \t":
            i += 1
    if i < n and text[i] == ")":
        return i + 1, dest
    return None


def _label_start(text: str, close: int) -> int | None:
    """Index of the `[` matching the `]` at `close` (same paragraph), None when there is none."""
    depth = 0
    i = close - 1
    while i >= 0:
        ch = text[i]
        if ch == "\n" and i > 0 and text[i - 1] == "\n":
            return None
        if ch == "]" and (i == 0 or text[i - 1] != "\\"):
            depth += 1
        elif ch == "[" and (i == 0 or text[i - 1] != "\\"):
            if depth == 0:
                return i
            depth -= 1
        i -= 1
    return None


def _rewrite_links(text: str) -> str:
    code = _code_ranges(text)
    out: list[str] = []
    pos = 0
    search = 0
    while True:
        k = text.find("](", search)
        if k < 0:
            break
        search = k + 2
        if _in_ranges(k, code):
            continue
        start = _label_start(text, k)
        end = _link_end(text, k + 2)
        if start is None or end is None or start < pos:
            continue
        stop, dest = end
        if start > 0 and text[start - 1] == "!":
            start -= 1
        label = text[start + (2 if text[start] == "!" else 1) : k]
        trusted = label.startswith(TRUST)
        plain_label = strip_marks(label)
        if _SAFE_URL.fullmatch(dest) and (trusted or _same_target(plain_label, dest)):
            replacement = f"[{TRUST}{plain_label}]({dest})" if trusted else f"<{dest}>"  # marks go at the end
        elif _SAFE_URL.fullmatch(dest):
            replacement = f"{plain_label} (<{dest}>)" if plain_label.strip() else f"<{dest}>"
        else:
            replacement = f"{plain_label} ({dest})" if plain_label.strip() else dest
        out.append(text[pos:start])
        out.append(replacement)
        pos = search = stop
    out.append(text[pos:])
    return "".join(out)


def _markdown_angles(text: str) -> str:
    """`<url|label>` shows its URL; other `<!…>`, `<@…>`, `<#…>` get broken by a word joiner."""

    def token(m: re.Match[str]) -> str:
        content = m.group(1)
        start = m.start()
        trusted = text[max(0, start - len(TRUST)) : start] == TRUST
        if content[:1] in "@#!" and trusted and _TRUSTED_TOKEN.fullmatch(content):
            return f"<{content}>"
        url, sep, label = content.partition("|")
        if sep and _SAFE_URL.fullmatch(url):
            label = strip_marks(label)
            if not label.strip() or _same_target(label, url):
                return f"<{url}>"
            return f"{label} (<{url}>)"
        return m.group(0)

    text = _ANGLE.sub(token, text)
    # A word joiner after every `<` (or `&lt;`) that precedes `!`, `@` or `#`, except the kept ones.
    kept = {m.start() for m in _ANGLE.finditer(text) if text[max(0, m.start() - len(TRUST)) : m.start()] == TRUST}
    return _ANGLE_ACTIVE.sub(lambda m: m.group(0) if m.start() in kept else m.group(1) + WORD_JOINER + m.group(2), text)


def neutralise_markdown(text: str) -> str:
    """Standard markdown with no live Slack token, no hidden link target, no broadcast word."""
    if not text:
        return text
    text = redact_text(text)
    for _ in range(4):  # nested links unwrap one level per pass
        rewritten = _rewrite_links(text)
        if rewritten == text:
            break
        text = rewritten
    text = _markdown_angles(text)
    text = _REF_DEFINITION.sub(lambda m: m.group(1) + WORD_JOINER, text)
    text = _defuse_broadcast_words(text)
    return strip_marks(text)


def stable_markdown_prefix(text: str) -> str:
    """The part of a growing markdown text whose neutralised form will not change as text arrives.

    Streaming sends deltas, so a link or token must be complete before it is shown: this cuts at
    the last space, and before an unclosed `[…](…)`, `<url|…>` or inline code run on the last line.
    """
    cut = max(text.rfind(" "), text.rfind("\n"))
    if cut < 0:
        return ""
    line_start = text.rfind("\n", 0, cut) + 1
    line = text[line_start:cut]
    candidates = [cut]
    at = line.rfind("[")
    if at >= 0:
        rest = line[at:]
        link = rest.find("](")
        if "]" not in rest or rest.endswith("]") or (link >= 0 and ")" not in rest[link:]):
            candidates.append(line_start + at)
    at = line.rfind("<")
    if at >= 0 and re.fullmatch(r"<(?:https?://|mailto:)[^\s<>|]*\|[^<>]*", line[at:], re.IGNORECASE):
        candidates.append(line_start + at)  # `<url|label` may still become a link that hides its URL
    if not line.lstrip().startswith(("```", "~~~")) and len(re.findall(r"`+", line)) % 2:
        candidates.append(line_start + line.rfind("`"))
    return text[: min(candidates)]


# -- plain text and whole payloads --------------------------------------------------------
def neutralise_plain(text: str) -> str:
    """Text Slack shows as is (plain_text objects, statuses): defused in case it is ever parsed."""
    if not text:
        return text
    text = redact_text(text)
    text = _ANGLE_ACTIVE.sub(lambda m: m.group(1) + WORD_JOINER + m.group(2), strip_marks(text))
    return _defuse_broadcast_words(text)


_RICH_MENTIONS = {"user", "usergroup", "broadcast", "channel"}


def _neutralise_node(node: Any) -> Any:
    if isinstance(node, list):
        return [_neutralise_node(n) for n in node]
    if not isinstance(node, dict):
        return node
    kind = node.get("type")
    if kind in _RICH_MENTIONS and "elements" not in node:
        # rich_text mention elements: the bot composes none, so none is sent
        label = node.get("range") or node.get("user_id") or node.get("usergroup_id") or node.get("channel_id") or ""
        return {"type": "text", "text": neutralise_plain(f"@{label}")}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "text" and isinstance(value, str):
            if kind == "markdown" or kind == "markdown_text":
                out[key] = neutralise_markdown(value)
            elif kind == "mrkdwn":
                out[key] = neutralise_mrkdwn(value)
            else:
                out[key] = neutralise_plain(value)
        elif key in ("title", "details", "output", "placeholder", "description") and isinstance(value, str):
            out[key] = neutralise_plain(value)
        else:
            out[key] = _neutralise_node(value)
    if kind == "mrkdwn":
        out["verbatim"] = True  # no auto-parsing of plain `@name` or `#channel` words
    link_text = out.get("text") if kind == "link" and "url" in out else None
    if isinstance(link_text, str) and not _same_target(link_text, str(out["url"])):
        out.pop("text")  # a rich_text link shows its URL
    return out


def neutralise_blocks(blocks: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Block Kit blocks (message, modal, home): each text object neutralised in its own format."""
    if blocks is None:
        return None
    return _neutralise_node(blocks)


def neutralise_view(view: dict[str, Any]) -> dict[str, Any]:
    """A modal or home view: titles, blocks, labels, placeholders."""
    return _neutralise_node(view)


def neutralise_chunks(chunks: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Streaming chunks (`markdown_text`, task updates)."""
    if chunks is None:
        return None
    return _neutralise_node(chunks)
