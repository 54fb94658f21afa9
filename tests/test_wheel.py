"""`pip install .` (not editable): the wheel carries knowledge/ and prompts/, and an installed copy
answers `archbot ask` from its bundled pattern library, away from this source tree.

The wheel is built once (with this environment's setuptools: no isolated build) and installed
with `--no-deps --target` into a temp folder; its `archbot` script runs with that folder first on
PYTHONPATH (the dependencies come from this environment), from a directory that is not the
repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "How do we keep a slow downstream service from taking ours down?"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    tmp = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = subprocess.run(
        [*pip, "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist")],
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        pytest.fail(f"pip wheel failed:\n{built.stderr[-3000:]}")
    [wheel] = (tmp / "dist").glob("archbot-*.whl")
    site = tmp / "site"
    done = subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.fail(f"pip install failed:\n{done.stderr[-3000:]}")
    yield wheel, site


def run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "ARCHBOT_", "SLACK_"))}
    env.update(PYTHONPATH=str(site), ARCHBOT_DB=str(cwd / "archbot.db"))
    return subprocess.run(
        [sys.executable, str(site / "bin" / "archbot"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def test_the_wheel_ships_the_pattern_library_and_the_prompts(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (ROOT / "knowledge").glob("*.md"):
        assert f"bot/_bundled/knowledge/{path.name}" in names
    for path in (ROOT / "prompts").glob("*.md"):
        assert f"bot/_bundled/prompts/{path.name}" in names


def test_an_installed_wheel_answers_ask_from_the_bundled_library(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, site = installed
    where = subprocess.run(
        [sys.executable, "-c", "import bot.config as c; print(c.__file__); print(c.KNOWLEDGE_DIR)"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site)},
        cwd=tmp_path,
    ).stdout.split()
    assert where[0].startswith(str(site)) and where[1] == str(site / "bot" / "_bundled" / "knowledge")

    asked = run_installed(site, tmp_path, "ask", QUESTION)
    assert asked.returncode == 0, asked.stderr
    assert "indexing knowledge/" in asked.stderr
    assert "(knowledge)" in asked.stdout and "circuit-breaker.md" in asked.stdout

    indexed = run_installed(site, tmp_path, "index")
    assert indexed.returncode == 0, indexed.stderr
    assert "0 removed" in indexed.stdout and "unchanged" in indexed.stdout
