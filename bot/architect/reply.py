"""The structured part of a reply: what the model records with the `record_reply` tool.

The visible answer is streamed text (so citations survive: the API does not combine citations
with structured outputs). The typed facts about it come as the input of one tool call,
validated here with pydantic. Unknown keys are ignored rather than rejected: they carry
nothing we show, and a rejection costs a second request.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

TOOL_NAME = "record_reply"
MAX_QUESTIONS = 3


def _clean_list(value: object) -> object:
    """Drop blank entries and surrounding whitespace; a lone string becomes a one-item list."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [v.strip() if isinstance(v, str) else v for v in value if not (isinstance(v, str) and not v.strip())]
    return value


class Conflict(BaseModel):
    """Two or more sources that disagree."""

    model_config = ConfigDict(extra="ignore")

    summary: str = Field(min_length=1, max_length=600, description="What the sources disagree on, in one line.")
    sources: list[str] = Field(min_length=2, max_length=8, description="The `source` of each side, as given.")

    @field_validator("sources", mode="before")
    @classmethod
    def _clean_sources(cls, value: object) -> object:
        return _clean_list(value)


class Reply(BaseModel):
    """The typed facts about one reply."""

    model_config = ConfigDict(extra="ignore")

    kind: Literal["answer", "clarify", "review"] = Field(
        description="answer, clarify (a provisional answer plus questions that could change it) or review."
    )
    questions: list[str] = Field(
        default_factory=list, max_length=MAX_QUESTIONS, description="Clarifying questions asked (clarify only)."
    )
    provisional: str | None = Field(
        None, max_length=600, description="clarify only: the provisional recommendation given, in one sentence."
    )
    assumptions: list[str] = Field(default_factory=list, description="Assumptions made in place of missing facts.")
    sources: list[str] = Field(default_factory=list, description="`source` of each search result relied on.")
    conflicts: list[Conflict] = Field(default_factory=list, description="Where sources disagree.")
    gaps: list[str] = Field(default_factory=list, description="What the documents did not cover.")
    decision: str | None = Field(None, max_length=600, description="A decision reached or recommended, if any.")
    topic: str | None = Field(None, max_length=120, description="A short label for the subject.")
    confidence: Literal["high", "medium", "low"] = Field("medium", description="How well the documents back it.")
    confidence_reason: str | None = Field(
        None, max_length=200, description="Why that confidence, in a few words (shown under the answer)."
    )

    @field_validator("questions", "assumptions", "sources", "gaps", mode="before")
    @classmethod
    def _clean_lists(cls, value: object) -> object:
        return _clean_list(value)

    @field_validator("decision", "topic", "provisional", "confidence_reason", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _clarify_has_questions(self) -> Reply:
        if self.kind == "clarify" and not self.questions:
            raise ValueError("kind 'clarify' needs 1 to 3 questions")
        return self


def tool_schema() -> dict[str, Any]:
    """`Reply` as a self-contained JSON schema (no `$ref`, no titles) for the tool definition."""
    schema = Reply.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: inline(v) for k, v in node.items() if k != "title"}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


def parse_reply(data: object) -> tuple[Reply | None, str]:
    """(the validated reply, "") or (None, a short description of what is wrong)."""
    if not isinstance(data, dict):
        return None, "the tool input must be a JSON object"
    try:
        return Reply.model_validate(data), ""
    except ValidationError as exc:
        problems = []
        for error in exc.errors()[:6]:
            where = ".".join(str(part) for part in error.get("loc", ())) or "input"
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        return None, "; ".join(problems)
