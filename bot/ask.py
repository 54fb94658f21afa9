"""`archbot ask`: the mention pipeline, from a terminal.

Same stages as a Slack job (retrieval → model → answer), without Slack: the question is the
only turn, the answer streams to stdout (with its `[n]` citation markers) and the rest of what
Slack would show follows it: the cut-off note, the conflicts/gaps/confidence lines and the
sources with their quoted passages, in the question's language. With no
ANTHROPIC_API_KEY the answer is retrieval-only and says so. The index is brought up to date
first (incremental: nearly free when nothing changed), so the very first `ask` on a fresh
install works from the bundled pattern library. With a model, a credential pasted into the question
is redacted before it is searched or sent, and one the model repeats is not printed
(`bot/redaction.py`).
"""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from bot.config import Settings
from bot.errors import ModelError
from bot.types import Answer, Turn

log = logging.getLogger(__name__)


def ask_command(settings: Settings, question: str) -> int:
    from bot.logs import setup_logging

    setup_logging(level="WARNING", fmt="text", secrets=settings.secrets())
    question = question.strip()
    if not question:
        raise click.UsageError("the question is empty")
    try:
        answer = asyncio.run(ask(settings, question, stream=sys.stdout.isatty()))
    except ModelError as exc:
        click.echo(f"archbot: the model call failed ({exc.status or 'no status'}); try again later.", err=True)
        return 1
    return 0 if answer.kind != "failure" else 1


def _index(settings: Settings, *, first: bool) -> None:
    """Bring the index up to date. The first time (a new database) it reads every doc, which takes a
    while on a large folder: say so on stderr, with a progress bar on a terminal, then a summary."""
    from bot.retrieval.index import index_sources

    if not first:
        index_sources(settings)
        return
    folders = ", ".join(["knowledge/", *(str(p) for p in settings.docs)])
    click.echo(f"archbot: first run on {settings.db_path}: indexing {folders}…", err=True)
    report = index_sources(settings, progress=sys.stderr.isatty())
    click.echo(f"archbot: {report.summary()}", err=True)


async def ask(settings: Settings, question: str, *, stream: bool = False) -> Answer:
    from bot.retrieval import build_searcher

    if settings.has_model:  # the question goes to the model (and its query rewrite): not a credential in it
        from bot.redaction import redact_text

        question = redact_text(question)
    searcher = build_searcher(settings)
    # Index when there is nothing yet (a fresh install) or when ARCHBOT_DOCS names the docs; an index
    # built by hand with `archbot index PATH` is left as it is rather than narrowed to knowledge/.
    first = not searcher.info()["chunks"]
    if settings.docs or first:
        await asyncio.to_thread(_index, settings, first=first)
    hits = await asyncio.to_thread(searcher.context, question)

    if not settings.has_model:
        from bot.architect import retrieval_only_answer

        answer = retrieval_only_answer(question, hits)
        click.echo(answer.text)
        return answer

    from bot.architect import Architect
    from bot.redaction import settled

    shown = ""  # what the terminal shows of the streamed answer

    async def on_text(full: str) -> None:
        nonlocal shown
        if not stream:
            return
        full = redact_text(settled(full))  # as in Slack: a credential the model repeats is not shown
        if not full.startswith(shown):  # the model call was retried: start over on a new line
            click.echo("\n[retrying]\n", nl=False)
            shown = ""
        click.echo(full[len(shown) :], nl=False)
        shown = full

    async with Architect(settings) as architect:
        answer = await architect.respond(turns=[Turn(role="user", text=question)], hits=hits, on_text=on_text)
    from bot.i18n import detect_language
    from bot.slack.neutralise import strip_marks
    from bot.slack.render import build_answer_body

    full = redact_text(strip_marks(build_answer_body(answer, lang=detect_language(question))))  # a terminal, not Slack
    streamed = shown.strip()
    click.echo(full[len(streamed) :] if streamed and full.startswith(streamed) else full)
    return answer
