"""/arch-review's proposal: a named doc is read from the docs folders only, and only when indexed."""

from __future__ import annotations

from pathlib import Path

from bot.config import Settings
from bot.proposals import resolve_proposal
from bot.retrieval import index_sources


def settings_with(docs: Path) -> Settings:
    return Settings(docs=[docs], db_path=docs.parent / "a.db")


def test_a_doc_path_is_reviewed_from_the_docs_folder(tmp_path: Path) -> None:
    docs = tmp_path / "team-docs"
    (docs / "adr").mkdir(parents=True)
    (docs / "adr" / "0007-outbox.md").write_text("# Outbox\n\nWe will write events to an outbox table.")
    index_sources(settings_with(docs))
    for name in ("adr/0007-outbox.md", "team-docs/adr/0007-outbox.md"):
        proposal = resolve_proposal(settings_with(docs), name)
        assert proposal.path == name
        assert "outbox table" in proposal.text


def test_paths_outside_the_folders_are_not_read(tmp_path: Path) -> None:
    docs = tmp_path / "team-docs"
    docs.mkdir()
    (tmp_path / "secret.md").write_text("TOP SECRET")
    (docs / "link.md").symlink_to(tmp_path / "secret.md")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "keys.md").write_text("# Keys\n\nTOP SECRET too")
    (docs / "ext").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (docs / "inside.md").symlink_to(docs / "ext" / ".." / "team-docs" / "link.md")
    report = index_sources(settings_with(docs))
    assert report.skipped.get("symlink_outside") == 3  # the indexer follows no link out of the folder
    assert {"link.md", "ext/keys.md", "inside.md"}.isdisjoint(_indexed_paths(docs))
    for name in ("../secret.md", str(tmp_path / "secret.md"), "link.md", "ext/keys.md", "inside.md"):
        proposal = resolve_proposal(settings_with(docs), name)
        assert "TOP SECRET" not in proposal.text
        assert proposal.refused


def test_plain_text_is_the_proposal(tmp_path: Path) -> None:
    proposal = resolve_proposal(settings_with(tmp_path), "Move billing to an event-sourced ledger\nwith snapshots")
    assert proposal.title == "Move billing to an event-sourced ledger"
    assert proposal.text.endswith("with snapshots")
    assert proposal.path is None


def test_only_indexed_docs_are_read(tmp_path: Path) -> None:
    """What the indexer skips (hidden folders, node_modules, over 2 MB, not markdown) is refused."""
    docs = tmp_path / "team-docs"
    for folder in (".private", "node_modules/pkg", "ops"):
        (docs / folder).mkdir(parents=True)
    (docs / ".private" / "keys.md").write_text("HIDDEN-VALUE")
    (docs / "node_modules" / "pkg" / "README.md").write_text("VENDORED-VALUE")
    (docs / "ops" / "huge.md").write_text("# Huge\n\nBIG-VALUE " + "x" * (2 * 1024 * 1024))
    (docs / "ops" / "deploy.yaml").write_text("password: YAML-VALUE")
    (docs / "ops" / "runbook.md").write_text("# Runbook\n\nDB_PASSWORD=Runbook-Pw-991 for the billing database.")
    settings = settings_with(docs)
    index_sources(settings)
    for name in (".private/keys.md", "node_modules/pkg/README.md", "ops/huge.md", "ops/deploy.yaml"):
        proposal = resolve_proposal(settings, name)
        assert proposal.refused, name
        assert "VALUE" not in proposal.text
    (docs / "ops" / "fresh.md").write_text("# Fresh\n\nNOT-YET-INDEXED")
    assert resolve_proposal(settings, "ops/fresh.md").refused  # written after the last index run
    runbook = resolve_proposal(settings, "ops/runbook.md")
    assert not runbook.refused and "billing database" in runbook.text
    assert "Runbook-Pw-991" not in runbook.text and "DB_PASSWORD=[redacted: password]" in runbook.text


def _indexed_paths(docs: Path) -> set[str]:
    import sqlite3

    with sqlite3.connect(docs.parent / "a.db") as db:
        return {r[0] for r in db.execute("SELECT path FROM ix_files WHERE source = ?", (docs.name,))}


async def test_review_of_a_skipped_file_is_refused_end_to_end(tmp_path: Path, slack, model) -> None:
    """`/arch-review .private/keys.md`: the requester is told why, the model and the channel see nothing."""
    from tests.conftest import bot_settings, running_bot
    from tests.fakes.signing import post_slash_command
    from tests.fakes.slack import slash_command_payload

    docs = tmp_path / "team-docs"
    (docs / ".private").mkdir(parents=True)
    (docs / ".private" / "keys.md").write_text("# Keys\n\nHIDDEN-VALUE-123")
    (docs / "adr.md").write_text("# ADR\n\nWe use an outbox.")
    settings = bot_settings(tmp_path, slack, model, docs=[docs])
    index_sources(settings)
    async with running_bot(settings) as bot:
        fields = slash_command_payload("/arch-review", ".private/keys.md", user="U1", channel="C1")
        fields["response_url"] = "http://127.0.0.1:9/commands/T1/1/x"  # refused: the ephemeral is the fallback
        status, _ = await post_slash_command(f"http://127.0.0.1:{bot.port}", slack.signing_secret, fields)
        assert status == 200
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1}, timeout=10)
        notice = await slack.wait_for(lambda f: f.ephemerals[-1] if f.ephemerals else None)
    assert notice.user == "U1" and "not one of the docs I have indexed" in notice.text
    assert not model.message_requests
    assert not slack.bot_messages("C1")
    assert "HIDDEN-VALUE" not in str([c.args for c in slack.calls])
