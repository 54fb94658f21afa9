"""Small helpers shared by the Slack end-to-end tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from tests.fakes.slack import FakeSlack, StoredMessage

T = TypeVar("T")

FAILURE_MARK = ":warning:"


def is_final(message: StoredMessage) -> bool:
    """A finished answer (feedback buttons attached) or a failure notice."""
    if message.text.startswith(FAILURE_MARK):
        return True
    return any(b.get("type") == "context_actions" for b in message.blocks or [])


def message_text(message: StoredMessage) -> str:
    """What a person sees: the markdown block when there is one, else the text."""
    for block in message.blocks or []:
        if block.get("type") == "markdown":
            return str(block.get("text", ""))
    return message.text


def answers_in(fake: FakeSlack, channel: str, thread_ts: str) -> list[StoredMessage]:
    return [m for m in fake.thread(channel, thread_ts) if m.bot_id == fake.bot_id and is_final(m)]


def all_answers(fake: FakeSlack) -> list[StoredMessage]:
    return [m for m in fake.bot_messages() if is_final(m)]


async def wait_answers(fake: FakeSlack, channel: str, thread_ts: str, n: int = 1, timeout: float = 10.0):
    return await fake.wait_for(
        lambda f: (lambda a: a if len(a) >= n else None)(answers_in(f, channel, thread_ts)), timeout=timeout
    )


class BackgroundLoop:
    """An event loop in a thread, serving the fakes while a CLI command runs its own loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
