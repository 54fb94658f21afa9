"""`archbot profile draft` on small fixture docs: offline (extractive) and with the fake model."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.profile import DRAFT_MARKER
from bot.profile.model import UNSOURCED
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.helpers import BackgroundLoop

DOCS = Path(__file__).parent / "fixtures" / "team_docs"
FIXTURE_PATHS = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
CITED = re.compile(r"`([^`\s]+\.md)`")


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"ARCHBOT_DB": str(tmp_path / "p.db"), "ARCHBOT_DOCS": str(DOCS), **extra}


def bullets(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("- ")]


def line_for(markdown: str, needle: str) -> str:
    return next(line for line in bullets(markdown) if needle in line)


def test_offline_draft_lists_the_services_with_citations(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["profile", "draft"], env=env_for(tmp_path))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.splitlines()[0].startswith("<!--") and DRAFT_MARKER in out.splitlines()[0]
    orders = line_for(out, "**orders-service**")
    assert "port 4101" in orders and "Orders and checkout" in orders and "database `acme_orders`" in orders
    assert "`backend/orders-service/README.md`" in orders and "`docs/ARCHITECTURE.md`" in orders
    assert "port 4102" in line_for(out, "**payments-service**")
    assert "port 4100" in line_for(out, "**api-gateway**")
    assert "**shared" not in out  # a library folder is not a service
    # every line cites real fixture docs, never the bundled pattern library
    for line in bullets(out):
        cited = CITED.findall(line)
        assert cited and set(cited) <= FIXTURE_PATHS, line
    assert "`acme.events`" in line_for(out, "Events go through")
    assert "`acme.dlx`" in line_for(out, "Dead-letter")
    assert "`order.payment.failed` vs `order.payment_failed`" in out or "`order.payment_failed` vs" in out
    assert "`acme_orders`" in line_for(out, "**PostgreSQL**")
    assert "`@acme/shared`" in out and "orders-service 2 (cluster mode)" in out
    assert "`backend/shared/`" in out
    debt = line_for(out, "idempotency")
    assert "`docs/EVENTS_AUDIT.md`" in debt
    assert "services" in result.stderr and "citing an indexed doc" in result.stderr


def test_draft_to_a_file_and_without_docs(tmp_path: Path) -> None:
    target = tmp_path / "team_profile.md"
    result = CliRunner().invoke(cli, ["profile", "draft", "--out", str(target)], env=env_for(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "**orders-service**" in target.read_text(encoding="utf-8")
    again = CliRunner().invoke(cli, ["profile", "draft", "--out", str(target)], env=env_for(tmp_path))
    assert again.exit_code == 0  # a draft may be redrafted
    target.write_text("# Our reviewed profile\n", encoding="utf-8")
    refused = CliRunner().invoke(cli, ["profile", "draft", "--out", str(target)], env=env_for(tmp_path))
    assert refused.exit_code == 1 and "--force" in refused.stderr
    assert target.read_text(encoding="utf-8") == "# Our reviewed profile\n"
    forced = CliRunner().invoke(cli, ["profile", "draft", "--out", str(target), "--force"], env=env_for(tmp_path))
    assert forced.exit_code == 0 and DRAFT_MARKER in target.read_text(encoding="utf-8")
    bare = CliRunner().invoke(cli, ["profile", "draft"], env={"ARCHBOT_DB": str(tmp_path / "empty.db")})
    assert bare.exit_code == 2 and "ARCHBOT_DOCS" in bare.stderr


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


def test_with_a_key_the_model_writes_it_from_passages_and_lines_are_checked(
    tmp_path: Path, model_in_background: FakeAnthropic
) -> None:
    model_in_background.script(
        Reply(
            text="## Services\n"
            "- **orders-service** (4101) owns orders and checkout. — `backend/orders-service/README.md`\n"
            "- **ghost-service** runs the invented stuff. — `docs/NOT_A_DOC.md`\n"
        )
    )
    env = env_for(
        tmp_path, ANTHROPIC_API_KEY="sk-ant-fake-0123456789abcdef", ANTHROPIC_BASE_URL=model_in_background.base_url
    )
    result = CliRunner().invoke(cli, ["profile", "draft"], env=env)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert DRAFT_MARKER in out.splitlines()[0]
    assert not line_for(out, "orders-service").endswith(UNSOURCED)
    assert line_for(out, "ghost-service").endswith(UNSOURCED)  # cites nothing the index holds
    [request] = [r.body for r in model_in_background.message_requests]
    content = request["messages"][0]["content"]
    sources = {b["source"] for b in content if b["type"] == "search_result"}
    assert sources and sources <= FIXTURE_PATHS  # passages from the team docs only
    assert any("machine-extracted draft" in b.get("text", "") for b in content)
    assert "sk-ant-fake" not in str(request)


def test_a_failed_model_call_falls_back_to_the_extractive_draft(
    tmp_path: Path, model_in_background: FakeAnthropic
) -> None:
    model_in_background.fail(400, times=1)
    env = env_for(
        tmp_path, ANTHROPIC_API_KEY="sk-ant-fake-0123456789abcdef", ANTHROPIC_BASE_URL=model_in_background.base_url
    )
    result = CliRunner().invoke(cli, ["profile", "draft"], env=env)
    assert result.exit_code == 0, result.output
    assert "**orders-service**" in result.stdout and "extractive" in result.stderr
