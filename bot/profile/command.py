"""`archbot profile draft`: print the draft (or write it with --out); figures go to stderr."""

from __future__ import annotations

from pathlib import Path

import click

from bot.config import Settings


def profile_draft_command(settings: Settings, *, out: Path | None, use_model: bool, force: bool = False) -> int:
    from bot.logs import setup_logging
    from bot.profile.draft import draft_profile
    from bot.profile.render import DRAFT_MARKER

    setup_logging(level="WARNING", fmt="text", secrets=settings.secrets())
    if out is not None and out.is_file() and not force:
        try:
            reviewed = DRAFT_MARKER not in out.read_text(encoding="utf-8", errors="replace")
        except OSError:
            reviewed = True
        if reviewed:  # a draft may be redrafted; a reviewed profile is the team's work
            click.echo(
                f"archbot: {out} is a reviewed profile (no draft marker): not overwritten; use --force", err=True
            )
            return 1
    draft = draft_profile(settings, use_model=use_model)
    if draft.fallback_reason:
        click.echo(f"archbot: {draft.fallback_reason}", err=True)
    if out is None:
        click.echo(draft.markdown, nl=False)
    else:
        try:
            out.write_text(draft.markdown, encoding="utf-8")
        except OSError as exc:
            click.echo(f"archbot: cannot write {out}: {exc.strerror or type(exc).__name__}", err=True)
            return 1
    click.echo(
        f"profile draft ({draft.how}): {draft.services} services, {draft.lines} lines, "
        f"{draft.cited_lines} citing an indexed doc, from {draft.docs} docs in {draft.seconds:.1f} s"
        + (f"; written to {out}" if out else "")
        + ". Review it, delete the draft marker line, then set ARCHBOT_TEAM_PROFILE to it.",
        err=True,
    )
    return 0
