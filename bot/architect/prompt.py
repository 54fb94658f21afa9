"""Prompt assembly: pure builders from prompt files, turns and hits to the request's parts.

The request is laid out for prompt caching. The stable prefix comes first and is identical for
every question of every user: the `record_reply` tool, then the system prompt (the architect's
method, the review method, the team profile when one is configured), with one `cache_control`
mark on its last block. With no team profile the prompt says so and carries no team facts: the
bundled example profile is documentation, never sent.
After the mark come the parts that change: the thread's earlier turns (a second mark on the
last of them, so a long thread is read from the cache by its next follow-up) and, in the last
user turn, the retrieved passages as `search_result` blocks (citations on), short notes, and
the question. Passages are not marked: they change with every question.

Prompt files are markdown under `prompts/`; each starts with an HTML comment carrying
`version: N`, recorded in logs so an answer can be traced to the prompt that produced it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bot.architect.reply import TOOL_NAME, tool_schema
from bot.errors import ConfigError
from bot.redaction import redact_text
from bot.tokens import close_fences, estimate_tokens
from bot.types import Citation, Hit, Turn

Mode = Literal["chat", "review"]
CACHE_MARK = {"type": "ephemeral"}
# Retrieval assembles the passages within ARCHBOT_PASSAGE_TOKENS (bot/retrieval/assemble.py); this
# module only enforces that budget again (a hit list from elsewhere, e.g. a review, may be larger).
PASSAGE_TOKENS = 8000
BLOCK_TARGET_CHARS = 400  # citable unit inside a passage: paragraphs merged up to about this size
RECORD_EARLIER_TURNS = 4  # earlier user messages the record request repeats (not the earlier answers)
RECORD_EARLIER_CHARS = 600
THREAD_START = "(The thread starts with your earlier message, below.)"
NOTE_NAMES = (
    "no_profile",
    "passages",
    "no_passages",
    "just_answer",
    "continue",
    "language_zh",
    "review",
    "record",
    "record_sources",
    "record_earlier",
    "repair_invalid",
    "repair_missing",
)

_VERSION = re.compile(r"^\s*<!--(.*?)-->\s*\n?", re.DOTALL)
_NOTE_HEADING = re.compile(r"^## +(\w+)\s*$", re.MULTILINE)
_DIRECT = re.compile(
    r"\b(just|simply) (answer|tell me|give me)|answer (it )?anyway|\bno (more )?(clarifying )?questions"
    r"|skip the questions|stop asking|don'?t ask|without (any )?(more |further )?questions"
    r"|直接(回答|给|说)|别问|不要问",
    re.IGNORECASE,
)
# "continue" after an answer that stopped at the length limit (the answer offers it)
_CONTINUE = re.compile(
    r"^\W*(?:(?:please\s+)?(?:continue|go on|keep going)(?:\s+please)?|请?继续(?:写|说)?吧?|接着(?:说|写)?)\W*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class PromptFile:
    name: str
    version: str
    text: str


def load_prompt(path: Path) -> PromptFile:
    """A prompt file, without its leading version comment."""
    raw = path.read_text(encoding="utf-8")
    version = "unversioned"
    if match := _VERSION.match(raw):
        if found := re.search(r"version:\s*([\w.-]+)", match.group(1)):
            version = found.group(1)
        raw = raw[match.end() :]
    return PromptFile(name=path.stem, version=version, text=raw.strip())


def parse_notes(text: str) -> dict[str, str]:
    """`## name` sections of turn_notes.md → {name: text}."""
    parts = _NOTE_HEADING.split(text)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


@dataclass(frozen=True)
class Prompts:
    """Every prompt the architect sends, loaded once."""

    architect: PromptFile
    review: PromptFile
    record_reply: PromptFile
    notes: dict[str, str]
    team_profile: PromptFile | None

    @classmethod
    def load(cls, prompts_dir: Path, team_profile: Path | None) -> Prompts:
        if team_profile is not None and not team_profile.is_file():
            raise ConfigError("ARCHBOT_TEAM_PROFILE", f"file not found: {team_profile}")
        notes_file = load_prompt(prompts_dir / "turn_notes.md")
        notes = parse_notes(notes_file.text)
        missing = set(NOTE_NAMES) - set(notes)
        if missing:
            raise ConfigError("prompts/turn_notes.md", f"missing sections: {', '.join(sorted(missing))}")
        return cls(
            architect=load_prompt(prompts_dir / "architect.md"),
            review=load_prompt(prompts_dir / "review.md"),
            record_reply=load_prompt(prompts_dir / "record_reply.md"),
            notes=notes,
            team_profile=load_prompt(team_profile) if team_profile is not None else None,
        )

    @property
    def versions(self) -> dict[str, str]:
        files = (self.architect, self.review, self.record_reply, self.team_profile)
        return {f.name: f.version for f in files if f is not None}


# -- the stable prefix --------------------------------------------------------------------
def build_system(prompts: Prompts) -> list[dict[str, Any]]:
    """System blocks; the last carries the cache mark, so tools + system form the cached prefix."""
    if prompts.team_profile is not None:  # people wrote it: a credential in it is not sent (bot/redaction.py)
        profile = f"# The team you work with\n\n{redact_text(prompts.team_profile.text)}"
    else:
        profile = prompts.notes["no_profile"]
    return [
        {"type": "text", "text": prompts.architect.text},
        {"type": "text", "text": prompts.review.text},
        {"type": "text", "text": profile, "cache_control": CACHE_MARK},
    ]


def build_tools(prompts: Prompts) -> list[dict[str, Any]]:
    return [{"name": TOOL_NAME, "description": prompts.record_reply.text, "input_schema": tool_schema()}]


# -- passages -----------------------------------------------------------------------------
def _trim(text: str, max_tokens: int) -> str:
    """The text, cut at a paragraph or line boundary to fit `max_tokens`, with any open code fence closed."""
    text = text.strip()
    if estimate_tokens(text) <= max_tokens:
        return text
    limit = len(text)
    while limit > 0 and estimate_tokens(text[:limit]) > max_tokens - 4:
        limit = int(limit * 0.9)
    cut = text[:limit]
    for boundary in ("\n\n", "\n", ". ", "。", " "):
        at = cut.rfind(boundary)
        if at > limit // 2:
            cut = cut[: at + len(boundary)]
            break
    return close_fences(cut.rstrip() + " …") if cut.strip() else ""


def _citable_blocks(text: str) -> list[dict[str, str]]:
    """Split a passage into paragraph-sized text blocks (the unit a citation points at)."""
    pieces: list[str] = []
    current = ""
    in_code = False
    for paragraph in re.split(r"\n\s*\n", text):
        if current and len(current) >= BLOCK_TARGET_CHARS and not in_code:  # never split inside a fence
            pieces.append(current)
            current = paragraph
        else:
            current = f"{current}\n\n{paragraph}" if current else paragraph
        if paragraph.count("```") % 2 == 1:
            in_code = not in_code
    if current:
        pieces.append(current)
    return [{"type": "text", "text": p.strip()} for p in pieces if p.strip()]


def passage_label(hit: Hit) -> str:
    """A passage's heading path and what kind of doc it is: `Guide > Ports [current, 2025-11-03]`."""
    if hit.source == "knowledge":
        label = "pattern library: ours, not a team doc"
    else:
        label = hit.status + (f", {hit.date}" if hit.date else "")
    heading = hit.heading or hit.title
    return f"{heading} [{label}]" if heading else f"[{label}]"


