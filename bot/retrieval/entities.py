"""The services a team's docs talk about, found in the index itself, and recognised in questions.

A question about "our billing logic" or "a real-time chat service" is about a service; that
service's own docs (its README, its audits) are what an architect opens first. Nothing here is
specific to one team: services are discovered from the index on each change.

- **What is a service**: a folder named `<name>-service` / `<name>-gateway` (e.g.
  `backend/billing-service/`), or a whole identifier `<name>_service` / `<name>_gateway` used in
  at least `MIN_DOCS` chunks (services with no folder of their own, like `api-gateway`).
- **Its names** (`aliases`, as index terms): the name without its suffix (`bill`, `livechat`,
  `sms_receive`), each part of it, and the distinctive words of its README's title
  (`LiveChat Service (在线客服系统)` gives `chat`, `客服`). A word that many chunks use
  (`DISTINCT_SHARE` of the index, like `云手机` or `user`) names no service on its own.
- **Recognised in a question** when one of its distinctive names is among the question's terms
  (the glossary's translations included, so `计费` finds `billing-service`), or when a common
  name is followed by "service" / 服务 (`the device service`, `用户服务`).

`Entity.ownership(path)` says how much a file is the service's own: its folder's README most, then
the other docs in its folder or named after it (`NOTIFICATION_SERVICE_JWT_COMPLETE.md`), least
the docs deeper in its folder (its tests' notes).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field

from bot.retrieval.text import fold, glossary, stopwords, terms

SUFFIXES = ("service", "gateway")
MIN_DOCS = 5  # chunks that must name an identifier-only service
MAX_PARTS = 2  # an identifier-only service name has at most this many words (longer ones are paths)
DISTINCT_SHARE = 0.12  # a name used by more chunks than this share is too common to name a service
TITLE_WORD_SHARE = 0.02  # the same for a word of the service's README title
GENERIC = frozenset({"servic", "service", "gateway", "server", "system", "服务", "系统", "平台", "模块", "service_"})
_FOLDER = re.compile(r"(?:^|/)([a-z0-9]+(?:-[a-z0-9]+)*)-(service|gateway)(?=/)")
_NAMED_SERVICE = re.compile(r"([A-Za-z][A-Za-z0-9]*(?:[ -][A-Za-z][A-Za-z0-9]*)?)[ -]?(?:service|svc)\b", re.IGNORECASE)
_ZH_SERVICE = re.compile(r"([\u4e00-\u9fff]{2,4}?)服务")


@dataclass
class Entity:
    name: str  # e.g. "billing-service"
    ident: str  # the identifier as indexed, e.g. "billing_service"
    stem: str  # the name without its suffix, e.g. "billing"
    folders: list[str] = field(default_factory=list)  # path prefixes that hold its own docs
    strong: set[str] = field(default_factory=set)  # distinctive names: one is enough
    weak: set[str] = field(default_factory=set)  # common names: only before "service" / 服务

    def ownership(self, path: str) -> float:
        """How much a file is this service's own: 1 its folder's README, 0.6 another doc directly in
        its folder, 0.5 a doc named after it elsewhere, 0.3 deeper in its folder (tests, src), else 0."""
        for folder in self.folders:
            if path.startswith(folder):
                rest = path[len(folder) :]
                if rest.upper() == "README.MD":
                    return 1.0
                return 0.6 if "/" not in rest else 0.3
        name = path.rsplit("/", 1)[-1].upper()
        stem = self.stem.upper().replace("-", "_")
        if name.startswith(stem + "_SERVICE") or (len(stem) >= 5 and name.startswith(stem + "_")):
            return 0.5
        return 0.0


def discover(conn: sqlite3.Connection) -> list[Entity]:
    """Every service the index knows of, with its names."""
    total = conn.execute("SELECT count(*) FROM ix_chunks").fetchone()[0] or 1
    paths = [(r[0], r[1] or "") for r in conn.execute("SELECT path, title FROM ix_files WHERE source != 'knowledge'")]
    found: dict[str, Entity] = {}
    for path, _ in paths:
        for match in _FOLDER.finditer(path):
            stem, suffix = match.group(1), match.group(2)
            name = f"{stem}-{suffix}"
            entity = found.setdefault(name, Entity(name, name.replace("-", "_"), stem))
            prefix = path[: match.end()] + "/"
            if prefix not in entity.folders:
                entity.folders.append(prefix)
    like = " OR ".join(f"term GLOB '*_{s}'" for s in SUFFIXES)
    folder_idents = [e.ident for e in found.values()]
    for term, _docs in conn.execute(f"SELECT term, doc FROM ix_vocab WHERE ({like}) AND doc >= ?", (MIN_DOCS,)):
        stem, _, suffix = term.rpartition("_")
        if not stem or not re.fullmatch(r"[a-z][a-z0-9_]*", stem) or stem in GENERIC:
            continue
        if stem.count("_") >= MAX_PARTS or any(term.endswith("_" + ident) for ident in folder_idents):
            continue  # a path written as one identifier (backend/billing-service → backend_billing_service)
        name = f"{stem.replace('_', '-')}-{suffix}"
        found.setdefault(name, Entity(name, term, stem.replace("_", "-")))
    titles = {path: title for path, title in paths}
    candidates: dict[str, set[str]] = {}
    for entity in found.values():
        names = {fold(p) for p in re.split(r"[-_]", entity.stem) if p} | {entity.stem.replace("-", "_")}
        for folder in entity.folders:
            names |= _title_words(titles.get(folder + "README.md", ""))
        candidates[entity.name] = {n for n in names if n and n not in GENERIC and n not in stopwords() and len(n) > 1}
    every = sorted({n for names in candidates.values() for n in names})
    df: dict[str, int] = {}
    if every:
        marks = ",".join("?" * len(every))
        df = dict(conn.execute(f"SELECT term, doc FROM ix_vocab WHERE term IN ({marks})", every).fetchall())
    for entity in found.values():
        from_name = {fold(p) for p in re.split(r"[-_]", entity.stem) if p} | {entity.stem.replace("-", "_")}
        for n in candidates[entity.name]:
            shared = sum(1 for names in candidates.values() if n in names)
            # a word of the service's own name may be common (`bill`); a word of its README title must be rare
            limit = DISTINCT_SHARE if n in from_name else TITLE_WORD_SHARE
            if shared == 1 and df.get(n, 0) <= limit * total:
                entity.strong.add(n)
            else:
                entity.weak.add(n)
        entity.strong.add(entity.ident)
    return sorted(found.values(), key=lambda e: e.name)


def _title_words(title: str) -> set[str]:
    """A title's words as index terms, each English word whole ("LiveChat" → `livechat`, not `live`)."""
    out: set[str] = set()
    for word in re.findall(r"[A-Za-z][A-Za-z0-9]+|[\u4e00-\u9fff]+", title):
        out |= set(terms(word)) if re.match(r"[\u4e00-\u9fff]", word) else {fold(word)}
    return out


def recognise(question: str, question_terms: set[str], entities: list[Entity]) -> list[Entity]:
    """The services a question is about."""
    named: set[str] = set()
    for match in _NAMED_SERVICE.finditer(question):
        named |= set(terms(match.group(1)))
    for match in _ZH_SERVICE.finditer(question):
        named |= set(terms(match.group(1)))
    gloss = glossary().entries
    named |= {t for n in list(named) for alt in gloss.get((n,), []) for t in alt}
    out = []
    for entity in entities:
        if entity.strong & question_terms or entity.weak & named or entity.strong & named:
            out.append(entity)
    return out
