"""The model side of archbot: prompt assembly, the streamed Claude call, and the structured reply.

Public interface (knows nothing of Slack; `archbot ask` and the Slack jobs share it):

- `Architect(settings, *, client=None).respond(turns=..., hits=..., on_text=..., mode="chat"|"review")`
  → `bot.types.Answer`, or raises `bot.errors.ModelError`.
- `retrieval_only_answer(question, hits)` → the labelled answer used without an API key.
- `build_anthropic_client(settings)` → `anthropic.AsyncAnthropic` configured from Settings only.
- `check_model(settings, client=None)` → `(ok, message)`: does `ARCHBOT_MODEL` exist?

Each answer is two requests sharing one cached prefix: the streamed, cited answer (no tools),
then a short request in which the model records the typed facts with the `record_reply` tool
(see `core` for why). Modules: `prompt` (pure builders, prompt files), `reply` (the pydantic
`Reply` and its tool schema), `core` (the calls, retries, citations), `pricing` (cost),
`client` (the SDK client, the model check), `fallback` (retrieval-only answers).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.architect.client import build_anthropic_client, check_model
    from bot.architect.core import Architect
    from bot.architect.fallback import retrieval_only_answer
    from bot.architect.pricing import cost_usd
    from bot.architect.prompt import wants_direct_answer
    from bot.architect.reply import Reply

# Each name is imported from its module on first use (PEP 562): the Anthropic SDK takes seconds to
# import, and `archbot ask` without a key, or the digest without a model, never needs it.
_HOMES = {
    "Architect": "core",
    "Reply": "reply",
    "build_anthropic_client": "client",
    "check_model": "client",
    "cost_usd": "pricing",
    "retrieval_only_answer": "fallback",
    "wants_direct_answer": "prompt",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'bot.architect' has no attribute {name!r}")
    value = getattr(import_module(f"bot.architect.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Architect",
    "Reply",
    "build_anthropic_client",
    "check_model",
    "cost_usd",
    "retrieval_only_answer",
    "wants_direct_answer",
]
