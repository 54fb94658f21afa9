"""Context assembly: ranked documents and their matching sections → the passages sent to the model.

The rules (pure functions; search.py feeds them from the index):

1. **Team docs first.** Every ranked team document above the relevance floor gets its best
   section (and the next one when that section is tiny), best document first, before any
   document gets a second passage, and before any pattern-library page (`knowledge/`) is added.
2. **Several sections of one document** when they match: other sections scoring at least
   `SECTION_SHARE` of the document's best are added for the top documents.
3. **Neighbours**: a chosen section's next chunk when it continues the same section (cut at the
   chunk size), and its previous chunk when that is the same section or its parent's opening,
   join it when the budget allows; adjacent chunks merge into one passage. Then more documents.
4. **The budget** is in estimated tokens (`estimate_tokens`): the passages never exceed it, and
   one document never takes more than `DOC_SHARE` of it.
5. **Clean edges**: a passage never ends inside an open code fence (it is closed), and a chunk
   that starts inside one (the tail of a long code block) is not used as a passage's first part.
6. Pattern-library pages come last, with what is left of the budget, at most `KNOWLEDGE_MAX`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bot.tokens import close_fences, estimate_tokens, open_fence

RELEVANCE_FLOOR = 0.3  # a document scoring below this share of the best one is not sent
SECTION_SHARE = 0.6  # another section of a chosen document is added when it scores this share of its best
MAX_SECTIONS = 3  # matching sections per document (before neighbours)
DOC_SHARE = 0.25  # of the budget, at most, for one document
SMALL_SECTION_CHARS = 400  # a best section smaller than this brings its next chunk along
MAX_DOCS = 14  # documents in the first round; a second round adds up to as many again
DEEP_DOCS = 4  # the best documents also get further sections and neighbours
MAX_PER_FOLDER = 8  # documents from one folder per round (a docs/ folder holds most of a repo's docs)
KNOWLEDGE_MAX = 2
REACH = 2  # chunks either side of a matched section that `load` must supply (the next chunk's next one)


@dataclass
class Section:
    """One indexed chunk of a document."""

    ordinal: int
    heading: str
    text: str
    score: float = 0.0


@dataclass
class Doc:
    """A ranked document with its matching sections (best first)."""

    key: int
    score: float
    matched: list[Section]
    knowledge: bool = False
    folder: str = ""  # the folder it sits in (documents per folder are capped)


@dataclass
class Passage:
    doc: Doc
    sections: list[Section]  # contiguous, in document order

    @property
    def heading(self) -> str:
        return self.sections[0].heading

    @property
    def text(self) -> str:
        text = ""
        previous = None
        for section in self.sections:
            body = section.text.strip()
            fence = open_fence(text)
            if fence is not None:
                # The previous chunk ends inside a code block that this one continues: the chunker
                # repeated the opening fence line at its top; drop it so the block reads as one.
                first, _, rest = body.partition("\n")
                body = rest if first.lstrip().startswith(fence) else f"{fence}\n\n{body}"
                text += "\n" + body
            else:
                if previous is not None and section.heading != previous and section.heading:
                    body = f"**{section.heading.rsplit(' > ', 1)[-1]}**\n\n{body}"
                text = f"{text}\n\n{body}" if text else body
            previous = section.heading
        return close_fences(text)


def _is_parent(parent: str, child: str) -> bool:
    return bool(parent) and child.startswith(parent + " > ")


@dataclass
class _Pick:
    doc: Doc
    ordinals: set[int] = field(default_factory=set)
    tokens: int = 0


def assemble(
    docs: list[Doc],
    load: Callable[[Doc], dict[int, Section]],
    *,
    budget_tokens: int,
) -> list[Passage]:
    """Passages for the ranked `docs` within `budget_tokens`; `load(doc)` gives its chunks by ordinal,
    at least those within `REACH` of a matched section (neighbours of neighbours)."""
    if not docs or budget_tokens <= 0:
        return []
    team = [d for d in docs if not d.knowledge]
    library = [d for d in docs if d.knowledge]
    if not team:  # nothing from the team: the pattern library is the context
        team, library = library, []
    best = team[0].score or 1.0
    floor = RELEVANCE_FLOOR * best
    doc_cap = max(int(budget_tokens * DOC_SHARE), 1)
    used = 0
    picks: dict[int, _Pick] = {}
    chunks: dict[int, dict[int, Section]] = {}

    def sections_of(doc: Doc) -> dict[int, Section]:
        if doc.key not in chunks:
            chunks[doc.key] = load(doc)
        return chunks[doc.key]

    def add(doc: Doc, ordinal: int, *, cap: int = doc_cap) -> bool:
        nonlocal used
        section = sections_of(doc).get(ordinal)
        pick = picks.get(doc.key)
        if section is None or (pick and ordinal in pick.ordinals):
            return False
        cost = estimate_tokens(section.text) + 8
        if used + cost > budget_tokens or (pick and pick.tokens + cost > cap):
            return False
        if pick is None:
            pick = picks[doc.key] = _Pick(doc)
        pick.ordinals.add(ordinal)
        pick.tokens += cost
        used += cost
        return True

    def first_pass(docs_in_order: list[Doc], limit: int) -> None:
        per_folder: dict[str, int] = {}
        for doc in docs_in_order:
            if len(picks) >= limit or doc.score < floor:
                break
            if doc.key in picks:
                continue
            if per_folder.get(doc.folder, 0) >= MAX_PER_FOLDER:
                continue  # one folder's many notes must not push out every other place
            first = doc.matched[0]
            if add(doc, first.ordinal):
                per_folder[doc.folder] = per_folder.get(doc.folder, 0) + 1
                if len(first.text) < SMALL_SECTION_CHARS:
                    add(doc, first.ordinal + 1)

    # 1. each relevant team document's best section, best document first
    first_pass(team, MAX_DOCS)
    chosen = [p.doc for p in picks.values()][:DEEP_DOCS]
    # 2. further matching sections of the chosen documents
    for doc in chosen:
        top = doc.matched[0].score or 1.0
        for section in doc.matched[1:MAX_SECTIONS]:
            if section.score >= SECTION_SHARE * top:
                add(doc, section.ordinal)
    # 3. neighbours that complete a section: the rest of a section cut in two, a parent's opening
    for doc in chosen:
        loaded = sections_of(doc)
        for ordinal in sorted(picks[doc.key].ordinals):
            here = loaded[ordinal]
            after, before = loaded.get(ordinal + 1), loaded.get(ordinal - 1)
            if after is not None and after.heading == here.heading:
                add(doc, ordinal + 1)
            if before is not None and (before.heading == here.heading or _is_parent(before.heading, here.heading)):
                add(doc, ordinal - 1)
    # 4. more documents while the budget lasts
    first_pass(team, MAX_DOCS * 2)
    # 5. pattern-library pages with what is left
    for doc in library[:KNOWLEDGE_MAX]:
        if doc.score >= floor:
            add(doc, doc.matched[0].ordinal)

    passages: list[Passage] = []
    for pick in picks.values():
        run: list[Section] = []
        for ordinal in sorted(pick.ordinals):
            section = sections_of(pick.doc)[ordinal]
            if run and ordinal != run[-1].ordinal + 1:
                passages.append(Passage(pick.doc, run))
                run = []
            run.append(section)
        if run:
            passages.append(Passage(pick.doc, run))
    order = {doc.key: n for n, doc in enumerate([*team, *library])}
    passages.sort(key=lambda p: (p.doc.knowledge, order.get(p.doc.key, 0), p.sections[0].ordinal))
    return passages