def passage_title(hit: Hit) -> str:
    """Where a passage comes from, for the model: path, heading path, and what kind of doc it is.

    `docs/X.md › Guide > Ports [current, 2025-11-03]`; a pattern-library page reads
    `knowledge/saga.md › Saga [pattern library: ours, not a team doc]`.
    """
    where = f"knowledge/{hit.path}" if hit.source == "knowledge" else hit.path
    label = passage_label(hit)
    return f"{where} › {label}" if not label.startswith("[") else f"{where} {label}"


def build_search_results(
    hits: Sequence[Hit],
    *,
    budget_tokens: int = PASSAGE_TOKENS,
    max_chars: int | None = None,
    max_total: int | None = None,
) -> tuple[list[dict[str, Any]], list[Hit]]:
    """`search_result` blocks for the hits that fit the token budget, and those hits in the same order.

    The i-th block is the i-th returned hit, which is how a citation's `search_result_index`
    maps back to a path. Hits without text are skipped (an empty block is a 400). A hit larger
    than what is left of the budget is cut to fit when it is the first, else left out. Callers that
    size in characters instead (`max_chars` per passage, `max_total` in all) get those limits too.
    """
    blocks: list[dict[str, Any]] = []
    sent: list[Hit] = []
    total = 0
    total_chars = 0
    for hit in hits:
        left = budget_tokens - total
        text = (hit.text or hit.snippet or "").strip()
        if max_chars is not None and len(text) > max_chars:
            text = _trim(text, estimate_tokens(text[:max_chars]))
        if not sent:
            text = _trim(text, left)
        cost = estimate_tokens(text)
        if not text or cost > left or (max_total is not None and sent and total_chars + len(text) > max_total):
            continue
        total_chars += len(text)
        content = _citable_blocks(text)
        if not content:
            continue
        total += cost
        sent.append(hit)
        blocks.append(
            {
                "type": "search_result",
                "source": hit.ref,
                "title": passage_title(hit),
                "content": content,
                "citations": {"enabled": True},
            }
        )
    return blocks, sent


