"""A `Profile` as the markdown file the team reviews: one fact a line, each ending with its sources.

The first line is an HTML comment carrying `DRAFT_MARKER`: the prompt loader drops a leading
comment (so it never reaches the model), and `archbot doctor` warns while it is still there.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from bot.profile.extract import Fact, Profile, Service

DRAFT_MARKER = "archbot profile draft: not reviewed yet"
HEADER = (
    f"<!-- {DRAFT_MARKER}. Read every line with the team, correct or delete what is wrong, "
    "add what is missing, then delete this comment. version: draft -->"
)


def cite(paths: Sequence[str]) -> str:
    """` — `a.md`, `b.md`` (empty when there is nothing to cite)."""
    return " — " + ", ".join(f"`{p}`" for p in paths) if paths else ""


def service_line(service: Service) -> str:
    line = f"- **{service.name}**"
    if service.port is not None:
        line += f", port {service.port}"
        if service.other_ports:
            others = "; ".join(
                f"{port} in {', '.join(f'`{p}`' for p in paths)}" for port, paths in service.other_ports.items()
            )
            line += f" (other docs say {others}: settle it)"
    if service.database:
        line += f", database `{service.database}`"
    if service.description:
        line += f": {service.description.rstrip('.')}."
    elif not service.from_folder and service.port is None:
        line += ": named in several docs, but no folder or port found; check it still exists."
    else:
        line += "."
    return line + cite(service.paths)


def fact_lines(facts: Sequence[Fact]) -> list[str]:
    return [f"- {fact.text}{cite(fact.paths)}" for fact in facts]


def render_profile(profile: Profile, *, how: str, today: date | None = None) -> str:
    """The whole draft as markdown."""
    day = (today or date.today()).isoformat()
    out = [
        HEADER,
        "# Team profile",
        "",
        f"> Drafted by `archbot profile draft` from {profile.docs} indexed docs on {day} ({how}). Each line",
        "> ends with the docs it was read from: a line is only as true as those docs. Keep it short and",
        "> current; everything here is read into the architect's system prompt.",
    ]
    sections: list[tuple[str, list[str]]] = [
        ("Services", [service_line(s) for s in profile.services]),
        ("Messaging", fact_lines(profile.messaging)),
        ("Datastores", fact_lines(profile.datastores)),
        ("Shared libraries", fact_lines(profile.libraries)),
        ("Deployment and discovery", fact_lines(profile.deployment)),
        ("Established patterns", fact_lines(profile.patterns)),
        ("Known debts (from audits and reviews)", fact_lines(profile.debts)),
    ]
    for title, lines in sections:
        out += ["", f"## {title}", *(lines or ["- (nothing found in the docs)"])]
    return "\n".join(out) + "\n"
