"""What a model call cost, from its token usage.

List prices in USD per million tokens, by model family and version, as Anthropic published
them (late 2025). Prompt caching: writing the cache (5-minute TTL) costs 1.25x the input
price, reading it 0.1x. An unknown model id is priced as Sonnet, the default family. Update
the table when prices change; figures stored with past answers keep the price of their day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.types import Usage

CACHE_WRITE_MULTIPLIER = 1.25
CACHE_READ_MULTIPLIER = 0.10


@dataclass(frozen=True)
class Price:
    input: float  # USD per million input tokens
    output: float  # USD per million output tokens


# (family, lowest version it applies to) → price; the highest matching version wins.
PRICES: dict[tuple[str, float], Price] = {
    ("opus", 0.0): Price(15.0, 75.0),  # Claude 3 Opus, Opus 4, Opus 4.1
    ("opus", 4.5): Price(5.0, 25.0),  # Opus 4.5 and later
    ("sonnet", 0.0): Price(3.0, 15.0),  # Sonnet 3.7, 4, 4.5 (up to 200k input tokens)
    ("haiku", 0.0): Price(0.25, 1.25),  # Claude 3 Haiku
    ("haiku", 3.5): Price(0.80, 4.0),  # Haiku 3.5
    ("haiku", 4.5): Price(1.0, 5.0),  # Haiku 4.5 and later
}
DEFAULT_FAMILY = "sonnet"

_NEW_STYLE = re.compile(r"(opus|sonnet|haiku)-(\d+)(?:-(\d))?(?=-|$|@)")  # claude-sonnet-4-5-20250929
_OLD_STYLE = re.compile(r"claude-(\d)(?:-(\d))?-(opus|sonnet|haiku)")  # claude-3-5-haiku-20241022


def model_family(model: str) -> tuple[str, float]:
    """('sonnet', 4.5) for 'claude-sonnet-4-5-20250929'; the default family for unknown ids."""
    name = model.lower()
    if match := _NEW_STYLE.search(name):
        family, major, minor = match.group(1), match.group(2), match.group(3) or "0"
        return family, float(f"{major}.{minor}")
    if match := _OLD_STYLE.search(name):
        major, minor, family = match.group(1), match.group(2) or "0", match.group(3)
        return family, float(f"{major}.{minor}")
    for family in ("opus", "sonnet", "haiku"):
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
    per_token_in = price.input / 1_000_000
    total = (
        usage.input_tokens * per_token_in
        + usage.cache_creation_input_tokens * per_token_in * CACHE_WRITE_MULTIPLIER
        + usage.cache_read_input_tokens * per_token_in * CACHE_READ_MULTIPLIER
        + usage.output_tokens * price.output / 1_000_000
    )
    return round(total, 6)
