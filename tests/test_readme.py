"""The README and the container state facts the code owns: the configuration table, the commands,
and the image's start and health commands (no container engine runs here, so those are run directly)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.config import Settings, env_name
from bot.docs_table import END_MARKER, START_MARKER, extract_table, render_config_table, replace_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_table_matches_settings() -> None:
    table = extract_table(README.read_text(encoding="utf-8"))
    assert table is not None, f"README.md lacks the {START_MARKER} ... {END_MARKER} markers"
    assert table == render_config_table(), "README table is stale: run `python -m bot.docs_table --write README.md`"


def test_table_has_every_setting_once() -> None:
    table = render_config_table()
    for name in Settings.model_fields:
        assert table.count(f"| `{env_name(name)}` |") == 1, name
    assert (
        "| `ARCHBOT_DB` | SQLite database file (with ARCHBOT_DATABASE_URL: only the local retrieval index)."
        " | `./archbot.db` |"
    ) in table
    assert "| `SLACK_API_URL` |" in table and "`https://slack.com/api/`" in table


def test_replace_table_round_trips() -> None:
    text = f"intro\n{START_MARKER}\nold | stuff\n{END_MARKER}\noutro\n"
    updated = replace_table(text, "| a | b | c |\n")
    assert updated == f"intro\n{START_MARKER}\n| a | b | c |\n{END_MARKER}\noutro\n"
    assert extract_table(updated) == "| a | b | c |\n"
    assert replace_table(updated, "| a | b | c |\n") == updated
    with pytest.raises(ValueError):
        replace_table("no markers here", "x")


def test_write_command_updates_a_copy(tmp_path: Path) -> None:
    from bot.docs_table import main

    copy = tmp_path / "README.md"
    copy.write_text(f"# t\n{START_MARKER}\n{END_MARKER}\n", encoding="utf-8")
    assert main(["--write", str(copy)]) == 0
    assert extract_table(copy.read_text(encoding="utf-8")) == render_config_table()
    assert main(["--write", str(tmp_path / "missing.md")]) == 1


def test_readme_documents_every_command() -> None:
    """Not an xfail: it fails on a missing command, and skips only while the section does not exist."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Commands\s*$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    if match is None:
        pytest.skip("README has no '## Commands' section yet")
    section = match.group(1)
    missing = [name for name in sorted(cli.commands) if f"archbot {name}" not in section]
    assert not missing, f"README '## Commands' does not mention: {missing}"


# -- the container: its commands are the ones tested here -----------------------------------------
DOCKERFILE = README.parent / "Dockerfile"


def _instruction(name: str) -> str:
    """The JSON argument of a Dockerfile instruction (continuation lines joined)."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    [line] = [ln for ln in text.splitlines() if ln.startswith(name + " ")]
    return line[len(name) :].strip()


def test_image_starts_by_indexing_then_running() -> None:
    assert json.loads(_instruction("CMD")) == ["sh", "-c", "archbot index --quiet && exec archbot run"]
    assert {"index", "run"} <= set(cli.commands)
    assert "--quiet" in [opt for p in cli.commands["index"].params for opt in p.opts]


def test_the_image_index_step_is_quiet_and_succeeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHBOT_DB", str(tmp_path / "data" / "archbot.db"))
    result = CliRunner().invoke(cli, ["index", "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.output == ""
    assert (tmp_path / "data" / "archbot.db").is_file()


async def test_healthcheck_probe(tmp_path: Path) -> None:
    from aiohttp import web

    from bot.metrics import Metrics
    from bot.server import Readiness, build_web_app
    from bot.store import Store
    from bot.store_async import AsyncStore

    health = json.loads(_instruction("HEALTHCHECK").split("CMD", 1)[1])
    assert health[:2] == ["python", "-c"]
    store = AsyncStore(Store(tmp_path / "archbot.db"))
    readiness = Readiness(store=store, slack_ok=lambda: True, workers_ok=lambda: True)
    runner = web.AppRunner(build_web_app(metrics=Metrics(), readiness=readiness, bolt=None))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        probe = await asyncio.create_subprocess_exec(
            sys.executable, "-c", health[2], env={**os.environ, "ARCHBOT_PORT": str(port)}
        )
        assert await asyncio.wait_for(probe.wait(), 20) == 0
    finally:
        await runner.cleanup()
        store.close()
    probe = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        health[2],
        env={**os.environ, "ARCHBOT_PORT": str(port)},
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert await asyncio.wait_for(probe.wait(), 20) != 0  # nothing listening: unhealthy
