"""Plain values that flow down the pipeline: event → job → context → retrieval → model → render → post.

Outside data is parsed once at the edge (pydantic); inside, these dataclasses are passed.
Identity lives in the store, not in these values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant"]
JobKind = Literal["mention", "dm", "followup", "review", "assistant"]
JobState = Literal["queued", "running", "done", "failed"]
AnswerKind = Literal["answer", "clarify", "review", "retrieval_only", "failure"]


@dataclass(frozen=True)
class Hit:
    """One retrieved passage."""

    path: str  # relative to the folder it came from, '/'-separated
    heading: str  # heading path, ' > '-joined
    score: float
    snippet: str  # short excerpt for display
    text: str  # the passage as indexed (sent to the model)
    source: str  # which folder: 'knowledge' or the docs folder's name
    url: str | None = None
    title: str = ""  # document title
    status: str = "current"  # current | archived | proposal | report (see bot/retrieval/provenance.py)
    date: str | None = None  # the document's date, ISO (YYYY-MM-DD)
    date_source: str | None = None  # where the date came from: git | doc | mtime

    @property
    def ref(self) -> str:
        """How the passage is named to the model and in citations: its URL when set, else its path."""
        return self.url or self.path


@dataclass(frozen=True)
class Turn:
    """One conversation turn as the model sees it."""

    role: Role
    text: str


@dataclass
class Job:
    """A unit of work: one question (or review) that must end exactly once."""

    id: int
    kind: JobKind
    channel: str
    ts: str  # the message that asked (dedupe key with channel)
    thread_ts: str  # the thread to answer in
    user: str | None
    text: str
    channel_type: str = "channel"  # channel | group | im | mpim | command
    team: str | None = None
    attempts: int = 0
    state: JobState = "queued"
    reply_ts: str | None = None  # set once a reply message exists (resume updates it, never re-posts)
    created_at: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. a slash command's response_url
    resumed: bool = False  # claimed before (a crash, an expired lease, a re-queue at shutdown): tidy up first


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class Citation:
    """A passage the answer relies on, mapped back to a real path.

    `number` is the inline marker (`[n]`) where the model quoted it, in order of first quote;
    0 means the model only listed it as a source (it is shown apart from the quoted ones).
    """

    path: str
    source: str
    heading: str = ""
    url: str | None = None
    cited_text: str = ""  # the first passage the model quoted from it
    number: int = 0
    status: str = ""  # the doc's status (current, archived, proposal, report) when known
    date: str = ""  # the doc's date (YYYY-MM-DD) when known


@dataclass
class Disagreement:
    """Sources that contradict each other, as the model recorded them."""

    summary: str
    sides: list[str] = field(default_factory=list)  # the path of each side


@dataclass
class Answer:
    """What the architect produced for one job, ready to render."""

    kind: AnswerKind
    text: str  # markdown (standard), rendered for Slack by bot/slack/render.py
    citations: list[Citation] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)  # clarifying questions
    # kind "clarify": the provisional recommendation the text gives while those questions are open
    provisional: str | None = None
    assumptions: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # where sources disagree (with paths)
    gaps: list[str] = field(default_factory=list)  # what the docs could not answer
    decision: str | None = None  # a decision reached, if any (for the digest)
    topic: str | None = None  # a short topic label (for the digest)
    confidence: str | None = None
    confidence_reason: str | None = None
    disagreements: list[Disagreement] = field(default_factory=list)  # `conflicts`, with each side's path
    truncated: bool = False  # stopped at the length limit (max_tokens)
    model: str | None = None
    usage: Usage = field(default_factory=Usage)  # both model requests (answer and record)
    record_usage: Usage = field(default_factory=Usage)  # the record request's share of `usage`
