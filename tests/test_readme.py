"""The README states facts the code owns: its configuration table and its list of commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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
    assert "| `ARCHBOT_DB` | SQLite database file. | `./archbot.db` |" in table
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
