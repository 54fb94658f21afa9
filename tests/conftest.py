"""Shared fixtures: a clean environment, the fake Slack and fake Anthropic servers, a running bot.

Everything talks over real sockets on 127.0.0.1 with the real SDK clients; the database is a
real SQLite file in the test's tmp_path.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.runtime import Bot
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import FakeSlack

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS = REPO_ROOT.parent / "shared" / "corpora" / "next-cloudphone"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No developer token or setting leaks into a test; `.env` files are not read from the repo."""
    for name in list(os.environ):
        if name.startswith(("SLACK_", "ANTHROPIC_", "ARCHBOT_")):
            monkeypatch.delenv(name, raising=False)
    # Dense ranking (the optional `dense` extra) would embed each test's docs in the background:
    # tests that mean to use it build a DenseRanker themselves (tests/test_dense.py).
    monkeypatch.setenv("ARCHBOT_DENSE", "false")
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def model() -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def bot_settings(
    tmp_path: Path,
    slack: FakeSlack,
    model: FakeAnthropic | None = None,
    *,
    socket_mode: bool = False,
    **overrides: Any,
) -> Settings:
    values: dict[str, Any] = {
        "slack_bot_token": slack.bot_token,
        "slack_app_token": slack.app_token if socket_mode else None,
        "slack_signing_secret": slack.signing_secret,
        "slack_api_url": slack.api_url,
        "db_path": tmp_path / "archbot.db",
        "port": 0,
        "log_format": "text",
        "shutdown_grace": 3.0,
        "search_workers": 0,  # threads: a process pool per test would only slow the suite
    }
    if model is not None:
        values["anthropic_api_key"] = "sk-ant-fake-0123456789abcdef"
        values["anthropic_base_url"] = model.base_url
        values["model_max_retries"] = 2
        values["query_rewrite"] = False  # scripted replies go to the answer; the rewrite has its own tests
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_bot(settings: Settings, *, index: bool = False) -> AsyncIterator[Bot]:
    bot = Bot(settings)
    await bot.start(index=index)
    try:
        yield bot
    finally:
        await bot.stop()


# -- PostgreSQL (ARCHBOT_DATABASE_URL) ---------------------------------------------------------
@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The URL of a PostgreSQL server for this test session: ARCHBOT_TEST_DATABASE_URL, or a
    throwaway cluster started from the installed binaries. Skips (fails under
    ARCHBOT_REQUIRE_POSTGRES=1, as in CI) when there is neither."""
    from tests.pg_server import ENV_URL, REQUIRE_ENV, TempPostgres

    url = os.environ.get(ENV_URL)
    if url:
        yield url
        return
    try:
        server = TempPostgres()
        url = server.start()
    except Exception as exc:
        if os.environ.get(REQUIRE_ENV):
            raise
        pytest.skip(f"PostgreSQL tests need a server: set {ENV_URL} or apt-get install postgresql ({exc})")
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    from tests.pg_server import create_database

    return create_database(pg_server)
