"""Prompt-cache benchmark: tokens per answer and the share of input read from the cache.

    python bench/cache_share.py [--corpus] [--thread] [--questions 10]

A session of 10 architecture questions goes through the real `Architect` (the same prompt,
passages and two requests per answer as a Slack mention), with passages retrieved by the real
searcher from `knowledge/` (and `../shared/corpora/next-cloudphone` with `--corpus`).

Against the fake Anthropic server by default (tokens estimated as characters / 4, caching
emulated as documented in tests/fakes/anthropic.py). With ANTHROPIC_API_KEY set it calls the
real API instead (ANTHROPIC_BASE_URL and ARCHBOT_MODEL are honoured): real tokens, real cost.

`--thread` asks the questions as follow-ups in one thread (earlier answers become turns);
the default asks each as a new mention.

Printed: per answer, input tokens (uncached), cache reads, cache writes, output tokens and
cost; then the share of input tokens read from the cache over questions 2..N (target ≥ 50%),
and the median tokens per answer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.architect import Architect  # noqa: E402
from bot.config import Settings, load_settings  # noqa: E402
from bot.retrieval import Searcher, index_sources  # noqa: E402
from bot.types import Answer, Turn  # noqa: E402
from tests.fakes.anthropic import DEFAULT_API_KEY, FakeAnthropic, Segment, default_reply  # noqa: E402
from tests.fakes.anthropic import Reply as Scripted  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpora" / "next-cloudphone"
QUESTIONS = [
    "How do we keep a slow downstream service from taking ours down?",
    "How should device events reach the notification service reliably?",
    "Should billing publish events with a transactional outbox or straight to RabbitMQ?",
    "What is our strategy for retries and dead-letter queues on consumers?",
    "How do we run a saga across billing and device provisioning, and what compensates a failure?",
    "When is CQRS worth it for the device listing pages?",
    "How do we cache user profiles in Redis without serving stale permissions?",
    "How should services find each other: Consul DNS or the API gateway?",
    "What should we alert on for the message consumers?",
    "How do we migrate the device service's schema without downtime?",
]


ANSWER_CHARS = 3200  # a fake answer of about 800 tokens, the size of a real design answer


def sized_reply(body: dict) -> Scripted:
    """The fake's default reply, with the answer padded to a realistic length (it is re-sent as input)."""
    reply = default_reply(body)
    if (body.get("tool_choice") or {}).get("type") != "none" or not isinstance(reply.text, list):
        return reply
    filler = "This paragraph stands in for the reasoning, options and steps of a real answer. "
    padding = (filler * (ANSWER_CHARS // len(filler) + 1))[:ANSWER_CHARS]
    cited = [s for s in reply.text if s.citations] or [Segment("")]
    return Scripted(text=[reply.text[0], Segment(padding + " "), *[Segment(c.text, list(c.citations)) for c in cited]])


def share(answers: list[Answer]) -> float:
    read = sum(a.usage.cache_read_input_tokens for a in answers)
    total = sum(
        a.usage.input_tokens + a.usage.cache_read_input_tokens + a.usage.cache_creation_input_tokens for a in answers
    )
    return read / total if total else 0.0


async def run(args: argparse.Namespace) -> int:
    fake: FakeAnthropic | None = None
    workdir = Path(tempfile.mkdtemp(prefix="archbot-cache-"))
    overrides: dict[str, object] = {"db_path": workdir / "bench.db"}
    if args.corpus and CORPUS.is_dir():
        overrides["docs"] = [CORPUS]
    if os.environ.get("ANTHROPIC_API_KEY"):
        settings: Settings = load_settings(**overrides)
        where = f"the API at {settings.anthropic_base_url or 'https://api.anthropic.com'}"
    else:
        fake = FakeAnthropic()
        fake.default_reply = sized_reply
        await fake.start()
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            anthropic_api_key=DEFAULT_API_KEY,
            anthropic_base_url=fake.base_url,
            model=fake.models[0],
            **overrides,
        )
        where = "the fake API (tokens ≈ characters / 4)"
    started = time.perf_counter()
    await asyncio.to_thread(index_sources, settings)
    searcher = Searcher(settings.db_path, docs_url=settings.docs_url)
    print(f"model {settings.model} on {where}; index built in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    architect = Architect(settings)
    answers: list[Answer] = []
    turns: list[Turn] = []
    questions = QUESTIONS[: args.questions]
    print(f"{'#':>2}  {'input':>7} {'cache read':>10} {'cache write':>11} {'output':>7} {'share':>6} {'cost $':>9}")
    try:
        for n, question in enumerate(questions, 1):
            hits = await asyncio.to_thread(searcher.search, question, settings.search_k)
            turns = [*turns, Turn("user", question)] if args.thread else [Turn("user", question)]
            answer = await architect.respond(turns=turns, hits=hits)
            if args.thread:
                turns.append(Turn("assistant", answer.text))
            answers.append(answer)
            u = answer.usage
            print(
                f"{n:>2}  {u.input_tokens:>7} {u.cache_read_input_tokens:>10} {u.cache_creation_input_tokens:>11}"
                f" {u.output_tokens:>7} {share([answer]):>6.0%} {u.cost_usd:>9.5f}"
            )
    finally:
        await architect.close()
        searcher.close()
        if fake is not None:
            await fake.stop()

    later = answers[1:]
    per_answer = [
        a.usage.input_tokens + a.usage.cache_read_input_tokens + a.usage.cache_creation_input_tokens for a in answers
    ]
    print()
    print(f"answers: {len(answers)} ({'one thread' if args.thread else 'separate mentions'}), two requests each")
    print(
        f"median input tokens per answer: {statistics.median(per_answer):.0f}; "
        f"median output tokens: {statistics.median(a.usage.output_tokens for a in answers):.0f}"
    )
    print(f"share of input tokens read from cache, questions 2..{len(answers)}: {share(later):.1%} (target ≥ 50%)")
    cost = sum(a.usage.cost_usd for a in answers)
    print(f"share over all {len(answers)} questions: {share(answers):.1%}; total cost ${cost:.4f}")
    return 0 if later and share(later) >= 0.5 else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", action="store_true", help="also index ../shared/corpora/next-cloudphone")
    parser.add_argument("--thread", action="store_true", help="ask the questions as follow-ups in one thread")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS), help="how many questions (max 10)")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
