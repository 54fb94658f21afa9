"""The README's configuration table, generated from `Settings` so the two cannot drift apart.

`render_config_table()` builds a markdown table (variable | meaning | default) from
`Settings.model_fields`: the environment name from `bot.config.env_name`, the meaning from
each field's description, the default from the field itself. `tests/test_readme.py` checks
that README.md holds exactly this table, and

    python -m bot.docs_table --write README.md

rewrites the text between the `<!-- config-table:start -->` and `<!-- config-table:end -->`
markers after a setting changes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from bot.config import PROJECT_ROOT, Settings, env_name

START_MARKER = "<!-- config-table:start -->"
END_MARKER = "<!-- config-table:end -->"


def _cell(text: str) -> str:
    """One table cell: no pipes, no line breaks."""
    return " ".join(text.replace("|", "\\|").split())


def render_default(field: FieldInfo) -> str:
    """How a field's default reads in the table."""
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, list | tuple) and not value:
        return "none"
    if isinstance(value, Path):
        if value.is_absolute():
            try:  # a bundled file: show it relative to the project, not this machine's path
                return f"`{value.relative_to(PROJECT_ROOT).as_posix()}` (bundled)"
            except ValueError:
                return f"`{value.as_posix()}`"
        text = value.as_posix()
        return f"`{text if text.startswith('.') else './' + text}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def config_rows() -> list[tuple[str, str, str]]:
    """(variable, meaning, default) for every setting, in the class's order."""
    rows = []
    for name, field in Settings.model_fields.items():
        rows.append((f"`{env_name(name)}`", _cell(field.description or ""), render_default(field)))
    return rows


def render_config_table() -> str:
    """The markdown table, one line a setting, ending in a newline."""
    lines = ["| variable | meaning | default |", "| --- | --- | --- |"]
    lines += [f"| {var} | {meaning} | {default} |" for var, meaning, default in config_rows()]
    return "\n".join(lines) + "\n"


def replace_table(text: str, table: str) -> str:
    """`text` with the part between the markers replaced by `table`; ValueError without markers."""
    start = text.find(START_MARKER)
    end = text.find(END_MARKER)
    if start < 0 or end < 0 or end < start:
        raise ValueError(f"markers {START_MARKER} ... {END_MARKER} not found in order")
    head = text[: start + len(START_MARKER)]
    return f"{head}\n{table}{text[end:]}"


def extract_table(text: str) -> str | None:
    """The text between the markers (None when they are absent), as `replace_table` writes it."""
    start = text.find(START_MARKER)
    end = text.find(END_MARKER)
    if start < 0 or end < 0 or end < start:
        return None
    return text[start + len(START_MARKER) : end].removeprefix("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.docs_table", description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="README", type=Path, help="Replace the table between the markers.")
    args = parser.parse_args(argv)
    table = render_config_table()
    if args.write is None:
        sys.stdout.write(table)
        return 0
    path: Path = args.write
    try:
        updated = replace_table(path.read_text(encoding="utf-8"), table)
    except (OSError, ValueError) as exc:
        print(f"docs_table: {path}: {exc}", file=sys.stderr)
        return 1
    path.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
