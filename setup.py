"""Packaging hook: knowledge/ and prompts/ live at the top of the repository (where people edit
them), and an installed wheel carries a copy of both under bot/_bundled/ (see bot/config.py).
Everything else about the package is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUNDLED = ("knowledge", "prompts")


class BuildPyWithBundle(build_py):
    """build_py, plus the bundled pattern library and prompts copied into the package."""

    def run(self) -> None:
        super().run()
        root = Path(__file__).resolve().parent
        for name in BUNDLED:
            target = Path(self.build_lib) / "bot" / "_bundled" / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(root / name, target)


setup(cmdclass={"build_py": BuildPyWithBundle})