# -- the conversation ---------------------------------------------------------------------
def clean_turns(turns: Sequence[Turn]) -> list[Turn]:
    """Non-empty turns, consecutive same-role turns merged, starting with the user's."""
    merged: list[Turn] = []
    for turn in turns:
        text = (turn.text or "").strip()
        if not text:
            continue
        if merged and merged[-1].role == turn.role:
            merged[-1] = Turn(turn.role, f"{merged[-1].text}\n\n{text}")
        else:
            merged.append(Turn(turn.role, text))
    if not merged or merged[-1].role != "user":
        raise ValueError("the conversation must end with the user's message")
    if merged[0].role == "assistant":
        merged.insert(0, Turn("user", THREAD_START))
    return merged


def wants_direct_answer(turns: Sequence[Turn]) -> bool:
    """The asker's latest message says "just answer" (or the like)."""
    last = next((t for t in reversed(turns) if t.role == "user" and t.text.strip()), None)
    return bool(last and _DIRECT.search(last.text))


def wants_continuation(turns: Sequence[Turn]) -> bool:
    """The asker's latest message asks to continue the previous reply ("continue", "继续")."""
    clean = [t for t in turns if t.text.strip()]
    if len(clean) < 2 or clean[-1].role != "user" or not any(t.role == "assistant" for t in clean):
        return False
    text = clean[-1].text.strip()
    text = text.split(": ", 1)[-1] if ": " in text[:60] else text  # "Name: continue" as context writes it
    return bool(_CONTINUE.match(text))


def build_messages(
    turns: Sequence[Turn],
    results: list[dict[str, Any]],
    notes: dict[str, str],
    *,
    mode: Mode = "chat",
    direct: bool = False,
    lang: str = "en",
) -> list[dict[str, Any]]:
    """The messages array: earlier turns as plain text, the last user turn with passages and notes."""
    clean = clean_turns(turns)
    messages: list[dict[str, Any]] = [{"role": t.role, "content": t.text} for t in clean[:-1]]
    if messages:  # the thread so far: cached, so each follow-up pays full price only for the newest turns
        last_earlier = messages[-1]
        last_earlier["content"] = [{"type": "text", "text": last_earlier["content"], "cache_control": CACHE_MARK}]
    guidance = [notes["passages"] if results else notes["no_passages"]]
    if len(clean) > 1 and "thread" in notes:
        guidance.append(notes["thread"])  # other people's messages: context, never instructions
    if mode == "review":
        guidance.append(notes["review"])
    if direct and mode == "chat":
        guidance.append(notes["just_answer"])
    if mode == "chat" and wants_continuation(clean):
        guidance.append(notes["continue"])
    if lang == "zh":
        guidance.append(notes["language_zh"])
    last: list[dict[str, Any]] = [*results]
    last.append({"type": "text", "text": "\n\n".join(guidance)})
    last.append({"type": "text", "text": clean[-1].text})
    messages.append({"role": "user", "content": last})
    return messages


# -- the record request -------------------------------------------------------------------
def build_record_messages(
    turns: Sequence[Turn],
    answer_text: str,
    citations: Sequence[Citation],
    sent: Sequence[Hit],
    notes: dict[str, str],
) -> list[dict[str, Any]]:
    """The short conversation in which the model records the reply it just wrote.

    The record describes the reply, so it gets the reply (with its `[n]` markers), the question
    (after what people wrote earlier in the thread, without the earlier answers) and the list of
    passages by `source` and title, not the passages again: they changed with the question and
    the answer request's message cache cannot be read here (its `tool_choice` differs), so
    re-sending them would cost their full price a second time. The prefix (tools and system) is
    the same as the answer's and is read from the cache.
    """
    clean = clean_turns(turns)
    question = clean[-1].text
    if earlier := [t.text for t in clean[:-1] if t.role == "user" and t.text != THREAD_START][-RECORD_EARLIER_TURNS:]:
        # what people said earlier (short, unlike earlier answers): a decision may have been taken there
        said = "\n\n".join(_trim(text, RECORD_EARLIER_CHARS) for text in earlier)
        question = f"{notes['record_earlier']}\n\n{said}\n\n---\n\n{question}"
    listed = "\n".join(f"- `{hit.ref}` — {passage_label(hit)}" for hit in sent) or "- (none)"
    legend = "; ".join(f"[{c.number}] `{c.url or c.path}`" for c in citations if c.number)
    record_note = notes["record"] + (f"\n\nThe markers in your reply: {legend}." if legend else "")
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": f"{notes['record_sources']}\n{listed}"},
                {"type": "text", "text": question},
            ],
        },
        {"role": "assistant", "content": answer_text},
        {"role": "user", "content": record_note},
    ]
