"""Retrieval quality on ../shared/corpora/next-cloudphone: recall@5 and MRR@10 over distinct files.

    python bench/retrieval_quality.py [--corpus PATH] [--show-misses] [--regrep] [--rewrite-file PATH]

Indexes the corpus (plus knowledge/, as the bot does) into a temporary database, runs every
question of `questions` in bench/questions.yaml through `Searcher`, and prints, overall / per
language / per kind:

- recall@5: share of questions with a relevant file among the top 5 distinct files (answer recall);
- file-recall@5: |relevant ∩ top 5| / min(|relevant|, 5), averaged (how many of the places that
  answer it are shown);
- MRR@10: mean reciprocal rank of the first relevant file within the top 10.

The same run measures the baseline the issue names: plain FTS5 `unicode61` over the same chunks,
the question's words OR-ed, BM25. It then scores the `knowledge` questions (generic pattern
questions) on an index of knowledge/ alone.

`--rewrite-file PATH` (a YAML `rewrites: {question id: text}`, e.g. bench/rewrites.yaml) also
runs the questions with those texts standing in for the model's query rewrite, and prints the
result beside the plain one: a simulation of the optional model rewrite, not a measurement of it.

`--regrep` recomputes each question's `relevant` list from its `grep` patterns (a file is
relevant when it matches all of them, case-insensitive) and rewrites the YAML.
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.config import Settings  # noqa: E402
from bot.retrieval import Searcher, index_sources  # noqa: E402
from bot.retrieval.chunking import parse  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "corpora" / "next-cloudphone"
QUESTIONS = Path(__file__).resolve().parent / "questions.yaml"
KNOWLEDGE_MARK = "# -- knowledge/ questions --"  # where the hand-made knowledge/ section starts


def load(path: Path, section: str = "questions") -> list[dict]:
    return yaml.safe_load(path.read_text(encoding="utf-8")).get(section) or []


class FileRewriter:
    """Stands in for the model rewriter: the hand-written rewrite of each question, by question text."""

    def __init__(self, path: Path, questions: list[dict]) -> None:
        by_id = yaml.safe_load(path.read_text(encoding="utf-8"))["rewrites"]
        self.texts = {q["q"]: by_id[q["id"]] for q in questions if q["id"] in by_id}

    def rewrite(self, query: str) -> str | None:
        return self.texts.get(query)

    def needs_model(self, query: str) -> bool:
        return False  # read from a file: here at once, like a cached rewrite (bot/retrieval/rewrite_wait.py)


def regrep(path: Path, corpus: Path) -> None:
    files = sorted(corpus.rglob("*.md"))
    texts = {f.relative_to(corpus).as_posix(): f.read_text(encoding="utf-8", errors="replace") for f in files}
    raw = path.read_text(encoding="utf-8")
    header = raw[: raw.index("questions:")]
    tail = raw[raw.index(KNOWLEDGE_MARK) :] if KNOWLEDGE_MARK in raw else ""
    questions = load(path)
    for q in questions:
        patterns = [re.compile(p, re.IGNORECASE) for p in q["grep"]]
        q["relevant"] = sorted(rel for rel, text in texts.items() if all(p.search(text) for p in patterns))
        print(f"{q['id']}: {len(q['relevant'])} relevant", file=sys.stderr)
    body = yaml.safe_dump({"questions": questions}, allow_unicode=True, sort_keys=False, width=120)
    path.write_text(header + body + tail, encoding="utf-8")


def metrics(ranked: list[str], relevant: set[str]) -> tuple[float, float, float]:
    top5 = ranked[:5]
    hit5 = 1.0 if any(r in relevant for r in top5) else 0.0
    file5 = len(relevant & set(top5)) / min(len(relevant), 5)
    mrr = 0.0
    for n, r in enumerate(ranked[:10], 1):
        if r in relevant:
            mrr = 1.0 / n
            break
    return hit5, file5, mrr


def distinct(paths: list[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        if p not in out:
            out.append(p)
    return out


class Baseline:
    """Plain FTS5 unicode61 over the same chunks (body with heading), question words OR-ed."""

    def __init__(self, corpus: Path) -> None:
        self.conn = sqlite3.connect(":memory:")
        self.conn.execute("CREATE VIRTUAL TABLE b USING fts5(path UNINDEXED, body)")
        rows = []
        for f in sorted(corpus.rglob("*.md")):
            rel = f.relative_to(corpus).as_posix()
            doc = parse(f.read_text(encoding="utf-8", errors="replace"), fallback_title=f.stem)
            rows.extend((rel, " > ".join(c.heading) + "\n" + c.text) for c in doc.chunks)
        self.conn.executemany("INSERT INTO b VALUES (?, ?)", rows)

    def ranked(self, query: str) -> list[str]:
        words = re.findall(r"\w+", query)
        if not words:
            return []
        match = " OR ".join('"' + w.replace('"', '""') + '"' for w in words)
        rows = self.conn.execute("SELECT path FROM b WHERE b MATCH ? ORDER BY rank LIMIT 200", (match,)).fetchall()
        return distinct([r[0] for r in rows])[:10]


def report(title: str, results: list[tuple[dict, tuple[float, float, float]]]) -> None:
    groups: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for q, m in results:
        groups["overall"].append(m)
        groups[f"lang={q['lang']}"].append(m)
        groups[f"kind={q['kind']}"].append(m)
    print(f"\n{title}")
    print(f"  {'group':<22} {'n':>3}  {'recall@5':>8}  {'file-recall@5':>13}  {'MRR@10':>6}")
    order = [
        "overall",
        *sorted(k for k in groups if k.startswith("lang")),
        *sorted(k for k in groups if k.startswith("kind")),
    ]
    for key in order:
        ms = groups[key]
        n = len(ms)
        print(
            f"  {key:<22} {n:>3}  {sum(m[0] for m in ms) / n:>8.3f}  {sum(m[1] for m in ms) / n:>13.3f}"
            f"  {sum(m[2] for m in ms) / n:>6.3f}"
        )


def run(
    searcher: Searcher, questions: list[dict], source: str, *, show_misses: bool
) -> tuple[list[tuple[dict, tuple[float, float, float]]], list[float]]:
    """Each question's metrics over the hits from `source`, and the search latencies."""
    results = []
    latencies = []
    for q in questions:
        relevant = set(q["relevant"])
        started = time.perf_counter()
        hits = searcher.search(q["q"], k=10)
        latencies.append(time.perf_counter() - started)
        ranked = distinct([h.path for h in hits if h.source == source])
        m = metrics(ranked, relevant)
        results.append((q, m))
        if show_misses and m[0] == 0:
            print(f"\nMISS {q['id']} [{q['lang']}/{q['kind']}] {q['q']}  ({len(relevant)} relevant)")
            for h in hits[:5]:
                print(f"    {h.score:.3f} {h.path} | {h.heading[:70]}")
    return results, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    parser.add_argument("--show-misses", action="store_true", help="print questions with no relevant file in top 5")
    parser.add_argument("--regrep", action="store_true", help="recompute `relevant` from `grep` and rewrite the YAML")
    parser.add_argument("--rewrite-file", type=Path, help="YAML of hand-written rewrites standing in for the model")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        print(f"corpus not found: {args.corpus}", file=sys.stderr)
        return 2
    if args.regrep:
        regrep(args.questions, args.corpus)
        return 0
    questions = load(args.questions)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(db_path=Path(tmp) / "bench.db", docs=[args.corpus])
        rep = index_sources(settings)
        print(f"index: {rep.summary()}")
        source = args.corpus.resolve().name
        searcher = Searcher(settings.db_path)
        ours, latencies = run(searcher, questions, source, show_misses=args.show_misses)
        searcher.close()
        base = [(q, metrics(Baseline(args.corpus).ranked(q["q"]), set(q["relevant"]))) for q in questions]
        rewritten: list[tuple[dict, tuple[float, float, float]]] = []
        if args.rewrite_file:
            rewriter = FileRewriter(args.rewrite_file, questions)
            searcher = Searcher(settings.db_path, rewriter=rewriter)
            rewritten, _ = run(searcher, questions, source, show_misses=False)
            searcher.close()

        knowledge = load(args.questions, "knowledge")
        kn: list[tuple[dict, tuple[float, float, float]]] = []
        if knowledge:
            ksettings = Settings(db_path=Path(tmp) / "knowledge.db")
            index_sources(ksettings)
            searcher = Searcher(ksettings.db_path)
            kn, _ = run(searcher, knowledge, "knowledge", show_misses=args.show_misses)
            searcher.close()
    print(
        f"\n{len(questions)} questions; relevant files per question: median "
        f"{sorted(len(q['relevant']) for q in questions)[len(questions) // 2]}"
    )
    report("archbot", ours)
    report("baseline: FTS5 unicode61, words OR-ed", base)
    if rewritten:
        ids = set(FileRewriter(args.rewrite_file, questions).texts)
        report("archbot + hand-written rewrites (simulated model rewrite)", rewritten)
        report("  only the rewritten questions: plain", [r for r in ours if r[0]["q"] in ids])
        report("  only the rewritten questions: with rewrite", [r for r in rewritten if r[0]["q"] in ids])
    if kn:
        report(f"knowledge/ only: {len(kn)} generic pattern questions", kn)
    latencies.sort()
    print(
        f"\nsearch latency over the questions: p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
        f"max {latencies[-1] * 1000:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
