"""Retrieval speed on ../shared/corpora/next-cloudphone: index time, re-index time, search latency, RSS.

    python bench/retrieval_speed.py [--corpus PATH] [--runs 3]

Each full index runs in a fresh subprocess on an empty database (so the peak RSS measured with
`resource.getrusage(RUSAGE_CHILDREN)` is the indexer's own); then a no-change re-index; then
the question set of bench/questions.yaml is searched several times. Targets (issue 4): full
index ≤ 15 s, no-change re-index ≤ 1 s, search p50 ≤ 30 ms and p95 ≤ 100 ms, peak RSS ≤ 400 MB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpora" / "next-cloudphone"

CHILD = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from bot.config import Settings
from bot.retrieval import index_sources
settings = Settings(db_path=Path({db!r}), docs=[Path({corpus!r})])
report = index_sources(settings)
print(json.dumps({{"seconds": report.seconds, "chunks": report.total_chunks, "files": report.indexed + report.unchanged,
                   "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def run_child(db: Path, corpus: Path) -> dict:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(root=str(ROOT), db=str(db), corpus=str(corpus))],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - started
    return result


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--runs", type=int, default=3, help="full index runs (median reported)")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        print(f"corpus not found: {args.corpus}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from bot.retrieval import Searcher

    with tempfile.TemporaryDirectory() as tmp:
        fulls = []
        for n in range(args.runs):
            db = Path(tmp) / f"full{n}.db"
            fulls.append(run_child(db, args.corpus))
        db = Path(tmp) / "full0.db"
        reindex = [run_child(db, args.corpus) for _ in range(3)]
        full_s = statistics.median(r["seconds"] for r in fulls)
        print(
            f"full index: median {full_s:.2f} s in-process "
            f"({statistics.median(r['wall'] for r in fulls):.2f} s with interpreter start), "
            f"{fulls[0]['files']} files, {fulls[0]['chunks']} chunks   [target ≤ 15 s]"
        )
        print(f"peak RSS while indexing: {max(r['rss_mb'] for r in fulls):.0f} MB   [target ≤ 400 MB]")
        print(
            f"no-change re-index: median {statistics.median(r['seconds'] for r in reindex) * 1000:.0f} ms "
            f"in-process   [target ≤ 1 s]"
        )

        questions = [q["q"] for q in yaml.safe_load((ROOT / "bench" / "questions.yaml").read_text())["questions"]]
        searcher = Searcher(db)
        searcher.search("warm up", k=8)
        latencies = []
        for _ in range(5):
            for q in questions:
                started = time.perf_counter()
                searcher.search(q, k=8)
                latencies.append((time.perf_counter() - started) * 1000)
        searcher.close()
        print(
            f"search ({len(latencies)} queries, k=8): p50 {pct(latencies, 50):.1f} ms, "
            f"p95 {pct(latencies, 95):.1f} ms, max {max(latencies):.1f} ms   [target p50 ≤ 30, p95 ≤ 100]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
