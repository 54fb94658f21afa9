"""The architect: turns + passages → one streamed, cited, structured answer.

Two requests per answer, sharing one cached prefix (tools + system + team profile):

1. The answer, streamed: `tool_choice: none`, passages as `search_result` blocks with citations
   on. The visible text and its citations come from this request alone.
2. The record: a short conversation (the question, the passages listed by source and title,
   the answer with its `[n]` markers, and a note asking for `record_reply`; `tool_choice: auto`).
   Its input, validated by the pydantic `Reply`, carries the typed facts (kind, questions,
   assumptions, sources, conflicts, gaps, decision, topic, confidence). The passages are not sent
   again: `tool_choice` differs from the answer's, which makes the answer's message cache
   unreadable, so re-sending them cost their full price twice (measured in bench/cache_share.py).

Why not one request: citations cannot be combined with structured outputs; and current models
(the Claude 5.5 generation) reject a forced `tool_choice` and return the text written *before*
a tool call as a thinking block, so "answer, then call the tool" in one turn could hide the
answer. If the record does not validate, or is missing, one more request asks again (the
failed call answered with an error `tool_result`); if that fails too, the answer stays plain
text. The answer is never dropped because its record was bad.

Failures and retries:
- HTTP errors before the stream starts (429, 5xx, 529, connection errors) are retried by the
  SDK client (`max_retries`, honouring `retry-after`).
- A stream cut mid-way (an httpx transport error from the iterator) and an SSE `error` event
  such as `overloaded_error` are not retried by the SDK; this module restarts the request, up
  to `ARCHBOT_MODEL_RETRIES` times with exponential backoff. `on_text` always receives the full
  text so far, so after a restart the caller simply replaces what it showed.
- Anything else, or running out of retries, raises `ModelError` with the HTTP status. A failed
  record request never fails the answer.

Thinking blocks (current models think by default) are never shown, and are passed back
unchanged wherever the conversation continues after them.

Secrets: the request body carries prompts, turns and passages only; error messages name the
status and error type, never a body or a header, and pass through the redactor.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import anthropic
import httpx2
from anthropic import AsyncAnthropic

from bot.architect.citations import CitedText, hit_by_ref, hit_citation
from bot.architect.client import build_anthropic_client
from bot.architect.pricing import cost_usd
from bot.architect.prompt import (
    Prompts,
    build_messages,
    build_record_messages,
    build_search_results,
    build_system,
    build_tools,
    wants_direct_answer,
)
from bot.architect.reply import TOOL_NAME, Reply, parse_reply
from bot.config import PROMPTS_DIR, Settings
from bot.errors import ModelError
from bot.i18n import turns_language
from bot.logs import Redactor
from bot.redaction import redact_text
from bot.types import Answer, AnswerKind, Citation, Disagreement, Hit, Turn, Usage

log = logging.getLogger(__name__)

OnText = Callable[[str], Awaitable[None]]
RETRYABLE_STREAM_ERRORS = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}
RECORD_MAX_TOKENS = 2048  # the record is small, but current models may think before the call
MAX_BACKOFF = 8.0


class Architect:
    """Answers one question at a time; safe to share between concurrent jobs (no per-call state)."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: AsyncAnthropic | None = None,
        prompts_dir: Path = PROMPTS_DIR,
        backoff: float = 0.5,
        record_context: Literal["compact", "full"] = "compact",
    ) -> None:
        self.settings = settings
        self.client = client if client is not None else build_anthropic_client(settings)
        self.prompts = Prompts.load(prompts_dir, settings.team_profile)
        self.system = build_system(self.prompts)
        self.tools = build_tools(self.prompts)
        self.backoff = backoff
        # "compact": the record request carries the reply, the question and the passages' names
        # (see build_record_messages); "full" re-sends the answer request with its passages
        # (how it was done before; bench/cache_share.py measures both in one run).
        self.record_context = record_context
        self._redact = Redactor(settings.secrets())

    async def close(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> Architect:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the one entry point ---------------------------------------------------------------
    async def respond(
        self,
        *,
        turns: list[Turn],
        hits: list[Hit],
        on_text: OnText | None = None,
        mode: Literal["chat", "review"] = "chat",
    ) -> Answer:
        """Stream an answer to the last user turn, grounded in `hits`. Raises ModelError."""
        results, sent = build_search_results(hits, budget_tokens=self.settings.passage_tokens)
        params: dict[str, Any] = {
            "model": self.settings.model,
            "max_tokens": self.settings.max_tokens,
            "system": self.system,
            "tools": self.tools,
            "tool_choice": {"type": "none"},
            "messages": build_messages(
                turns,
                results,
                self.prompts.notes,
                mode=mode,
                direct=wants_direct_answer(turns),
                lang=turns_language(turns),
            ),
        }
        usage = Usage()
        started = time.monotonic()
        message = await self._stream(params, on_text, usage, sent)
        cited = CitedText.from_message(message, sent)
        # A credential the model wrote goes no further: not into the record request, the store or Slack.
        text = redact_text(cited.text.strip())
        if message.stop_reason == "max_tokens":
            log.warning("answer cut at ARCHBOT_MAX_TOKENS", extra={"max_tokens": self.settings.max_tokens})
        if not text:
            raise ModelError(
                f"model call failed (no text in the reply, stop reason {message.stop_reason})",
                status=None,
                retryable=message.stop_reason != "refusal",
            )
        record_usage = Usage()
        if self.record_context == "compact":
            record_messages = build_record_messages(turns, text, cited.citations, sent, self.prompts.notes)
        else:  # the whole answer request again, passages included (the earlier way; a benchmark baseline)
            record_messages = [
                *without_cache_marks(params["messages"]),
                {"role": "assistant", "content": assistant_blocks(message, with_tools=False)},
                {"role": "user", "content": self.prompts.notes["record"]},
            ]
        reply = await self._record(params, record_messages, record_usage)
        _add_usage(usage, record_usage)
        answer = assemble_answer(text=text, reply=reply, message=message, sent=sent, mode=mode)
        answer.model = message.model
        answer.truncated = message.stop_reason == "max_tokens"
        usage.cost_usd = cost_usd(message.model, usage)
        record_usage.cost_usd = cost_usd(message.model, record_usage)
        answer.usage = usage
        answer.record_usage = record_usage
        log.info(
            "answer ready",
            extra={
                "kind": answer.kind,
                "model": message.model,
                "seconds": round(time.monotonic() - started, 3),
                "input_tokens": usage.input_tokens,
                "cache_read_input_tokens": usage.cache_read_input_tokens,
                "cache_creation_input_tokens": usage.cache_creation_input_tokens,
                "output_tokens": usage.output_tokens,
                "citations": len(answer.citations),
                "structured": reply is not None,
                "prompt_versions": self.prompts.versions,
            },
        )
        return answer

    # -- streaming with bounded restarts ----------------------------------------------------
    async def _stream(self, params: dict[str, Any], on_text: OnText | None, usage: Usage, sent: Sequence[Hit]) -> Any:
        attempts = 1 + self.settings.model_max_retries
        for attempt in range(1, attempts + 1):
            cited = CitedText(sent)  # the text so far, with [n] markers after each cited block
            shown = ""
            seen = Usage()
            try:
                async with self.client.messages.stream(**params) as stream:
                    async for event in stream:
                        if event.type == "text" and event.text:
                            cited.add_text(event.text)
                        elif event.type == "content_block_stop":
                            cited.end_block(event.content_block)
                        elif event.type == "message_start":
                            _take_usage(seen, event.message.usage)
                        elif event.type == "message_delta":
                            _take_usage(seen, event.usage)
                        if on_text is not None and cited.text != shown:
                            shown = cited.text
                            await on_text(shown)
                    message = await stream.get_final_message()
                if message.stop_reason is None:  # ended without message_delta: treat as cut
                    raise httpx2.RemoteProtocolError("stream ended before the message was complete")
                _add_usage(usage, message.usage)
                return message
            except (httpx2.TransportError, anthropic.APIStatusError) as exc:
                _add_usage(usage, seen)  # what a broken attempt already cost
                retryable = _mid_stream_retryable(exc)
                if not retryable or attempt == attempts:
                    raise self._model_error(exc, attempts=attempt, mid_stream=retryable) from None
                delay = min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF) * random.uniform(0.75, 1.0)
                log.warning(
                    "model stream failed; restarting",
                    extra={"attempt": attempt, "error": _describe(exc), "retry_in": round(delay, 3)},
                )
                await asyncio.sleep(delay)
            except anthropic.APIConnectionError as exc:  # the SDK already retried these
                raise self._model_error(exc, attempts=attempt, mid_stream=False) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _model_error(self, exc: BaseException, *, attempts: int, mid_stream: bool) -> ModelError:
        status = exc.status_code if isinstance(exc, anthropic.APIStatusError) else None
        if isinstance(exc, anthropic.APIStatusError) and status == 200:
            status = None  # an SSE error event arrives on a 200 response
        what = _describe(exc)
        if isinstance(exc, anthropic.AuthenticationError):
            what += ": check ANTHROPIC_API_KEY"
        elif isinstance(exc, anthropic.NotFoundError):
            what += f": check ARCHBOT_MODEL ({self.settings.model})"
        where = f"after {attempts} attempt{'s' if attempts > 1 else ''}" if mid_stream else ""
        message = self._redact(" ".join(p for p in ("model call failed", where, f"({what})") if p))
        return ModelError(message, status=status, retryable=_worth_retrying_later(exc))

    # -- the record: typed facts about the answer, asked for after it ------------------------
    async def _record(self, params: dict[str, Any], messages: list[dict[str, Any]], usage: Usage) -> Reply | None:
        """The validated `Reply` for the answer just streamed, asking at most twice; None if it fails.

        `params` gives the model, tools and system (the cached prefix); `messages` the record's
        own short conversation (`build_record_messages`).
        """
        notes = self.prompts.notes
        problem = ""
        reply: Reply | None = None
        for attempt in (1, 2):
            try:
                response = await self.client.messages.create(
                    **{
                        **params,
                        "messages": messages,
                        "max_tokens": RECORD_MAX_TOKENS,
                        "tool_choice": {"type": "auto"},
                    }
                )
            except (anthropic.APIError, httpx2.TransportError) as exc:
                log.warning("record_reply request failed; keeping the plain answer", extra={"error": _describe(exc)})
                return None
            _add_usage(usage, response.usage)
            reply, problem = extract_reply(response)
            if reply is not None or attempt == 2:
                break
            log.info("record_reply missing or invalid; asking once more", extra={"problem": problem})
            messages = [*messages, *repair_turns(response, problem, notes)]
        if reply is None:
            log.warning("record_reply invalid twice; keeping the plain answer", extra={"problem": problem})
        return reply


