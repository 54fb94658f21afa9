"""What every listener needs, in one value built by the runtime (no Slack wiring here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.config import Settings
from bot.jobs import WorkSignal
from bot.metrics import Metrics
from bot.slack.post import WorkingReactions
from bot.store_async import AsyncStore


@dataclass
class Deps:
    """What listeners need: the store to persist jobs, and a way to wake the workers."""

    settings: Settings
    store: AsyncStore  # off the event loop: `await deps.store.enqueue(...)`
    metrics: Metrics
    wake: WorkSignal = field(default_factory=WorkSignal)
    reactions: WorkingReactions = field(default_factory=WorkingReactions)  # the 👀, shared with the workers
    accepting: bool = True  # False once shutdown starts: new events are refused (Slack retries them)
    searcher: object | None = None  # bot.retrieval.Searcher, for the App Home and assistant prompts
