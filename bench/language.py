"""The asker's language, read from the question (bot/i18n.py): accuracy and cost per question.

    python bench/language.py [--repeat 2000]

Questions: the two hand-labelled benchmark sets (`bench/questions.yaml`, `bench/design_questions.yaml`:
each question carries the `lang` its author wrote it in), plus the same questions as Slack delivers
them in a thread (`<@U…>` mention prefixed) and short follow-ups: Latin ones ("continue", "ok?")
must take the thread's language, a Chinese one ("继续") is Chinese whatever the thread. Figures:
- accuracy of `detect_language` against the labels;
- baseline, same run: "any CJK character means Chinese" (what a naive check would do);
- microseconds per question (median of `--repeat` passes over the whole set).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.i18n import detect_language  # noqa: E402

FOLLOW_UPS = ("continue", "继续", "ok?", "go on", "thanks!", "why?")


def naive(text: str, *_: str) -> str:
    return "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en"


def load() -> list[tuple[str, tuple[str, ...], str]]:
    """(text, earlier texts in the thread, expected language)."""
    cases: list[tuple[str, tuple[str, ...], str]] = []
    for name in ("questions.yaml", "design_questions.yaml"):
        for q in yaml.safe_load((ROOT / "bench" / name).read_text(encoding="utf-8"))["questions"]:
            cases.append((q["q"], (), q["lang"]))
            cases.append((f"<@U0ARCHBOT> {q['q']}", (), q["lang"]))
    asked = [(text, lang) for text, _, lang in cases[::2]]
    for i, follow_up in enumerate(FOLLOW_UPS * 4):
        text, lang = asked[(i * 7) % len(asked)]
        cases.append((follow_up, (text,), "zh" if re.search(r"[\u4e00-\u9fff]", follow_up) else lang))
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    cases = load()
    for name, fn in (("detect_language", detect_language), ("baseline: any CJK → zh", naive)):
        wrong = [(text, want) for text, earlier, want in cases if fn(text, *earlier) != want]
        passes = []
        for _ in range(max(1, args.repeat // 100)):
            started = time.perf_counter()
            for _ in range(100):
                for text, earlier, _want in cases:
                    fn(text, *earlier)
            passes.append((time.perf_counter() - started) / (100 * len(cases)))
        print(
            f"{name:24} accuracy {len(cases) - len(wrong)}/{len(cases)} = {1 - len(wrong) / len(cases):.3f}"
            f"   {statistics.median(passes) * 1e6:.1f} µs/question"
        )
        for text, want in wrong[:5]:
            print(f"    wrong (want {want}): {text[:80]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
