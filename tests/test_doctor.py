"""`archbot doctor` against the fake Slack and fake Anthropic: each ✗ path, and the all-clear.

The check functions are awaited directly (fakes in the test's loop); the command itself runs
through click's CliRunner, with the fakes served from a background event loop because
`doctor_command` runs its own `asyncio.run`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from click.testing import CliRunner

from bot.cli import cli
from bot.config import PROJECT_ROOT, Settings
from bot.doctor import MANIFEST_SCOPES, Check, check_digest, gather_checks, manifest_scopes, mask
from bot.retrieval import index_sources
from tests.fakes import FakeSlack
from tests.fakes.anthropic import DEFAULT_API_KEY, FakeAnthropic
from tests.helpers import BackgroundLoop

T = TypeVar("T")


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    path = tmp_path / "team.md"
    path.write_text("# Our stack\n\nNestJS services, RabbitMQ, PostgreSQL per service.\n", encoding="utf-8")
    return path


@pytest.fixture
def indexed_db(tmp_path: Path) -> Path:
    db = tmp_path / "archbot.db"
    index_sources(Settings(ARCHBOT_DB=str(db)))
    return db


def env_for(slack: FakeSlack, model: FakeAnthropic, *, db: Path, profile: Path, **extra: str) -> dict[str, str]:
    env = {
        **slack.env(socket_mode=True),
        "ANTHROPIC_API_KEY": DEFAULT_API_KEY,
        "ANTHROPIC_BASE_URL": model.base_url,
        "ARCHBOT_MODEL": model.models[0],  # one the fake serves, whatever the default becomes
        "ARCHBOT_DB": str(db),
        "ARCHBOT_TEAM_PROFILE": str(profile),
        "ARCHBOT_DIGEST_CHANNEL": "C0DIGEST",
        "ARCHBOT_TZ": "Europe/Berlin",
    }
    env.update(extra)
    return {k: v for k, v in env.items() if v != ""}


def by_name(checks: list[Check], name: str) -> list[Check]:
    return [c for c in checks if c.name == name]


def failed(checks: list[Check]) -> list[str]:
    return [c.name for c in checks if c.status == "fail"]


# -- direct: each ✗ path ------------------------------------------------------------------
async def test_all_clear(indexed_db: Path, profile: Path) -> None:
    async with FakeSlack() as slack, FakeAnthropic() as model:
        checks = await gather_checks(Settings(**env_for(slack, model, db=indexed_db, profile=profile)))
        assert failed(checks) == [], "\n".join(line for c in checks for line in c.lines())
        names = {c.name for c in checks if c.status == "ok"}
        assert {"Slack auth.test", "Slack scopes", "Socket Mode", "database", "index", "model", "digest"} <= names
        assert "bot @archbot (UBOT) in Fake Team" in by_name(checks, "Slack auth.test")[0].detail
        assert "Socket Mode" in by_name(checks, "mode")[0].detail
        assert slack.calls_to("auth.test") and slack.calls_to("apps.connections.open")
        assert any(r.path == f"/v1/models/{model.models[0]}" for r in model.requests)


async def test_bad_bot_token(indexed_db: Path, profile: Path) -> None:
    async with FakeSlack() as slack, FakeAnthropic() as model:
        env = env_for(slack, model, db=indexed_db, profile=profile, SLACK_BOT_TOKEN="xoxb-not-the-right-one")
        checks = await gather_checks(Settings(**env))
    [auth] = by_name(checks, "Slack auth.test")
    assert auth.status == "fail" and "invalid_auth" in auth.detail
    assert auth.fix and "OAuth & Permissions" in auth.fix
    assert failed(checks) == ["Slack auth.test"]
    assert not by_name(checks, "Slack scopes")


async def test_revoked_token(indexed_db: Path, profile: Path) -> None:
    async with FakeSlack() as slack, FakeAnthropic() as model:
        slack.fail("auth.test", error="token_revoked", times=1)
        checks = await gather_checks(Settings(**env_for(slack, model, db=indexed_db, profile=profile)))
    [auth] = by_name(checks, "Slack auth.test")
    assert auth.status == "fail" and "token_revoked" in auth.detail and "reinstall" in (auth.fix or "")


async def test_missing_scopes_are_named(indexed_db: Path, profile: Path) -> None:
    granted = [s for s in MANIFEST_SCOPES if s not in ("assistant:write", "reactions:write")]
    async with FakeSlack(scopes=granted) as slack, FakeAnthropic() as model:
        checks = await gather_checks(Settings(**env_for(slack, model, db=indexed_db, profile=profile)))
    [scopes] = by_name(checks, "Slack scopes")
    assert scopes.status == "fail"
    assert "assistant:write" in scopes.detail and "reactions:write" in scopes.detail
    assert "chat:write" not in scopes.detail
    assert scopes.fix and "reinstall" in scopes.fix
    assert failed(checks) == ["Slack scopes"]


async def test_socket_mode_open_failing(indexed_db: Path, profile: Path) -> None:
    async with FakeSlack() as slack, FakeAnthropic() as model:
        env = env_for(slack, model, db=indexed_db, profile=profile, SLACK_APP_TOKEN="xapp-revoked-token")
        checks = await gather_checks(Settings(**env))
        [socket] = by_name(checks, "Socket Mode")
        assert socket.status == "fail" and "invalid_auth" in socket.detail
        assert socket.fix and "connections:write" in socket.fix
        assert failed(checks) == ["Socket Mode"]

        slack.fail("apps.connections.open", error="socket_mode_disabled", times=1)
        checks = await gather_checks(Settings(**env_for(slack, model, db=indexed_db, profile=profile)))
        [socket] = by_name(checks, "Socket Mode")
        assert socket.status == "fail" and "socket_mode_disabled" in socket.detail
        assert socket.fix and "Socket Mode" in socket.fix


async def test_unknown_model(indexed_db: Path, profile: Path) -> None:
    async with FakeSlack() as slack, FakeAnthropic() as model:
        env = env_for(slack, model, db=indexed_db, profile=profile, ARCHBOT_MODEL="claude-nonexistent-9")
        checks = await gather_checks(Settings(**env))
    [line] = by_name(checks, "model")
    assert line.status == "fail" and "claude-nonexistent-9 not found" in line.detail
    assert line.fix and "ARCHBOT_MODEL" in line.fix and model.models[0] in line.fix
    assert failed(checks) == ["model"]


async def test_rejected_model_key(indexed_db: Path, profile: Path) -> None:
    async with FakeSlack() as slack, FakeAnthropic() as model:
        env = env_for(slack, model, db=indexed_db, profile=profile, ANTHROPIC_API_KEY="sk-ant-wrong-key-123456")
        checks = await gather_checks(Settings(**env))
    [line] = by_name(checks, "model")
    assert line.status == "fail" and "rejected" in line.detail and "sk-ant-…" in line.detail
    assert "wrong-key" not in line.detail


async def test_no_model_key_is_not_a_failure(indexed_db: Path, profile: Path) -> None:
    async with FakeSlack() as slack, FakeAnthropic() as model:
        env = env_for(slack, model, db=indexed_db, profile=profile, ANTHROPIC_API_KEY="")
        checks = await gather_checks(Settings(**env))
    [line] = by_name(checks, "model")
    assert line.status == "info" and "retrieval-only" in line.detail
    assert failed(checks) == []
    assert model.requests == []


async def test_unwritable_database(tmp_path: Path, profile: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be", encoding="utf-8")
    async with FakeSlack() as slack, FakeAnthropic() as model:
        env = env_for(slack, model, db=blocker / "archbot.db", profile=profile)
        checks = await gather_checks(Settings(**env))
    [db] = by_name(checks, "database")
    assert db.status == "fail" and "cannot open" in db.detail and db.fix and "ARCHBOT_DB" in db.fix
    assert by_name(checks, "index")[0].status == "info"  # skipped, not a second failure
    assert failed(checks) == ["database"]


async def test_empty_index(tmp_path: Path, profile: Path) -> None:
    async with FakeSlack() as slack, FakeAnthropic() as model:
        checks = await gather_checks(Settings(**env_for(slack, model, db=tmp_path / "fresh.db", profile=profile)))
    [index] = by_name(checks, "index")
    assert index.status == "fail" and index.detail == "not indexed: run archbot index"
    assert failed(checks) == ["index"]


async def test_docs_folder_missing_from_index(indexed_db: Path, profile: Path, tmp_path: Path) -> None:
    docs = tmp_path / "team-docs"
    docs.mkdir()
    (docs / "adr-001.md").write_text("# ADR 1: one database per service\n\nBecause.\n", encoding="utf-8")
    async with FakeSlack() as slack, FakeAnthropic() as model:
        env = env_for(slack, model, db=indexed_db, profile=profile, ARCHBOT_DOCS=str(docs))
        checks = await gather_checks(Settings(**env))
        assert any(c.name == "index" and c.status == "fail" and "team-docs" in c.detail for c in checks)

        index_sources(Settings(**env))
        checks = await gather_checks(Settings(**env))
        assert failed(checks) == []
        (docs / "adr-002.md").write_text("# ADR 2: events over RabbitMQ\n\nBecause.\n", encoding="utf-8")
        checks = await gather_checks(Settings(**env))
    stale = [c for c in checks if c.name == "index freshness" and c.status == "warn" and "team-docs" in c.detail]
    assert len(stale) == 1 and "team-docs: 1 new, 0 changed, 0 removed" in stale[0].detail
    assert failed(checks) == []


async def test_http_mode_needs_a_signing_secret(indexed_db: Path, profile: Path) -> None:
    async with FakeSlack() as slack, FakeAnthropic() as model:
        env = env_for(slack, model, db=indexed_db, profile=profile, SLACK_APP_TOKEN="", SLACK_SIGNING_SECRET="")
        checks = await gather_checks(Settings(**env))
        assert failed(checks) == ["SLACK_SIGNING_SECRET"]
        assert "HTTP" in by_name(checks, "mode")[0].detail
        assert by_name(checks, "Socket Mode")[0].status == "info"
        assert slack.calls_to("apps.connections.open") == []

        env["SLACK_SIGNING_SECRET"] = slack.signing_secret
        assert failed(await gather_checks(Settings(**env))) == []


async def test_settings_failures(indexed_db: Path, tmp_path: Path) -> None:
    settings = Settings(
        ARCHBOT_DB=str(indexed_db),
        ARCHBOT_TEAM_PROFILE=str(tmp_path / "nope.md"),
        ARCHBOT_DOCS=str(tmp_path / "no-such-folder"),
    )
    checks = await gather_checks(settings)
    assert set(failed(checks)) == {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "ARCHBOT_TEAM_PROFILE", "ARCHBOT_DOCS"}
    assert by_name(checks, "Slack")[0].status == "info"


async def test_digest_channel_the_bot_is_not_in(indexed_db: Path, profile: Path) -> None:
    async with FakeSlack(channels={"C0DIGEST": {"name": "arch", "is_member": False}}) as slack, FakeAnthropic() as m:
        checks = await gather_checks(Settings(**env_for(slack, m, db=indexed_db, profile=profile)))
    [line] = by_name(checks, "digest channel")
    assert line.status == "warn" and "#arch" in line.detail and "/invite" in (line.fix or "")


async def test_slack_unreachable(indexed_db: Path, profile: Path) -> None:
    async with FakeSlack() as slack, FakeAnthropic() as model:
        env = env_for(slack, model, db=indexed_db, profile=profile)
    env["SLACK_API_URL"] = f"{slack.root_url}/api/"  # the fake has stopped: nothing listens there
    env.pop("ANTHROPIC_API_KEY")
    checks = await gather_checks(Settings(**env))
    assert failed(checks) == ["Slack auth.test", "Socket Mode"]
    assert "cannot reach" in by_name(checks, "Slack auth.test")[0].detail


async def test_private_digest_channel_is_a_warning(indexed_db: Path, profile: Path) -> None:
    channels = {"C0DIGEST": {"is_private": True}}
    async with FakeSlack(channels=channels) as slack, FakeAnthropic() as model:
        checks = await gather_checks(Settings(**env_for(slack, model, db=indexed_db, profile=profile)))
    [line] = by_name(checks, "digest channel")
    assert line.status == "warn" and "private" in line.detail
    assert failed(checks) == []


def test_digest_schedule_in_the_configured_timezone() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    settings = Settings(ARCHBOT_DIGEST_CHANNEL="C1", ARCHBOT_DIGEST_CRON="0 9 * * MON", ARCHBOT_TZ="Asia/Shanghai")
    now = datetime(2025, 1, 1, 12, 0, tzinfo=ZoneInfo("UTC"))  # a Wednesday
    [line] = check_digest(settings, None, now=now)
    assert line.status == "ok" and "next Mon 2025-01-06 09:00 Asia/Shanghai" in line.detail
    [off] = check_digest(Settings(), None)
    assert off.status == "info" and "no digest channel" in off.detail


def test_manifest_scopes_match_the_built_in_copy() -> None:
    manifest = yaml.safe_load((PROJECT_ROOT / "manifest.yml").read_text(encoding="utf-8"))
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == sorted(MANIFEST_SCOPES)
    assert manifest_scopes()[1] == "manifest.yml"


def test_mask_shows_only_a_prefix() -> None:
    assert mask("xoxb-123-456-abcdef") == "xoxb-…"
    assert mask("xapp-1-A1-xyz") == "xapp-…"
    assert mask("sk-ant-api03-secret") == "sk-ant-…"
    assert mask("hunter2hunter2") == "set (hidden)"
    assert mask(None) == "unset"


# -- through the CLI -----------------------------------------------------------------------
@pytest.fixture
def fakes() -> Iterator[tuple[FakeSlack, FakeAnthropic]]:
    background = BackgroundLoop()

    async def start() -> tuple[FakeSlack, FakeAnthropic]:
        slack, model = FakeSlack(), FakeAnthropic()
        await slack.start()
        await model.start()
        return slack, model

    slack, model = background.run(start())
    try:
        yield slack, model
    finally:
        background.run(slack.stop())
        background.run(model.stop())
        background.close()


def test_cli_all_clear_exits_0_and_hides_secrets(
    fakes: tuple[FakeSlack, FakeAnthropic], indexed_db: Path, profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slack, model = fakes
    for key, value in env_for(slack, model, db=indexed_db, profile=profile).items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("✓ settings")
    assert "✓ Slack auth.test: bot @archbot (UBOT) in Fake Team" in lines
    assert any(line.startswith("✓ Socket Mode: apps.connections.open ok") for line in lines)
    assert any(line.startswith("✓ digest: to C0DIGEST") and "Europe/Berlin" in line for line in lines)
    assert "✗" not in result.stdout
    assert lines[-1].startswith("All checks passed")
    for secret in (slack.bot_token, slack.app_token, slack.signing_secret, DEFAULT_API_KEY):
        assert secret not in result.output
    assert "xoxb-…" in result.stdout and "xapp-…" in result.stdout and "sk-ant-…" in result.stdout


def test_cli_failure_exits_1_with_the_fix(
    fakes: tuple[FakeSlack, FakeAnthropic], tmp_path: Path, profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slack, model = fakes
    env = env_for(slack, model, db=tmp_path / "empty.db", profile=profile, SLACK_BOT_TOKEN="xoxb-wrong-token-999")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    auth = lines.index("✗ Slack auth.test: failed: invalid_auth")
    assert lines[auth + 1].startswith("    fix: ")
    assert "✗ index: not indexed: run archbot index" in lines
    assert "2 problem(s) to fix" in result.stdout
    assert "xoxb-wrong-token-999" not in result.output


def test_cli_bad_setting_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "not-a-bot-token")
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 2
    assert "SLACK_BOT_TOKEN" in result.output and "not-a-bot-token" not in result.output


async def test_knowledge_readme_left_out_on_purpose_is_not_new(indexed_db: Path, profile: Path) -> None:
    async with FakeSlack() as slack, FakeAnthropic() as model:
        checks = await gather_checks(Settings(**env_for(slack, model, db=indexed_db, profile=profile)))
    [fresh] = [c for c in checks if c.name == "index freshness" and "knowledge" in c.detail]
    assert (PROJECT_ROOT / "knowledge" / "README.md").is_file()
    assert fresh.status == "ok", fresh.detail


# -- the team profile: only a reviewed one is fine ------------------------------------------
def test_team_profile_checks(tmp_path: Path, profile: Path) -> None:
    from bot.config import EXAMPLE_TEAM_PROFILE
    from bot.doctor import check_team_profile
    from bot.profile import DRAFT_MARKER

    unset = check_team_profile(Settings(_env_file=None).team_profile)  # type: ignore[call-arg]
    assert unset.status == "warn" and "unset" in unset.detail and "archbot profile draft" in (unset.fix or "")
    example = check_team_profile(EXAMPLE_TEAM_PROFILE)
    assert example.status == "warn" and "example" in example.detail
    draft = tmp_path / "draft.md"
    draft.write_text(f"<!-- {DRAFT_MARKER} -->\n# Team profile\n", encoding="utf-8")
    unreviewed = check_team_profile(draft)
    assert unreviewed.status == "warn" and "unreviewed" in unreviewed.detail
    assert check_team_profile(profile).status == "ok"
    assert check_team_profile(tmp_path / "nope.md").status == "fail"
