"""Drafting end to end: index, extract, (optionally) have the model write it, check the citations."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass

import anthropic
import httpx2

from bot.config import Settings
from bot.errors import ConfigError
from bot.profile.docs import load_docs
from bot.profile.extract import extract_profile
from bot.profile.render import HEADER, render_profile

log = logging.getLogger(__name__)
_CITED = re.compile(r"`([^`\s]+)`")


@dataclass
class Draft:
    markdown: str
    docs: int  # team docs read
    services: int  # services listed (extractive count)
    lines: int  # bullet lines
    cited_lines: int  # bullet lines citing at least one indexed doc path
    how: str  # "extractive" or "model"
    seconds: float
    fallback_reason: str = ""  # why the model's draft was not used, when it was asked for


def count_cited(markdown: str, known: set[str]) -> tuple[int, int]:
    """(bullet lines citing at least one indexed path, bullet lines)."""
    bullets = [line for line in markdown.splitlines() if line.lstrip().startswith(("- ", "* "))]
    cited = [line for line in bullets if any(p in known for p in _CITED.findall(line))]
    return len(cited), len(bullets)


def draft_profile(settings: Settings, *, use_model: bool = True) -> Draft:
    """The draft for the docs in ARCHBOT_DOCS (indexed first, incrementally). Raises ConfigError without docs."""
    from bot.retrieval import Searcher, index_sources

    started = time.perf_counter()
    if settings.docs:
        index_sources(settings)
    docs = load_docs(settings.db_path)
    if not docs:
        raise ConfigError("ARCHBOT_DOCS", "no team docs are indexed: set ARCHBOT_DOCS (or run `archbot index PATH`)")
    known = {d.path for d in docs}
    profile = extract_profile(docs)
    extractive = render_profile(profile, how="extractive, no model")
    markdown, how, reason = extractive, "extractive", ""
    if use_model and settings.has_model:
        from bot.profile.model import check_lines, gather_passages, write_with_model

        searcher = Searcher(settings.db_path, docs_url=None)
        try:
            hits = gather_passages(searcher, profile)
        finally:
            searcher.close()
        try:
            body = asyncio.run(write_with_model(settings, hits, extractive))
        except (anthropic.APIError, httpx2.TransportError) as exc:
            reason = f"the model call failed ({type(exc).__name__}); this is the extractive draft"
            log.warning("profile draft: model call failed", extra={"error": type(exc).__name__})
        else:
            if body.strip():
                checked, _, _ = check_lines(body, known)
                intro = (
                    f"> Written by {settings.model} from {len(hits)} passages of {len(docs)} indexed docs "
                    "(`archbot profile draft`). Each line ends with the docs it rests on; lines marked "
                    "as citing no indexed doc need checking first."
                )
                markdown = "\n".join([HEADER, "# Team profile", "", intro, "", checked])
                how = "model"
            else:
                reason = "the model returned no text; this is the extractive draft"
    cited, lines = count_cited(markdown, known)
    return Draft(
        markdown=markdown,
        docs=len(docs),
        services=len(profile.services),
        lines=lines,
        cited_lines=cited,
        how=how,
        seconds=time.perf_counter() - started,
        fallback_reason=reason,
    )
