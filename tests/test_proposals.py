"""/arch-review's proposal: a named doc is read from the docs folders only."""

from __future__ import annotations

from pathlib import Path

from bot.config import Settings
from bot.proposals import resolve_proposal


def settings_with(docs: Path) -> Settings:
    return Settings(docs=[docs], db_path=docs.parent / "a.db")


def test_a_doc_path_is_reviewed_from_the_docs_folder(tmp_path: Path) -> None:
    docs = tmp_path / "team-docs"
    (docs / "adr").mkdir(parents=True)
    (docs / "adr" / "0007-outbox.md").write_text("# Outbox\n\nWe will write events to an outbox table.")
    for name in ("adr/0007-outbox.md", "team-docs/adr/0007-outbox.md"):
        proposal = resolve_proposal(settings_with(docs), name)
        assert proposal.path == name
        assert "outbox table" in proposal.text


def test_paths_outside_the_folders_are_not_read(tmp_path: Path) -> None:
    docs = tmp_path / "team-docs"
    docs.mkdir()
    (tmp_path / "secret.md").write_text("TOP SECRET")
    (docs / "link.md").symlink_to(tmp_path / "secret.md")
    for name in ("../secret.md", str(tmp_path / "secret.md"), "link.md"):
        proposal = resolve_proposal(settings_with(docs), name)
        assert "TOP SECRET" not in proposal.text
        assert proposal.path is None


def test_plain_text_is_the_proposal(tmp_path: Path) -> None:
    proposal = resolve_proposal(settings_with(tmp_path), "Move billing to an event-sourced ledger\nwith snapshots")
    assert proposal.title == "Move billing to an event-sourced ledger"
    assert proposal.text.endswith("with snapshots")
    assert proposal.path is None
