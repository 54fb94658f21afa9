"""What kind of document a passage comes from, and how old it is.

The model weighs a current service README differently from an archived phase report or a design
still awaiting review, so every indexed file carries:

- a **status**: `archived` (under an `archive/`, `old-*`, `backup` folder, or its head says it is
  archived, deprecated or superseded), `proposal` (its head says draft / proposed / 待评审 / 草案,
  or its name is a plan, proposal or RFC), `report` (a completed-work summary: a name or title
  such as `…_COMPLETE`, `…_REPORT`, `…_SUMMARY`, `完成报告`, `总结`), else `current`;
- a **date** and where it came from: the last commit that touched the file when its folder is a
  git checkout (`git`); else a date written in the document's head (`doc`: "日期: 2025-11-03",
  "**Date**: 2025-10-30", "最后更新 2025年11月3日"); else the file's mtime (`mtime`). A date
  written in the doc is preferred over mtime because copied or checked-out files all share the
  time of the copy, which says nothing about the document.

Everything here is a pure function of the path and the text, except `git_dates`, which runs one
`git log` per docs folder (never per file) and returns nothing when git is missing or the folder
is not a checkout.
"""

from __future__ import annotations

import logging
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

Status = Literal["current", "archived", "proposal", "report"]
DateSource = Literal["git", "doc", "mtime"]
STATUSES: tuple[Status, ...] = ("current", "archived", "proposal", "report")
HEAD_LINES = 40  # status and date markers are read from the top of a document
GIT_TIMEOUT = 20.0

_ARCHIVE_DIR = re.compile(r"(?:^|/)(?:archive[sd]?|old[-_][^/]*|backups?|deprecated|attic)(?:/|$)", re.IGNORECASE)
_ARCHIVE_HEAD = re.compile(
    r"\b(?:archived|deprecated|superseded|obsolete|no longer (?:maintained|valid|used))\b"
    r"|已归档|已废弃|已过时|已弃用|作废",
    re.IGNORECASE,
)
_STATUS_LINE = re.compile(r"^.{0,12}(?:status|状态|文档状态)\s*(?:\*\*)?\s*[:：].*$", re.IGNORECASE | re.MULTILINE)
_PROPOSAL_HEAD = re.compile(
    r"(?:status|状态)\s*[:：*]*\s*(?:\*\*)?\s*"
    r"(?:draft|proposed|proposal|rfc|under review|in review|草案|提案|待评审|评审中|待审核|规划中|设计中)"
    r"|待评审|\bdraft\b|\bproposed\b",
    re.IGNORECASE,
)
_PROPOSAL_NAME = re.compile(r"(?:^|[_\-])(?:PLAN|PROPOSAL|RFC|ROADMAP|DRAFT)(?:[_\-.]|$)", re.IGNORECASE)
_REPORT_NAME = re.compile(
    r"(?:^|[_\-])(?:COMPLETE|COMPLETED|COMPLETION|REPORT|SUMMARY|PROGRESS|STATUS|RESULTS|VERIFICATION|SESSION|FINAL)"
    r"(?:[_\-.]|$)",
    re.IGNORECASE,
)
_REPORT_TITLE = re.compile(
    r"完成报告|完成总结|实现总结|工作总结|会话总结|进度报告|进度更新|验证报告|测试报告|状态报告|已完成"
    r"|completion report|progress report|final report|summary report|\bcomplete[d!]?\b",
    re.IGNORECASE,
)
_DATE_LABEL = re.compile(
    r"(?:date|updated|last updated|created|日期|时间|更新|最后更新|更新时间|创建时间|完成时间|完成日期"
    r"|报告日期|审计日期)"
    r"[^\n\d]{0,12}(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})",
    re.IGNORECASE,
)
_DATE_ANY = re.compile(r"(?<!\d)(20\d{2})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})(?!\d)")


def _head(text: str) -> str:
    return "\n".join(text.lstrip().split("\n")[:HEAD_LINES])


def detect_status(rel: str, title: str, text: str) -> Status:
    """The status of a document from its path (relative to its folder), title and text."""
    if _ARCHIVE_DIR.search(rel):
        return "archived"
    head = _head(text)
    name = rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    # An archive marker counts in the title, a status line or the first lines, not anywhere in the
    # head: "the old init script is deprecated" does not retire the whole document.
    top = "\n".join([line for line in head.split("\n") if line.strip()][:4])
    status_lines = "\n".join(_STATUS_LINE.findall(head))
    if any(_ARCHIVE_HEAD.search(part) for part in (title, top, status_lines)):
        return "archived"
    if _PROPOSAL_HEAD.search(head) or _PROPOSAL_NAME.search(name):
        return "proposal"
    if _REPORT_NAME.search(name) or _REPORT_TITLE.search(title):
        return "report"
    return "current"


def _valid(year: str, month: str, day: str) -> str | None:
    try:
        return datetime(int(year), int(month), int(day)).date().isoformat()
    except ValueError:
        return None


def stated_date(text: str) -> str | None:
    """A date the document gives for itself in its head (labelled first, else a dated title), ISO."""
    head = _head(text)
    for pattern in (_DATE_LABEL, _DATE_ANY):
        for match in pattern.finditer(head):
            if found := _valid(*match.groups()):
                return found
    return None


def doc_date(*, rel: str, text: str, mtime_ns: int, git: dict[str, str]) -> tuple[str, DateSource]:
    """(ISO date, where it came from) for one document."""
    if rel in git:
        return git[rel], "git"
    if found := stated_date(text):
        return found, "doc"
    return datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC).date().isoformat(), "mtime"


def git_dates(root: Path) -> dict[str, str]:
    """Path (relative to root, '/'-separated) → ISO date of the last commit touching it; {} when not a checkout."""
    try:
        top = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
        if top.returncode != 0:
            return {}
        out = subprocess.run(
            ["git", "-C", str(root), "log", "--format=%x00%cs", "--name-only", "--relative", "--", "."],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    if out.returncode != 0:
        return {}
    dates: dict[str, str] = {}
    current = ""
    for line in out.stdout.split("\n"):
        if line.startswith("\x00"):
            current = line[1:].strip()
        elif line.strip() and current:
            dates.setdefault(line.strip(), current)  # newest first: keep the first date seen
    return dates
