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

Both ways of asking for the record run in the same invocation, each with a fresh fake cache:
`full` (the earlier way: the whole answer request again, passages included) as the baseline,
then `compact` (the question, the passages listed by name, the answer). Printed: per answer and
per request (answer, record), input tokens (uncached), cache reads and writes, output tokens and
cost; then, per way, the medians over questions 2..N (the prefix already cached) of tokens per
answer, the uncached part, the share read from the cache, and the cost; and the change in cost
per answer. Exit 1 when the compact way's cache share is under 50%.
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
from bot.types import Answer, Turn, Usage  # noqa: E402
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


def total_input(u: Usage) -> int:
    return u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens


def share(usages: list[Usage]) -> float:
    read = sum(u.cache_read_input_tokens for u in usages)
    total = sum(total_input(u) for u in usages)
    return read / total if total else 0.0


def minus(a: Usage, b: Usage) -> Usage:
    """The answer request's usage: the total less the record's."""
    return Usage(
        input_tokens=a.input_tokens - b.input_tokens,
        output_tokens=a.output_tokens - b.output_tokens,
        cache_read_input_tokens=a.cache_read_input_tokens - b.cache_read_input_tokens,
        cache_creation_input_tokens=a.cache_creation_input_tokens - b.cache_creation_input_tokens,
        cost_usd=a.cost_usd - b.cost_usd,
    )


async def session(
    settings: Settings, searcher: Searcher, args: argparse.Namespace, record_context: str
) -> list[Answer]:
    """The question set through one Architect; prints a line per answer (both requests apart)."""
    architect = Architect(settings, record_context=record_context)  # type: ignore[arg-type]
    answers: list[Answer] = []
    turns: list[Turn] = []
    print(f"\nrecord request: {record_context}")
    print(
        f"{'#':>2}  {'answer: input':>13} {'read':>6} {'write':>6} {'out':>5} {'$':>8}"
        f"   {'record: input':>13} {'read':>6} {'write':>6} {'out':>5} {'$':>8}"
    )
    try:
        for n, question in enumerate(QUESTIONS[: args.questions], 1):
            hits = await asyncio.to_thread(searcher.search, question, settings.search_k)
            turns = [*turns, Turn("user", question)] if args.thread else [Turn("user", question)]
            answer = await architect.respond(turns=turns, hits=hits)
            if args.thread:
                turns.append(Turn("assistant", answer.text))
            answers.append(answer)
            a, r = minus(answer.usage, answer.record_usage), answer.record_usage
            print(
                f"{n:>2}  {a.input_tokens:>13} {a.cache_read_input_tokens:>6} {a.cache_creation_input_tokens:>6}"
                f" {a.output_tokens:>5} {a.cost_usd:>8.5f}   {r.input_tokens:>13} {r.cache_read_input_tokens:>6}"
                f" {r.cache_creation_input_tokens:>6} {r.output_tokens:>5} {r.cost_usd:>8.5f}"
            )
    finally:
        await architect.close()
    return answers


def summary(name: str, answers: list[Answer]) -> tuple[float, float]:
    """Print one strategy's medians (questions 2..N, the prefix already cached); (share, cost per answer)."""
    later = answers[1:] or answers
    records = [a.record_usage for a in later]
    answer_calls = [minus(a.usage, a.record_usage) for a in later]
    both = [a.usage for a in later]
    med = statistics.median
    cost = med(u.cost_usd for u in both)
    total, in_answer, in_record = (med(total_input(u) for u in us) for us in (both, answer_calls, records))
    print(
        f"{name:>8}: per answer (median, questions 2..{len(answers)}): input {total:.0f} tokens "
        f"(answer request {in_answer:.0f}, record request {in_record:.0f}), "
        f"uncached {med(u.input_tokens for u in both):.0f} (record {med(u.input_tokens for u in records):.0f}); "
        f"cache share {share(both):.1%} (record {share(records):.1%}); "
        f"cost ${cost:.5f} (record ${med(u.cost_usd for u in records):.5f})"
    )
    return share(both), cost


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="archbot-cache-"))
    overrides: dict[str, object] = {"db_path": workdir / "bench.db"}
    if args.corpus and CORPUS.is_dir():
        overrides["docs"] = [CORPUS]
    real_api = bool(os.environ.get("ANTHROPIC_API_KEY"))
    started = time.perf_counter()
    await asyncio.to_thread(index_sources, Settings(_env_file=None, **overrides))  # type: ignore[arg-type]
    searcher = Searcher(overrides["db_path"], docs_url=None)  # type: ignore[arg-type]
    print(f"index built in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    results: dict[str, list[Answer]] = {}
    try:
        # the earlier way first (the baseline), then the compact record; on the fake each gets a fresh cache
        for record_context in ("full", "compact"):
            fake: FakeAnthropic | None = None
            if real_api:
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
                where = "the fake API (tokens ≈ characters / 4, caching emulated)"
            try:
                results[record_context] = await session(settings, searcher, args, record_context)
            finally:
                if fake is not None:
                    await fake.stop()
    finally:
        searcher.close()
    print(
        f"\nmodel {settings.model} on {where}; {args.questions} questions "
        f"({'one thread' if args.thread else 'separate mentions'}), two requests per answer"
    )
    _, base_cost = summary("full", results["full"])
    share_now, cost_now = summary("compact", results["compact"])
    print(
        f"compact vs full: cost per answer {cost_now / base_cost - 1:+.1%}; cache share {share_now:.1%} (target ≥ 50%)"
    )
    return 0 if share_now >= 0.5 else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", action="store_true", help="also index ../shared/corpora/next-cloudphone")
    parser.add_argument("--thread", action="store_true", help="ask the questions as follow-ups in one thread")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS), help="how many questions (max 10)")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
