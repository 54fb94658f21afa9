"""Turning text into search terms, the same way for documents and questions.

One analyser serves both sides, so whatever a document was indexed as, a question can
match. It emits space-separated terms that the FTS5 `unicode61` tokenizer (with `_` as a
token character) keeps whole:

- Chinese runs are segmented with rjieba (jieba's dictionary, in Rust: the whole corpus in
  well under a second, where pure-Python jieba took most of the indexing time).
  `cut_for_search` also emits the short words inside long compounds, so `用户服务` finds
  `用户` and `服务` too.
- ASCII identifiers survive whole *and* split: `cloudphone.billing.saga.execution` becomes
  `cloudphone_billing_saga_execution` plus each part; `getUserById` becomes `getuserbyid`
  plus `get`, `user`, `by`, `id`; `DB_PASSWORD` becomes `db_password`, `db`, `password`.
- English words are stemmed (Snowball English, through `snowballstemmer`, memoised): `caching`,
  `cached` and `cache` all become `cach`, so "users still see the old profile after updating"
  meets "update the cache". The same rule runs on both sides, on the glossary and on the
  stopword list; identifiers kept whole (`connection_lost`) are not stemmed, their parts are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import snowballstemmer

CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RUN = re.compile(f"[{CJK}]+")
_CJK_CHAR = re.compile(f"[{CJK}]")
# An identifier-ish run: words joined by . _ - / : (paths, dotted names, env vars, URLs).
_WORD = re.compile(r"[A-Za-z0-9_]+(?:[.\-/:@][A-Za-z0-9_]+)*")
_SEP = re.compile(r"[._\-/:@]+")
# CamelCase parts; a plural acronym (APIs, DTOs, URLs) stays one part rather than "AP" + "Is".
_CAMEL = re.compile(r"[A-Z]{2,}s(?![a-z])|[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_TOKEN_OR_CJK = re.compile(rf"[{CJK}]+|[A-Za-z0-9_]+(?:[.\-/:@][A-Za-z0-9_]+)*")

MAX_WORD = 64  # longer ASCII runs (hashes, base64) are noise


@cache
def _jieba() -> Any:
    """rjieba, imported on the first Chinese text (its dictionary takes ~0.3 s to load): an English
    query or doc set never pays for it."""
    import rjieba

    return rjieba


def _data(name: str) -> str:
    return resources.files("bot.data").joinpath(name).read_text(encoding="utf-8")


@cache
def stopwords() -> frozenset[str]:
    """English and Chinese words that carry no topic ("how", "我们", "怎么"), as written and folded."""
    words: set[str] = set()
    for name in ("stopwords_en.txt", "stopwords_zh.txt"):
        for line in _data(name).splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                words.update(w.lower() for w in line.split())
                words.update(fold(w) for w in line.split())
    return frozenset(words)


_STEMMER = snowballstemmer.stemmer("english")


# Words the stemmer would fold into another word with a different meaning: Snowball takes
# "liveness" to "live", so "where should billing logic live" met the liveness-probe page. A noun
# in -ness names its own concept ("readiness", "liveness", "business"): it is kept whole.
_KEEP_WHOLE_SUFFIXES = ("ness",)


@lru_cache(maxsize=200_000)
def fold(word: str) -> str:
    """Lower-case and stem an English word; identity (lower-cased) for anything else."""
    w = word.lower()
    if len(w) > 3 and w.isascii() and w.isalpha():
        if w.endswith(_KEEP_WHOLE_SUFFIXES):
            return w
        return str(_STEMMER.stemWord(w))
    return w


def split_identifier(word: str) -> tuple[list[str], list[str]]:
    """(pieces between separators, words within them): `device.connectionLost` →
    (["device", "connectionLost"], ["device", "connection", "Lost"]). Indexing and query analysis
    both split with this, so an identifier breaks the same way on both sides."""
    pieces = [p for p in _SEP.split(word) if p]
    parts: list[str] = []
    for piece in pieces:
        camel = _CAMEL.findall(piece)
        parts.extend(camel if camel else [piece])
    return pieces, parts


def _ascii_terms(word: str, out: list[str]) -> None:
    if len(word) > MAX_WORD:
        return
    pieces, parts = split_identifier(word)
    if len(parts) > 1:
        out.append("_".join(p.lower() for p in pieces))  # the identifier whole
        # camelCase words also whole (getUserById → getuserbyid)
        if len(pieces) > 1:
            out.extend(p.lower() for p in pieces if _CAMEL.findall(p) and len(_CAMEL.findall(p)) > 1)
    out.extend(fold(p) for p in parts)


def terms(text: str, *, search: bool = True) -> list[str]:
    """The search terms of a text, in order (with repeats)."""
    out: list[str] = []
    for match in _TOKEN_OR_CJK.finditer(text):
        run = match.group()
        if _CJK_CHAR.match(run):
            out.extend(_jieba().cut_for_search(run) if search else _jieba().cut(run))
        else:
            _ascii_terms(run, out)
    return out


def index_text(text: str) -> str:
    """The FTS column value for a text: its terms, space-separated."""
    return " ".join(terms(text))


def has_cjk(text: str) -> bool:
    return _CJK_CHAR.search(text) is not None


# -- the glossary ---------------------------------------------------------------------


@dataclass
class Glossary:
    """Bilingual software vocabulary: an English term ↔ its Chinese renderings.

    Keys are term tuples (an English phrase's words, or a Chinese word as rjieba cuts it);
    values are the other language's renderings, each a tuple of terms.
    """

    entries: dict[tuple[str, ...], list[tuple[str, ...]]] = field(default_factory=dict)
    longest: int = 1

    def add(self, key: tuple[str, ...], value: tuple[str, ...]) -> None:
        if not key or not value or key == value:
            return
        bucket = self.entries.setdefault(key, [])
        if value not in bucket:
            bucket.append(value)
        self.longest = max(self.longest, len(key))


GLOSSARY_TERMS = "glossary_terms.tsv"


def join_single_characters(words: list[str]) -> list[str]:
    """rjieba cuts a name missing from its dictionary into single characters (`飞书` → 飞, 书), which
    carry no topic alone; adjacent ones (stopwords such as 的 apart) are one word again. Documents
    are indexed with `cut_for_search`, which keeps such names whole in context, so a question's
    `飞书` then meets theirs."""
    out: list[str] = []
    run = ""
    for word in [*words, ""]:
        if len(word) == 1 and _CJK_CHAR.match(word) and word not in stopwords():
            run += word
            continue
        if run:
            out.append(run)
            run = ""
        if word:
            out.append(word)
    return out


def cut_phrase(phrase: str) -> tuple[str, ...]:
    """A Chinese phrase as a question's words are cut (rjieba, single characters joined)."""
    return tuple(t for t in join_single_characters(_jieba().cut(phrase)) if t.strip())


def phrase_terms(phrase: str) -> tuple[str, ...]:
    """A glossary phrase's terms: a Chinese one cut by rjieba, an English one's words folded."""
    if has_cjk(phrase):
        return cut_phrase(phrase)
    return tuple(fold(w) for w in re.findall(r"[A-Za-z0-9]+", phrase))


@cache
def _glossary_terms() -> dict[str, tuple[str, ...]]:
    """The glossary's phrases with their terms already computed (bot/data/glossary_terms.tsv,
    written by `python -m bot.retrieval.text`): loading the glossary then needs neither rjieba's
    dictionary nor the stemmer, so a CLI search starts fast. A test checks the file is current."""
    out: dict[str, tuple[str, ...]] = {}
    for line in _data(GLOSSARY_TERMS).splitlines():
        if "\t" in line and not line.startswith("#"):
            phrase, found = line.split("\t", 1)
            out[phrase] = tuple(found.split())
    return out


def glossary_phrases() -> list[str]:
    """The phrases of bot/data/glossary.tsv (both languages), in order, once each."""
    found: dict[str, None] = {}
    for line in _data("glossary.tsv").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "\t" in line:
            for side in line.split("\t", 1):
                for p in side.split("|"):
                    if p.strip():
                        found.setdefault(p.strip())
    return list(found)


def _phrase_terms(phrase: str) -> tuple[str, ...]:
    known = _glossary_terms().get(phrase.strip())
    return known if known is not None else phrase_terms(phrase)


@cache
def glossary() -> Glossary:
    """Load bot/data/glossary.tsv: `english | variants<TAB>中文 | 变体` per line."""
    g = Glossary()
    for line in _data("glossary.tsv").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "\t" not in line:
            continue
        en_side, zh_side = line.split("\t", 1)
        ens = [_phrase_terms(p) for p in en_side.split("|") if p.strip()]
        zhs = [_phrase_terms(p) for p in zh_side.split("|") if p.strip()]
        for en in ens:
            for zh in zhs:
                g.add(en, zh)
                g.add(zh, en)
            # English variants find each other (e.g. "mq" ↔ "message queue")
            for other in ens:
                g.add(en, other)
        for zh in zhs:
            for other in zhs:
                g.add(zh, other)
    return g


if __name__ == "__main__":  # regenerate bot/data/glossary_terms.tsv after editing glossary.tsv
    target = resources.files("bot.data").joinpath(GLOSSARY_TERMS)
    lines = ["# glossary.tsv's phrases and their index terms (python -m bot.retrieval.text writes this file)"]
    lines += [f"{p}\t{' '.join(phrase_terms(p))}" for p in glossary_phrases()]
    with resources.as_file(target) as path:
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines) - 1} phrases to {GLOSSARY_TERMS}")
