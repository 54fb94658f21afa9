"""The team profile: what the architect is told about the team, drafted from the team's own docs.

Public interface:
- `DRAFT_MARKER`: the text a drafted profile carries until the team has reviewed it (doctor warns
  while it is there).
"""

from __future__ import annotations

DRAFT_MARKER = "archbot profile draft: not reviewed yet"

__all__ = ["DRAFT_MARKER"]
