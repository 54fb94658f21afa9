"""`archbot profile draft` on ../shared/corpora/next-cloudphone, offline: coverage, citations, time.

    python bench/profile_draft.py [--corpus PATH] [--runs 3]

The corpus is indexed once into a temporary database (timed apart); then the extractive draft
runs `--runs` times (the median is printed). Figures:
- services: the service folders under `backend/` (every folder there except shared-code ones,
  counted from the disk, not from the draft) that the draft lists, and what else it lists;
- citations: bullet lines whose backticked paths exist on disk under the corpus, of all bullets;
- baseline, same run: the bundled example profile (what the model was told before), scored the
  same way.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.config import EXAMPLE_TEAM_PROFILE, Settings  # noqa: E402
from bot.profile import draft_profile  # noqa: E402
from bot.profile.extract import LIBRARY_DIRS  # noqa: E402
from bot.retrieval import index_sources  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "corpora" / "next-cloudphone"
_CITED = re.compile(r"`([^`\s]+\.[A-Za-z0-9]+)`")
_SERVICE = re.compile(r"^- \*\*([\w-]+)\*\*")


def score(markdown: str, corpus: Path, real: set[str]) -> dict[str, object]:
    bullets = [line for line in markdown.splitlines() if line.lstrip().startswith("- ")]
    cited = [line for line in bullets if any((corpus / p).is_file() for p in _CITED.findall(line))]
    services_section = markdown.split("## Services", 1)[-1].split("\n## ", 1)[0] if "## Services" in markdown else ""
    listed = {m.group(1) for line in services_section.splitlines() if (m := _SERVICE.match(line))}
    named = {name for name in real if name in markdown}
    return {"bullets": len(bullets), "cited": len(cited), "listed": listed, "named": named}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    corpus: Path = args.corpus
    if not (corpus / "backend").is_dir():
        print(f"no corpus at {corpus}", file=sys.stderr)
        return 2
    real = {p.name for p in (corpus / "backend").iterdir() if p.is_dir() and p.name not in LIBRARY_DIRS}
    with tempfile.TemporaryDirectory(prefix="archbot-profile-") as tmp:
        settings = Settings(_env_file=None, db_path=Path(tmp) / "p.db", docs=[corpus])  # type: ignore[call-arg]
        started = time.perf_counter()
        index_sources(settings)
        index_seconds = time.perf_counter() - started
        times, draft = [], None
        for _ in range(args.runs):
            draft = draft_profile(settings, use_model=False)
            times.append(draft.seconds)
    assert draft is not None
    ours = score(draft.markdown, corpus, real)
    base = score(EXAMPLE_TEAM_PROFILE.read_text(encoding="utf-8"), corpus, real)
    found = ours["listed"] & real  # type: ignore[operator]
    extra = sorted(ours["listed"] - real)  # type: ignore[operator]
    print(
        f"corpus {corpus.name}: {draft.docs} docs; index built in {index_seconds:.1f} s (once, not in the draft time)"
    )
    print(f"service folders under backend/ (from disk): {len(real)}: {', '.join(sorted(real))}")
    print(f"{'':28} {'draft (offline)':>16} {'bundled example':>16}")
    listed_ours = f"{len(found)}/{len(real)}"
    listed_base = f"{len(base['named'])}/{len(real)}"  # type: ignore[arg-type]
    print(f"{'backend services listed':28} {listed_ours:>16} {listed_base:>16}")
    cite_ours = f"{ours['cited']}/{ours['bullets']}"
    cite_base = f"{base['cited']}/{base['bullets']}"
    print(f"{'bullet lines citing a real path':28} {cite_ours:>16} {cite_base:>16}")
    print(f"other services listed: {', '.join(extra) or 'none'}")
    print(
        f"draft time (index up to date): median {statistics.median(times):.2f} s over {len(times)} runs "
        f"(min {min(times):.2f}, max {max(times):.2f})"
    )
    missing = sorted(real - found)
    if missing:
        print(f"missed: {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
