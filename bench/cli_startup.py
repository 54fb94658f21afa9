"""How long a CLI answer takes to start and finish: `archbot search` and `archbot ask` without a key.

    python bench/cli_startup.py [--runs 9] [--baseline-ref REF] [--only current|baseline]

Each code tree (this one, and `--baseline-ref`: main before the lazy imports of issue #14) is
exported with `git archive`, gets its own database indexed once from its bundled knowledge/, then
every command runs `--runs` times as a fresh process (`python -m bot ...`, PYTHONPATH = the tree,
no ANTHROPIC_API_KEY), the trees interleaved round by round so both see the same machine load.
`python -c pass` is measured in the same rounds: the interpreter's own start, the floor no change
in archbot can go below. Prints median, p90 and min wall time per command and tree, in seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE = "d92f92a"  # main with the agent view landed, before the lazy imports
QUESTION = "How do we keep a slow downstream service from taking ours down?"
COMMANDS: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "archbot search": ["-m", "bot", "search", "circuit breaker"],
    "archbot ask (no key)": ["-m", "bot", "ask", QUESTION],
}


def export_tree(ref: str, into: Path) -> Path:
    data = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def child_env(tree: Path, db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "ARCHBOT_"))}
    env.update(PYTHONPATH=str(tree), ARCHBOT_DB=str(db))
    return env


def run(args: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed in {env['PYTHONPATH']}:\n{proc.stderr[-2000:]}")
    return elapsed


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--baseline-ref", default=DEFAULT_BASELINE)
    parser.add_argument("--only", choices=("current", "baseline"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="archbot-startup-") as tmp:
        work = Path(tmp)
        trees: dict[str, Path] = {}
        if args.only != "baseline":
            trees["current"] = ROOT
        if args.only != "current":
            trees[f"baseline {args.baseline_ref}"] = export_tree(args.baseline_ref, work / "baseline")
        envs: dict[str, dict[str, str]] = {}
        for i, (name, tree) in enumerate(trees.items()):
            envs[name] = child_env(tree, work / f"index-{i}.db")
            run(["-m", "bot", "index", "--quiet"], envs[name], work)  # indexed once, outside the timings
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.runs):
            for name in trees:
                for label, command in COMMANDS.items():
                    times.setdefault((label, name), []).append(run(command, envs[name], work))

    print(f"wall time per process, {args.runs} runs, trees interleaved (seconds)")
    print(f"{'command':24} {'tree':22} {'median':>8} {'p90':>8} {'min':>8}")
    for label in COMMANDS:
        for name in trees:
            values = times[(label, name)]
            print(f"{label:24} {name:22} {statistics.median(values):8.3f} {pct(values, 90):8.3f} {min(values):8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
