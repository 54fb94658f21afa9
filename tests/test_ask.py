"""`archbot ask`: the README's first command, with and without a model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from tests.fakes.anthropic import FakeAnthropic
from tests.helpers import BackgroundLoop

QUESTION = "How do we keep a slow downstream service from taking ours down?"


@pytest.fixture
def model_in_background() -> Iterator[FakeAnthropic]:
    loop = BackgroundLoop()
    fake = loop.run(_make_fake())
    try:
        yield fake
    finally:
        loop.run(fake.stop())
        loop.close()


async def _make_fake() -> FakeAnthropic:
    fake = FakeAnthropic()
    await fake.start()
    return fake


def test_ask_without_a_key_is_labelled_retrieval_only(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["ask", QUESTION], env={"ARCHBOT_DB": str(tmp_path / "a.db")})
    assert result.exit_code == 0, result.output
    assert "Retrieval-only" in result.output
    assert "ANTHROPIC_API_KEY" in result.output
    assert "(knowledge)" in result.output  # passages from the bundled library, indexed on first use


def test_ask_with_a_key_sends_the_passages_to_the_model(tmp_path: Path, model_in_background: FakeAnthropic) -> None:
    env = {
        "ARCHBOT_DB": str(tmp_path / "a.db"),
        "ANTHROPIC_API_KEY": "sk-ant-fake-0123456789abcdef",
        "ANTHROPIC_BASE_URL": model_in_background.base_url,
        "ARCHBOT_QUERY_REWRITE": "true",
    }
    result = CliRunner().invoke(cli, ["ask", QUESTION], env=env)
    assert result.exit_code == 0, result.output
    assert "Echo:" in result.output  # the fake model's answer was printed
    assert "Sources" in result.output
    requests = [r.body for r in model_in_background.message_requests]
    assert not requests[0].get("stream")  # the query rewrite into both languages comes first
    answer = next(body for body in requests if body.get("stream"))
    blocks = [b for m in answer["messages"] for b in (m["content"] if isinstance(m["content"], list) else [])]
    sources = [b["source"] for b in blocks if b.get("type") == "search_result"]
    assert sources and all(s.endswith(".md") for s in sources)
    assert "sk-ant-fake" not in str(requests)


def test_ask_with_a_failing_model_exits_1_with_a_clear_line(tmp_path: Path, model_in_background: FakeAnthropic) -> None:
    model_in_background.fail(status=500, times=50)
    env = {
        "ARCHBOT_DB": str(tmp_path / "a.db"),
        "ANTHROPIC_API_KEY": "sk-ant-fake-0123456789abcdef",
        "ANTHROPIC_BASE_URL": model_in_background.base_url,
        "ARCHBOT_MODEL_RETRIES": "1",
    }
    result = CliRunner().invoke(cli, ["ask", QUESTION], env=env)
    assert result.exit_code == 1
    assert "model call failed" in result.output
    assert "Traceback" not in result.output


def test_ask_shows_the_cited_passage_under_its_path(tmp_path: Path, model_in_background: FakeAnthropic) -> None:
    env = {
        "ARCHBOT_DB": str(tmp_path / "a.db"),
        "ANTHROPIC_API_KEY": "sk-ant-fake-0123456789abcdef",
        "ANTHROPIC_BASE_URL": model_in_background.base_url,
    }
    result = CliRunner().invoke(cli, ["ask", QUESTION], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # the fake cites the first passage it was sent: a marker after the claim, then its path and quote
    request = next(r.body for r in model_in_background.message_requests if r.body and r.body.get("stream"))
    first = next(
        b
        for m in request["messages"]
        if isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "search_result"
    )
    assert any(line.endswith("[1]") and "The docs cover this under" in line for line in lines)
    at = lines.index("**Sources**")
    assert lines[at + 1].startswith(f"1. `knowledge/{first['source']}")
    quoted = " ".join(first["content"][0]["text"].split())[:40]
    assert lines[at + 2].startswith("   > “") and quoted[:20] in lines[at + 2]


def test_ask_in_chinese_without_a_key_is_labelled_in_chinese(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["ask", "慢的下游服务如何拖垮我们？怎么防止？"], env={"ARCHBOT_DB": str(tmp_path / "a.db")}
    )
    assert result.exit_code == 0, result.output
    assert "仅检索结果" in result.output and "ANTHROPIC_API_KEY" in result.output


def test_ask_prints_no_internal_mark_with_linked_sources(tmp_path: Path, model_in_background: FakeAnthropic) -> None:
    """Linked sources carry the neutraliser's bot-composed mark until Slack; a terminal never sees it."""
    docs = tmp_path / "team-docs"
    docs.mkdir()
    (docs / "resilience.md").write_text(
        "# Zorblax gateway\n\nThe zorblax gateway isolates a slow downstream with timeouts and a circuit breaker.\n"
    )
    env = {
        "ARCHBOT_DB": str(tmp_path / "a.db"),
        "ANTHROPIC_API_KEY": "sk-ant-fake-0123456789abcdef",
        "ANTHROPIC_BASE_URL": model_in_background.base_url,
        "ARCHBOT_DOCS_URL": "https://git.example/blob/main/",
    }
    assert CliRunner().invoke(cli, ["index", str(docs)], env=env).exit_code == 0
    result = CliRunner().invoke(cli, ["ask", "How does the zorblax gateway isolate a slow downstream?"], env=env)
    assert result.exit_code == 0, result.output
    assert "](https://git.example/blob/main/" in result.output  # a linked source was printed
    assert "\ue000" not in result.output and "\ue001" not in result.output