def without_cache_marks(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of `messages` without `cache_control` marks (the originals are left as they are)."""
    out = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [{k: v for k, v in block.items() if k != "cache_control"} for block in content]
        out.append({**message, "content": content})
    return out


def assistant_blocks(message: Any, *, with_tools: bool = True) -> list[dict[str, Any]]:
    """A response's content as request blocks: thinking unchanged, text without citations."""
    blocks: list[dict[str, Any]] = []
    for block in message.content:
        if block.type == "thinking":
            blocks.append({"type": "thinking", "thinking": block.thinking, "signature": block.signature})
        elif block.type == "redacted_thinking":
            blocks.append({"type": "redacted_thinking", "data": block.data})
        elif block.type == "text" and block.text.strip():
            blocks.append({"type": "text", "text": block.text})
        elif block.type == "tool_use" and with_tools:
            blocks.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
    if not any(b["type"] in ("text", "tool_use") for b in blocks):
        blocks.append({"type": "text", "text": "(no text)"})  # an assistant turn of thinking alone is refused
    return blocks


def repair_turns(response: Any, problem: str, notes: dict[str, str]) -> list[dict[str, Any]]:
    """The failed record turn and the user's answer to it: error results for its calls, and the note."""
    calls = [b for b in response.content if b.type == "tool_use"]
    results: list[dict[str, Any]] = [
        {"type": "tool_result", "tool_use_id": c.id, "content": problem or "invalid input", "is_error": True}
        for c in calls
    ]
    note = notes["repair_invalid"].replace("{errors}", problem) if calls else notes["repair_missing"]
    return [
        {"role": "assistant", "content": assistant_blocks(response)},
        {"role": "user", "content": [*results, {"type": "text", "text": note}]},
    ]


# -- reading the reply --------------------------------------------------------------------
def extract_reply(message: Any) -> tuple[Reply | None, str]:
    calls = [b for b in message.content if b.type == "tool_use" and b.name == TOOL_NAME]
    if not calls:
        return None, f"no {TOOL_NAME} call"
    return parse_reply(calls[-1].input)


def map_citations(message: Any, sent: Sequence[Hit]) -> list[Citation]:
    """Every `search_result_location` citation → the Hit it points at → a Citation, numbered as the
    answer's `[n]` markers are (deduplicated by path and heading, in order of first citation)."""
    return CitedText.from_message(message, sent).citations


def assemble_answer(
    *, text: str, reply: Reply | None, message: Any, sent: Sequence[Hit], mode: Literal["chat", "review"]
) -> Answer:
    citations = map_citations(message, sent)
    if reply is None:
        if not text:
            raise ModelError("model call failed (the reply had no text)", status=None, retryable=True)
        return Answer(kind="review" if mode == "review" else "answer", text=text, citations=citations)
    kind: AnswerKind = reply.kind
    if mode == "review" and kind == "answer":
        kind = "review"
    elif mode == "chat" and kind == "review":
        kind = "answer"
    if not text:
        if not reply.questions:
            raise ModelError("model call failed (the reply had no text)", status=None, retryable=True)
        questions = "\n".join(f"{n}. {q}" for n, q in enumerate(reply.questions, 1))
        text = f"{reply.provisional}\n\n{questions}" if reply.provisional else questions
    cited = {(c.path, c.heading) for c in citations}
    for ref in reply.sources:  # sources the model relied on but did not quote: real hits only, unnumbered
        hit = hit_by_ref(ref, sent)
        if hit is not None and (hit.path, hit.heading) not in cited:
            cited.add((hit.path, hit.heading))
            citations.append(hit_citation(hit))
    conflicts = []
    disagreements = []
    for conflict in reply.conflicts:
        paths = []
        for ref in conflict.sources:
            hit = hit_by_ref(ref, sent)
            paths.append(hit.path if hit else ref)
        sides = list(dict.fromkeys(paths))
        conflicts.append(f"{conflict.summary} ({' vs '.join(sides)})")
        disagreements.append(Disagreement(summary=conflict.summary, sides=sides))
    return Answer(
        kind=kind,
        text=text,
        citations=citations,
        questions=list(reply.questions) if kind == "clarify" else [],
        provisional=reply.provisional if kind == "clarify" else None,
        assumptions=list(reply.assumptions),
        conflicts=conflicts,
        disagreements=disagreements,
        gaps=list(reply.gaps),
        decision=reply.decision,
        topic=reply.topic,
        confidence=reply.confidence,
        confidence_reason=reply.confidence_reason,
    )


# -- errors and usage ---------------------------------------------------------------------
def _mid_stream_retryable(exc: BaseException) -> bool:
    """A failure after the stream began that a fresh request may fix."""
    if isinstance(exc, httpx2.TransportError):
        return True
    if isinstance(exc, anthropic.APIStatusError) and exc.status_code == 200:  # SSE error event
        return _error_type(exc) in RETRYABLE_STREAM_ERRORS
    return False


def _worth_retrying_later(exc: BaseException) -> bool:
    """Could the same request succeed later (overload, rate limit, outage), as opposed to a bad request?"""
    if isinstance(exc, httpx2.TransportError | anthropic.APIConnectionError):
        return True
    if isinstance(exc, anthropic.APIStatusError):
        if exc.status_code == 200:
            return _error_type(exc) in RETRYABLE_STREAM_ERRORS
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def _error_type(exc: BaseException) -> str | None:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            return error["type"]
    return None


def _describe(exc: BaseException) -> str:
    """Status and error type only: never the body, which could quote the request."""
    if isinstance(exc, anthropic.APIStatusError):
        kind = _error_type(exc) or type(exc).__name__
        return f"stream error event {kind}" if exc.status_code == 200 else f"HTTP {exc.status_code} {kind}"
    if isinstance(exc, anthropic.APITimeoutError):
        return "timed out"
    if isinstance(exc, anthropic.APIConnectionError):
        return "connection error"
    return f"stream broken: {type(exc).__name__}"


def _take_usage(into: Usage, source: Any) -> None:
    """Usage counts on stream events are cumulative: overwrite with what is present."""
    for name in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
        value = getattr(source, name, None)
        if value is not None:
            setattr(into, name, value)


def _add_usage(total: Usage, part: Any) -> None:
    for name in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
        setattr(total, name, getattr(total, name) + (getattr(part, name, None) or 0))
