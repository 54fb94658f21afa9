"""What a model call cost, from its token usage.

List prices in USD per million tokens, by model family and version, from Anthropic's pricing
page (checked November 2026). Cache writes (5-minute TTL) cost 1.25x the input price; cache
reads cost 0.1x, except where a model's own rate differs (Sonnet 5.5 and Opus 5.5: 0.05x;
Fable 5.1 and Mythos 5.1: 0.025x). Haiku 5.5 has a price for prompts up to 100k tokens and a
higher one above. A model newer than the table is priced as the newest entry of its family; an
unknown family as Sonnet, the default. Figures stored with past answers keep the price of their
day: update the table when prices change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.types import Usage

CACHE_WRITE_MULTIPLIER = 1.25
LONG_PROMPT_TOKENS = 100_000


@dataclass(frozen=True)
class Price:
    input: float  # USD per million input tokens
    output: float  # USD per million output tokens
    cache_read: float = 0.10  # multiplier of `input` for cache hits
    long_prompt: Price | None = None  # the price for prompts above LONG_PROMPT_TOKENS, when it differs


# (family, lowest version it applies to) → price; the highest version not above the model's wins.
PRICES: dict[tuple[str, float], Price] = {
    ("opus", 0.0): Price(15.0, 75.0),  # Claude 3 Opus, Opus 4, Opus 4.1
    ("opus", 4.5): Price(5.0, 25.0),  # Opus 4.5 to Opus 5
    ("opus", 5.5): Price(4.0, 20.0, cache_read=0.05),
    ("sonnet", 0.0): Price(3.0, 15.0),  # Sonnet 3.7 to 4.6
    ("sonnet", 5.0): Price(2.0, 10.0),
    ("sonnet", 5.5): Price(2.0, 10.0, cache_read=0.05),
    ("haiku", 0.0): Price(0.25, 1.25),  # Claude 3 Haiku
    ("haiku", 3.5): Price(0.80, 4.0),
    ("haiku", 4.5): Price(1.0, 5.0),
    ("haiku", 5.5): Price(0.10, 0.50, long_prompt=Price(0.50, 2.50)),
    ("fable", 0.0): Price(10.0, 50.0),
    ("fable", 5.1): Price(10.0, 50.0, cache_read=0.025),
    ("mythos", 0.0): Price(10.0, 50.0),
    ("mythos", 5.1): Price(10.0, 50.0, cache_read=0.025),
}
FAMILIES = ("opus", "sonnet", "haiku", "fable", "mythos")
DEFAULT_FAMILY = "sonnet"

_NEW_STYLE = re.compile(r"(opus|sonnet|haiku|fable|mythos)-(\d{1,2})(?:-(\d))?(?=-|$|@|\[)")  # claude-sonnet-5-5
_OLD_STYLE = re.compile(r"claude-(\d)(?:-(\d))?-(opus|sonnet|haiku)")  # claude-3-5-haiku-20241022


def model_family(model: str) -> tuple[str, float]:
    """('sonnet', 5.5) for 'claude-sonnet-5-5'; (default family, 0.0) for an id it cannot read."""
    name = model.lower()
    if match := _NEW_STYLE.search(name):
        family, major, minor = match.group(1), match.group(2), match.group(3) or "0"
        return family, float(f"{major}.{minor}")
    if match := _OLD_STYLE.search(name):
        major, minor, family = match.group(1), match.group(2) or "0", match.group(3)
        return family, float(f"{major}.{minor}")
    for family in FAMILIES:
        if family in name:
            return family, 0.0
    return DEFAULT_FAMILY, 0.0


def price_for(model: str) -> Price:
    family, version = model_family(model)
    candidates = [(v, p) for (f, v), p in PRICES.items() if f == family and v <= version]
    return max(candidates, key=lambda item: item[0])[1]


def cost_usd(model: str, usage: Usage) -> float:
    """The list-price cost of `usage` on `model`, in USD (rounded to a millionth of a dollar)."""
    price = price_for(model)
    prompt = usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    if price.long_prompt is not None and prompt > LONG_PROMPT_TOKENS:
        price = Price(price.long_prompt.input, price.long_prompt.output, price.cache_read)
    per_input = price.input / 1_000_000
    total = (
        usage.input_tokens * per_input
        + usage.cache_creation_input_tokens * per_input * CACHE_WRITE_MULTIPLIER
        + usage.cache_read_input_tokens * per_input * price.cache_read
        + usage.output_tokens * price.output / 1_000_000
    )
    return round(total, 6)
