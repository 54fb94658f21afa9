"""The asker's language: which one a question is in, and every fixed string the bot writes in it.

One catalogue (`bot/data/messages.toml`) holds each fixed string the bot shows people (headers,
buttons, failure and help messages, labels, modal text, digest headings) in every language we
support; code asks for a string by key with `t(key, lang, **values)`. A test checks that each
key has every language with the same `{placeholders}`, so a new string cannot ship in English
only.

`detect_language()` reads the question: the share of CJK characters against Latin words (a
Chinese question full of identifiers such as `device-service` or `RabbitMQ` is still Chinese).
A message too short to tell ("continue", "ok?") takes the language of the thread's earlier
messages, given as further texts. Pure functions, no I/O beyond reading the catalogue once.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Literal, get_args

from bot.types import Turn

Lang = Literal["en", "zh"]
LANGUAGES: tuple[Lang, ...] = get_args(Lang)
DEFAULT_LANG: Lang = "en"

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff]")
_WORD = re.compile(r"[A-Za-z]+")
# Not language: Slack mentions and links, inline code and fenced code, URLs, and identifiers
# (`device.connection_lost`, `billing-service`, `src/app.ts`): they are English-looking in any language.
_NOISE = re.compile(
    r"<[@#!][^>]*>|<https?://[^>]*>|```.*?```|`[^`]*`|https?://\S+|\w+(?:[._/:-]\w+)+",
    re.DOTALL,
)
WORD_WEIGHT = 2.0  # a Latin word carries about as much as two Chinese characters
ZH_SHARE = 0.4  # leaning Chinese: a Chinese question usually quotes English identifiers
WEAK_WORDS = 3  # at most this many Latin words and no CJK: too short to tell


def _signal(text: str) -> tuple[int, int]:
    """(CJK characters, Latin words) in `text`, ignoring mentions, links and code."""
    clean = _NOISE.sub(" ", text or "")
    return len(_CJK.findall(clean)), len(_WORD.findall(clean))


def _decide(cjk: int, words: int) -> Lang:
    if cjk == 0:
        return "en"
    return "zh" if cjk / (cjk + WORD_WEIGHT * words) >= ZH_SHARE else "en"


def detect_language(text: str, *earlier: str, default: Lang = DEFAULT_LANG) -> Lang:
    """The language of `text`; when it is too short to tell, that of `earlier` texts (newest first)."""
    for candidate in (text, *earlier):
        cjk, words = _signal(candidate)
        if cjk or words > WEAK_WORDS:
            return _decide(cjk, words)
    cjk, words = _signal(" ".join((text, *earlier)))
    return _decide(cjk, words) if cjk or words else default


def turns_language(turns: Sequence[Turn], default: Lang = DEFAULT_LANG) -> Lang:
    """The language of a conversation's latest user message, read with the earlier ones as fallback."""
    texts = [t.text for t in reversed(turns) if t.role == "user"]
    return detect_language(*texts, default=default) if texts else default


def parse_lang(value: str | None, default: Lang = DEFAULT_LANG) -> Lang:
    """A language code from outside (a setting, stored metadata) → a supported `Lang`."""
    code = (value or "").strip().lower().replace("_", "-").split("-", 1)[0]
    return code if code in LANGUAGES else default  # type: ignore[return-value]


@cache
def catalogue() -> dict[str, dict[str, str]]:
    """{key: {lang: text}}, from `bot/data/messages.toml` (dotted keys flattened: `render.sources`)."""
    raw = tomllib.loads(resources.files("bot").joinpath("data/messages.toml").read_text(encoding="utf-8"))
    out: dict[str, dict[str, str]] = {}

    def walk(prefix: str, node: dict) -> None:
        if node and all(isinstance(v, str) for v in node.values()) and set(node) & set(LANGUAGES):
            out[prefix] = dict(node)
            return
        for name, value in node.items():
            if isinstance(value, dict):
                walk(f"{prefix}.{name}" if prefix else name, value)

    walk("", raw)
    return out


def t(key: str, lang: Lang = DEFAULT_LANG, /, **values: object) -> str:
    """The catalogue's text for `key` in `lang` (English when missing), with `{placeholders}` filled."""
    entry = catalogue()[key]  # a KeyError here is a bug: the test suite checks every key used
    text = entry.get(lang) or entry[DEFAULT_LANG]
    return text.format(**values)
