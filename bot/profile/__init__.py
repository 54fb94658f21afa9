"""The team profile: what the architect is told about the team, drafted from the team's own docs.

`archbot profile draft` reads the indexed docs (not the bundled pattern library) and writes a
markdown profile whose every line cites the doc paths it came from. Without an API key the
draft is extractive (`extract`: service folders and READMEs, ports, exchanges and queues,
datastores, shared libraries, PM2/Consul/gateway, patterns, debts from audits); with one, the
model rewrites that draft from retrieved passages (`model`), and each of its lines is checked
against the index. The team reviews the file, deletes the draft marker and points
`ARCHBOT_TEAM_PROFILE` at it; until then `archbot doctor` warns.

Public interface:
- `draft_profile(settings, *, use_model=True)` → `Draft` (markdown and figures);
- `DRAFT_MARKER`: the text a draft carries until it has been reviewed.
"""

from __future__ import annotations

from bot.profile.draft import Draft, draft_profile
from bot.profile.render import DRAFT_MARKER

__all__ = ["DRAFT_MARKER", "Draft", "draft_profile"]
