"""The `archbot` command line. Each command is thin: parse, call one function in `bot/`, print.

Exit codes: 0 success, 1 runtime failure (`click.ClickException`), 2 bad usage or
configuration (`click.UsageError` / `ConfigError`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bot.config import Settings, load_settings
from bot.errors import ConfigError


class ConfigExit(click.UsageError):
    """A configuration error: one line naming the variable, exit 2."""

    exit_code = 2

    def show(self, file: object = None) -> None:  # no usage text: the variable is the message
        click.echo(f"archbot: configuration error: {self.message}", err=True)


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.obj
    if settings is None:
        try:
            settings = load_settings()
        except ConfigError as exc:
            raise ConfigExit(str(exc)) from None
        ctx.obj = settings
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archbot")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """archbot: a Slack bot that answers architecture questions from your team's docs."""
    ctx.obj = None  # built lazily so `--help` works with a broken environment


@cli.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the bot (Socket Mode when SLACK_APP_TOKEN is set, else HTTP on ARCHBOT_PORT).

    Example: SLACK_BOT_TOKEN=xoxb-... SLACK_APP_TOKEN=xapp-... archbot run
    """
    settings = _settings(ctx)
    try:
        settings.require_for_run()
    except ConfigError as exc:
        raise ConfigExit(str(exc)) from None
    from bot.runtime import run_bot

    sys.exit(run_bot(settings))


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="Print nothing on success.")
@click.option("--replace", is_flag=True, help="Index knowledge/ and PATHS only, dropping ARCHBOT_DOCS and the rest.")
@click.pass_context
def index(ctx: click.Context, paths: tuple[Path, ...], quiet: bool, replace: bool) -> None:
    """Index knowledge/, ARCHBOT_DOCS and the given folders, incrementally.

    Folders given here add to ARCHBOT_DOCS (and to what was indexed before); --replace makes
    the index exactly knowledge/ and these folders.

    Example: archbot index ../docs
    """
    settings = _settings(ctx)
    from bot.retrieval.commands import index_command

    sys.exit(index_command(settings, list(paths), quiet=quiet, replace=replace))


@cli.command()
@click.argument("query")
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(1, 100), help="How many passages.")
@click.option("--json", "json_", is_flag=True, help="Print one JSON array, best first.")
@click.pass_context
def search(ctx: click.Context, query: str, k: int, json_: bool) -> None:
    """Search the index: ranked passages.

    Example: archbot search "device.connection.lost" --json
    """
    settings = _settings(ctx)
    from bot.retrieval.commands import search_command

    sys.exit(search_command(settings, query, k=k, json_=json_))


@cli.command()
@click.argument("question")
@click.pass_context
def ask(ctx: click.Context, question: str) -> None:
    """Ask a question from the terminal: the same pipeline as a mention.

    Example: archbot ask "How do we keep a slow downstream service from taking ours down?"
    """
    settings = _settings(ctx)
    from bot.ask import ask_command

    sys.exit(ask_command(settings, question))


@cli.command()
@click.option("--dry-run", "dry_run", is_flag=True, help="Print the digest as markdown (the default).")
@click.option("--post", is_flag=True, help="Post it to ARCHBOT_DIGEST_CHANNEL (once per window).")
@click.option("--repost", is_flag=True, help="With --post: post again a window that was already posted.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="Start date (default: 7 days ago).")
@click.pass_context
def digest(ctx: click.Context, dry_run: bool, post: bool, repost: bool, since: object) -> None:
    """Build the weekly digest; print it as markdown, or post it.

    Example: archbot digest --post
    """
    if dry_run and (post or repost):
        raise click.UsageError("--dry-run prints and --post posts: give one of them")
    if repost and not post:
        raise click.UsageError("--repost goes with --post")
    settings = _settings(ctx)
    from bot.digest.command import digest_command

    sys.exit(digest_command(settings, post=post, since=since, repost=repost))  # type: ignore[arg-type]


@cli.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check every setting, Slack, the database, the index and the model; exit 1 on any ✗.

    Example: archbot doctor
    """
    settings = _settings(ctx)
    from bot.doctor import doctor_command

    sys.exit(doctor_command(settings))


@cli.command()
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="Start date (default: 30 days ago).")
@click.option("--json", "json_", is_flag=True, help="Print one JSON object.")
@click.pass_context
def stats(ctx: click.Context, since: object, json_: bool) -> None:
    """Usage figures: questions, answers, failures, latency, tokens, cost, feedback.

    Example: archbot stats --json
    """
    settings = _settings(ctx)
    from bot.stats import stats_command

    sys.exit(stats_command(settings, since=since, json_=json_))  # type: ignore[arg-type]


@cli.group()
def profile() -> None:
    """The team profile the architect is told about (see `archbot profile draft`)."""


@profile.command("draft")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE, not stdout.")
@click.option("--no-model", is_flag=True, help="Extract from the docs only, even with ANTHROPIC_API_KEY set.")
@click.option("--force", is_flag=True, help="Overwrite FILE even when it is a reviewed profile.")
@click.pass_context
def profile_draft(ctx: click.Context, out: Path | None, no_model: bool, force: bool) -> None:
    """Draft the team profile from the indexed docs; each line cites the docs it came from.

    Review it with the team, delete its draft marker line, then set ARCHBOT_TEAM_PROFILE to it.

    Example: ARCHBOT_DOCS=../docs archbot profile draft --out team_profile.md
    """
    settings = _settings(ctx)
    from bot.profile.command import profile_draft_command

    try:
        sys.exit(profile_draft_command(settings, out=out, use_model=not no_model, force=force))
    except ConfigError as exc:
        raise ConfigExit(str(exc)) from None


def main() -> None:
    cli(prog_name="archbot")


if __name__ == "__main__":
    main()
