"""The model's draft: retrieved passages (cited) plus the extractive draft → a written profile.

One non-streamed request. Passages go as `search_result` blocks, as for answers, so the model
can only cite what the index holds; the extractive draft goes with them as a starting point.
Every bullet line of the reply is then checked: backticked paths that are not indexed docs are
flagged, and a line that cites no real doc is marked for the reviewer rather than silently kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from bot.architect.client import build_anthropic_client
from bot.architect.prompt import build_search_results, load_prompt
from bot.config import PROMPTS_DIR, Settings
from bot.profile.extract import Profile
from bot.retrieval.search import Searcher
from bot.types import Hit

PROFILE_PROMPT = "profile_draft.md"
MAX_TOKENS = 4096
PASSAGES_PER_QUERY = 4
MAX_PASSAGE_CHARS = 1500
MAX_TOTAL_CHARS = 60_000
QUERIES = (
    "services overview ports responsibilities",
    "RabbitMQ exchange routing key event naming convention",
    "dead letter exchange DLX retry consumer",
    "database per service PostgreSQL Redis datastore",
    "shared library common module",
    "PM2 cluster instances deployment",
    "Consul service discovery API gateway",
    "CQRS event sourcing saga outbox patterns",
    "architecture audit review missing problems technical debt",
)
UNSOURCED = " — _(no indexed doc cited: verify or delete)_"
_PATH = re.compile(r"`([^`\s]+\.[A-Za-z0-9]+)`")


def gather_passages(searcher: Searcher, profile: Profile) -> list[Hit]:
    """Passages for each section and for each service found, deduplicated, within a budget."""
    queries = [*QUERIES, *(f"{s.name} README responsibilities port" for s in profile.services[:16])]
    seen: set[tuple[str, str]] = set()
    hits: list[Hit] = []
    for query in queries:
        for hit in searcher.search(query, PASSAGES_PER_QUERY):
            if hit.source == "knowledge" or (hit.path, hit.heading) in seen:
                continue
            seen.add((hit.path, hit.heading))
            hits.append(hit)
    return hits


def check_lines(text: str, known: set[str]) -> tuple[str, int, int]:
    """(text with unsourced bullets marked, bullets citing a real doc, bullets in all)."""
    out: list[str] = []
    cited = bullets = 0
    for line in text.splitlines():
        if line.lstrip().startswith(("- ", "* ")):
            bullets += 1
            if any(p in known for p in _PATH.findall(line)):
                cited += 1
            elif not line.endswith(UNSOURCED):
                line += UNSOURCED
        out.append(line)
    return "\n".join(out).strip() + "\n", cited, bullets


async def write_with_model(
    settings: Settings, hits: Sequence[Hit], extractive: str, *, prompts_dir: Path = PROMPTS_DIR
) -> str:
    """The model's profile body (markdown sections), or raises `anthropic.APIError` / httpx errors."""
    prompt = load_prompt(prompts_dir / PROFILE_PROMPT)
    results, _ = build_search_results(list(hits), max_chars=MAX_PASSAGE_CHARS, max_total=MAX_TOTAL_CHARS)
    content = [
        *results,
        {"type": "text", "text": "The machine-extracted draft (a starting point, not a source):\n\n" + extractive},
        {"type": "text", "text": "Write the team profile now, following the rules."},
    ]
    client = build_anthropic_client(settings)
    try:
        message = await client.messages.create(
            model=settings.model,
            max_tokens=MAX_TOKENS,
            system=[{"type": "text", "text": prompt.text}],
            messages=[{"role": "user", "content": content}],
        )
    finally:
        await client.close()
    return "".join(block.text for block in message.content if block.type == "text").strip()
