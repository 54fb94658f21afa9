"""The assistant surface: which prompts are suggested, and what Slack receives."""

from __future__ import annotations

from pathlib import Path

from bot.config import Settings
from bot.slack.assistant import (
    GENERIC_PROMPTS,
    MAX_PROMPTS,
    build_suggested_prompts,
    doc_titles,
    usable_title,
)
from bot.types import Hit


def test_prompts_fall_back_to_general_ones() -> None:
    prompts = build_suggested_prompts([])
    assert prompts == list(GENERIC_PROMPTS[:MAX_PROMPTS])
    assert 3 <= len(prompts) <= 4
    assert all(p.title and p.message for p in prompts)


def test_prompts_draw_on_doc_titles_first() -> None:
    prompts = build_suggested_prompts(["README", "Device connection lifecycle", "billing.md", "计费服务 Saga 设计"])
    assert len(prompts) == MAX_PROMPTS
    assert "Device connection lifecycle" in prompts[0].title
    assert "Device connection lifecycle" in prompts[0].message
    assert "计费服务 Saga 设计" in prompts[1].title
    assert prompts[2:] == list(GENERIC_PROMPTS[:2])


def test_titles_are_cleaned_and_bounded() -> None:
    assert usable_title("CHANGELOG") is None
    assert usable_title("docs/guide.md") is None
    assert usable_title("# **Event bus** `rabbitmq`") == "Event bus rabbitmq"
    long = usable_title("A very long title about the way our services talk to each other over the event bus")
    assert long is not None and len(long) <= 61 and long.endswith("…")
    assert build_suggested_prompts(["Event bus", "event bus"])[1] == GENERIC_PROMPTS[0]


class ListingSearcher:
    """A searcher that lists titles itself (the preferred path)."""

    def doc_titles(self, *, limit: int) -> list[str]:
        return ["Outbox pattern in order-service", "Rate limits"][:limit]


class BrokenSearcher:
    def search(self, query: str, k: int = 8) -> list[Hit]:
        raise RuntimeError("index is being rebuilt")


async def test_doc_titles_from_a_lister_and_from_search(tmp_path: Path) -> None:
    assert await doc_titles(None) == []
    assert await doc_titles(ListingSearcher()) == ["Outbox pattern in order-service", "Rate limits"]
    assert await doc_titles(BrokenSearcher()) == []


async def test_doc_titles_from_a_real_index(tmp_path: Path) -> None:
    from bot.retrieval import Searcher, index_sources

    docs = tmp_path / "team-docs"
    docs.mkdir()
    (docs / "gateway.md").write_text(
        "# API gateway and service boundaries\n\nThe gateway routes to each service; deployment is per service."
        " Our architecture overview: one database per service, events over RabbitMQ.\n",
        encoding="utf-8",
    )
    settings = Settings(ARCHBOT_DB=str(tmp_path / "ix.db"), ARCHBOT_DOCS=str(docs))
    index_sources(settings)
    searcher = Searcher(settings.db_path)
    try:
        titles = await doc_titles(searcher)
    finally:
        searcher.close()
    assert titles == ["API gateway and service boundaries"]  # the bundled knowledge/ is not "the team's docs"
