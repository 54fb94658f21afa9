"""Sizes and edges of text sent to the model, shared by retrieval (assembly) and the architect (prompt).

`estimate_tokens` is a cheap, tokenizer-free estimate good enough for budgets: a CJK character
costs about one token, other text about one per 3.5 characters. `close_fences` closes a code
fence a cut left open, so a passage never runs its code block into what follows it.
"""

from __future__ import annotations

import math
import re

_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})", re.MULTILINE)


def estimate_tokens(text: str) -> int:
    cjk = len(_CJK.findall(text))
    return cjk + math.ceil((len(text) - cjk) / 3.5)


def open_fence(text: str) -> str | None:
    """The fence marker left open at the end of `text`, or None when every fence is closed."""
    marker: str | None = None
    for match in _FENCE.finditer(text):
        fence = match.group(1)
        if marker is None:
            marker = fence[0] * 3
        elif fence.startswith(marker):
            marker = None
    return marker


def close_fences(text: str) -> str:
    marker = open_fence(text)
    return f"{text.rstrip()}\n{marker}" if marker else text
