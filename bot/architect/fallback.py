"""The answer without a model: the most relevant passages, clearly labelled as retrieval-only."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.architect.citations import hit_citation
from bot.i18n import Lang, detect_language, t
from bot.types import Answer, Hit

MAX_PASSAGES = 5
EXCERPT_CHARS = 280


def _excerpt(hit: Hit) -> str:
    text = hit.snippet or re.sub(r"[#>*`|]+", " ", hit.text or "")  # the snippet is clean already
    text = " ".join(text.split())
    if len(text) > EXCERPT_CHARS:
        text = text[:EXCERPT_CHARS].rsplit(" ", 1)[0] + " …"
    return text


def retrieval_only_answer(question: str, hits: Sequence[Hit], *, lang: Lang | None = None) -> Answer:
    """A labelled list of the top passages (heading, path, short excerpt), citing each, in the
    question's language (or `lang`)."""
    lang = lang or detect_language(question)
    top = list(hits)[:MAX_PASSAGES]
    if not top:
        text = f"**{t('retrieval.heading', lang)}** {t('retrieval.nothing', lang)}"
        gaps = [question.strip()[:200]] if question.strip() else []
        return Answer(kind="retrieval_only", text=text, gaps=gaps, confidence="low")
    lines = [f"**{t('retrieval.heading', lang)}** {t('retrieval.label', lang)}", ""]
    for n, hit in enumerate(top, 1):
        heading = hit.heading or hit.title or hit.path
        where = f"[{hit.path}]({hit.url})" if hit.url else f"`{hit.path}`"
        lines.append(f"{n}. **{heading}** — {where} ({hit.source})")
        excerpt = _excerpt(hit)
        if excerpt:
            lines.append(f"   > {excerpt}")
    lines += ["", t("retrieval.footer", lang)]
    return Answer(
        kind="retrieval_only",
        text="\n".join(lines),
        citations=[hit_citation(h) for h in top],
        confidence="low",
    )
