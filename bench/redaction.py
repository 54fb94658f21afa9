"""Secret redaction on ../shared/corpora/next-cloudphone: what is found, by kind, and what it costs.

    python bench/redaction.py [--corpus PATH] [--runs 3]

Prints the credential values redacted by kind and the files holding them (the same count
`archbot index` reports), the redaction time over the corpus' text alone, and the full index
time with redaction and, as the baseline of the same run, with redaction switched off (each full
index in a fresh subprocess on an empty database; medians over --runs). Target (issue 12): the
full index stays ≤ 20 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpora" / "next-cloudphone"
sys.path.insert(0, str(ROOT))

CHILD = """
import json, sys
from pathlib import Path
sys.path.insert(0, {root!r})
import bot.retrieval.index as index
from bot.config import Settings
from bot.retrieval.redact import Redaction
if {off!r}:  # the baseline: the indexer exactly as before redaction existed
    index.redact_secrets = lambda text: Redaction(text=text)
report = index.index_sources(Settings(db_path=Path({db!r}), docs=[Path({corpus!r})]))
print(json.dumps({{"seconds": report.seconds, "values": report.redacted_values, "files": report.redacted_files}}))
"""


def full_index(corpus: Path, *, off: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        code = CHILD.format(root=str(ROOT), db=str(Path(tmp) / "ix.db"), corpus=str(corpus), off=off)
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not args.corpus.is_dir():
        print(f"corpus not found: {args.corpus}", file=sys.stderr)
        return 2

    from bot.retrieval.index import _read, _walk
    from bot.retrieval.redact import redact_secrets

    skipped: Counter[str] = Counter()
    texts = []
    for found in _walk(args.corpus.name, args.corpus, skipped):
        text, _reason, _raw = _read(found.path, found.path.stat())
        if text is not None:
            texts.append(text)
    kinds: Counter[str] = Counter()
    files = 0
    started = time.perf_counter()
    for text in texts:
        result = redact_secrets(text)
        kinds.update(result.kinds)
        files += bool(result.count)
    redact_seconds = time.perf_counter() - started

    print(f"corpus: {args.corpus} ({len(texts)} files read, {sum(map(len, texts)) / 1e6:.1f} M characters)")
    print(f"redacted: {sum(kinds.values())} values in {files} files")
    for kind, n in kinds.most_common():
        print(f"  {kind:<22} {n}")
    print(f"redaction alone: {redact_seconds:.2f} s over the corpus text")

    on, off = [], []
    for _ in range(args.runs):  # interleaved, so machine load hits both alike
        off.append(full_index(args.corpus, off=True))
        on.append(full_index(args.corpus, off=False))
    print(f"full index, median of {args.runs} (fresh process, empty database):")
    print(f"  without redaction (baseline): {statistics.median(r['seconds'] for r in off):.2f} s")
    print(f"  with redaction:               {statistics.median(r['seconds'] for r in on):.2f} s (target ≤ 20 s)")
    print(f"  index reports: {on[-1]['values']} values redacted in {on[-1]['files']} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
