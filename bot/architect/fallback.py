"""The answer without a model: the most relevant passages, clearly labelled as retrieval-only."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.types import Answer, Citation, Hit

NO_MODEL = "No model configured (ANTHROPIC_API_KEY unset)"
RETRIEVAL_ONLY_LABEL = f"{NO_MODEL}: here are the most relevant passages"
MAX_PASSAGES = 5
EXCERPT_CHARS = 280


def _excerpt(hit: Hit) -> str:
    text = hit.snippet or re.sub(r"[#>*`|]+", " ", hit.text or "")  # the snippet is clean already
    text = " ".join(text.split())
    if len(text) > EXCERPT_CHARS:
        text = text[:EXCERPT_CHARS].rsplit(" ", 1)[0] + " …"
    return text


def hit_citation(hit: Hit, cited_text: str = "") -> Citation:
    return Citation(path=hit.path, source=hit.source, heading=hit.heading, url=hit.url, cited_text=cited_text)


def retrieval_only_answer(question: str, hits: Sequence[Hit]) -> Answer:
    """A labelled list of the top passages (heading, path, short excerpt), citing each."""
    top = list(hits)[:MAX_PASSAGES]
    if not top:
        text = (
            f"**Retrieval-only answer.** {NO_MODEL}, and no passage "
            "in the team docs or the pattern library matched this question. Try other words, or set "
            "ANTHROPIC_API_KEY for a written answer."
        )
        gaps = [question.strip()[:200]] if question.strip() else []
        return Answer(kind="retrieval_only", text=text, gaps=gaps, confidence="low")
    lines = [f"**Retrieval-only answer.** {RETRIEVAL_ONLY_LABEL} for this question:", ""]
    for n, hit in enumerate(top, 1):
        heading = hit.heading or hit.title or hit.path
        where = f"[{hit.path}]({hit.url})" if hit.url else f"`{hit.path}`"
        lines.append(f"{n}. **{heading}** — {where} ({hit.source})")
        excerpt = _excerpt(hit)
        if excerpt:
            lines.append(f"   > {excerpt}")
    lines += ["", "Set ANTHROPIC_API_KEY to get a written, cited answer."]
    return Answer(
        kind="retrieval_only",
        text="\n".join(lines),
        citations=[hit_citation(h) for h in top],
        confidence="low",
    )
