"""Inline citation markers: the answer text with `[n]` after each claim the model cited.

The API returns the answer as text blocks; a block that quotes or paraphrases a passage carries
`citations` (`search_result_location`: the result's `source`, its `search_result_index`, and
the `cited_text`). `CitedText` numbers the cited passages in order of first citation and puts
their markers at the end of the block that cites them, before its trailing whitespace:

    "Device events go through the `cloudphone.events` exchange. [1]\n\n"

It is fed the stream as it arrives (`add_text`, then `end_block` with the finished block) and
only ever appends, so a Slack stream that already shows part of the answer never needs an
edit: a block's trailing whitespace is held back until the block ends, and the markers go in
front of it. `from_message()` runs the same steps over a finished message, so the text shown
while streaming and the final text are the same string.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from bot.types import Citation, Hit

log = logging.getLogger(__name__)
QUOTE_CHARS = 500  # what is kept of a cited passage (render trims further for display)


def hit_citation(hit: Hit, cited_text: str = "", number: int = 0) -> Citation:
    """A Citation for a retrieved passage, with the doc's status and date (bot/retrieval/provenance.py)."""
    return Citation(
        path=hit.path,
        source=hit.source,
        heading=hit.heading,
        url=hit.url,
        cited_text=cited_text,
        number=number,
        status=hit.status or "",
        date=hit.date or "",
    )


def hit_for(index: int | None, source: str | None, sent: Sequence[Hit]) -> Hit | None:
    """The passage a citation points at: by `search_result_index`, checked against `source`."""
    if index is not None and 0 <= index < len(sent) and (not source or sent[index].ref == source):
        return sent[index]
    return hit_by_ref(source, sent)


def hit_by_ref(ref: str | None, hits: Sequence[Hit]) -> Hit | None:
    if not ref:
        return None
    return next((h for h in hits if ref in (h.ref, h.path, h.url)), None)


class CitedText:
    """The visible answer with `[n]` markers, and the numbered citations behind them."""

    def __init__(self, sent: Sequence[Hit]) -> None:
        self.sent = sent
        self.citations: list[Citation] = []  # numbered, in order of first citation
        self._numbers: dict[tuple[str, str], int] = {}
        self._done = ""  # finished text blocks, markers included
        self._block = ""  # the text block being streamed

    @property
    def text(self) -> str:
        """Everything shown so far: it only grows (the open block without its trailing whitespace)."""
        return self._done + self._block.rstrip()

    def add_text(self, delta: str) -> None:
        self._block += delta

    def end_block(self, block: Any) -> None:
        """A finished content block (the SDK's snapshot); only text blocks matter."""
        if getattr(block, "type", None) != "text":
            return
        body = self._block or block.text or ""
        self._block = ""
        markers = self._markers(getattr(block, "citations", None) or [])
        head = body.rstrip()
        if markers and head:
            self._done += f"{head} {markers}{body[len(head) :]}"
        else:
            self._done += body

    def _markers(self, citations: Sequence[Any]) -> str:
        numbers: list[int] = []
        for citation in citations:
            if getattr(citation, "type", None) != "search_result_location":
                continue
            hit = hit_for(citation.search_result_index, citation.source, self.sent)
            if hit is None:
                log.warning("citation of an unknown source dropped", extra={"source": citation.source})
                continue
            key = (hit.path, hit.heading)
            if key not in self._numbers:
                self._numbers[key] = len(self._numbers) + 1
                quote = (citation.cited_text or "").strip()[:QUOTE_CHARS]
                self.citations.append(hit_citation(hit, quote, self._numbers[key]))
            if self._numbers[key] not in numbers:
                numbers.append(self._numbers[key])
        return "".join(f"[{n}]" for n in sorted(numbers))

    @classmethod
    def from_message(cls, message: Any, sent: Sequence[Hit]) -> CitedText:
        """The same text and numbering, built from a finished message."""
        out = cls(sent)
        for block in message.content:
            if block.type == "text":
                out.add_text(block.text)
                out.end_block(block)
        return out
