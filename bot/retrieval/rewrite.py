"""Optional model rewrite of a question into both languages, to find passages in the other one.

The glossary (bot/data/glossary.tsv) bridges the words it knows; a model bridges the rest
("locked out" → "账号锁定", "冷启动要多久" → "cold start time"). When a model key is set,
`ModelRewriter.rewrite(question)` asks the model for the question in English and in Chinese plus
its key identifiers, and `Searcher` ranks that text beside the question itself (see search.py).

What it promises:
- Synchronous and thread-safe: `Searcher.search` runs in worker threads (`asyncio.to_thread`).
  On its own (`archbot ask`, `archbot search`) it calls the model with a sync `anthropic.Anthropic`
  client. In `archbot run`, `share(client, loop)` hands it the answers' `AsyncAnthropic` client:
  the request then runs on the bot's event loop (the calling thread waits for it), through the
  same adaptive concurrency limit as every answer (bot/architect/limit.py), in the queue behind
  streamed answers. A 429/529/503 on a rewrite shrinks that limit like any other. A rewrite that
  gets no slot within `slot_wait` (ARCHBOT_REWRITE_WAIT: past it no search waits for it) is
  not sent; the search goes on without it, and the rewriter does not rest for it.
- Cached in the index database (`ix_rewrites`), keyed by the normalised question together with
  the model and the prompt version, so a repeated question never calls the model again and a
  new prompt or model starts a fresh cache. An empty rewrite is cached too (nothing to add); a
  reply cut short (`max_tokens`) serves its one search and is not cached.
- Never in the way: a short timeout, one retry, and on any failure `rewrite` returns None and
  the search goes on with the question alone. After a failure it rests for `COOLDOWN_SECONDS`
  rather than making every following question wait on a model that is down.
- The model sees the question only: no passages, no settings, no secrets.
- The recent round trips of its model calls (rewrite_wait.py) are kept in the index database too
  (`ix_rewrite_latency`, per model; `round_trips` / `keep_round_trips`), so a new process knows
  how long a rewrite is worth waiting for; older than `ROUND_TRIPS_MAX_AGE`, they are not used.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import sqlite3
import threading
import time
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bot.config import Settings

if TYPE_CHECKING:  # the SDK is imported only when a rewriter is built: `archbot search` and indexing never pay for it
    import anthropic
    from anthropic.types import Message

log = logging.getLogger(__name__)

PROMPT_VERSION = "2"
TIMEOUT_SECONDS = 8.0
CONNECT_SECONDS = 3.0
MAX_RETRIES = 1
COOLDOWN_SECONDS = 60.0
MAX_TOKENS = 1024  # room for a thinking-by-default model's reasoning before the few lines we want
MAX_REWRITE_CHARS = 600
MAX_LINES = 3
MAX_QUERY_CHARS = 2000
DEFAULT_BASE_URL = "https://api.anthropic.com"
ROUND_TRIPS_MAX_AGE = 24 * 3600.0  # seconds: older round trips say little about the model now
KEEP_EVERY = 10.0  # seconds: round trips are written at most this often (a burst writes them once or twice)
_NUMBERING = re.compile(r"^(?:\d[.)]|[-*•])\s+")  # "1. ", "- ": list marks a model may add anyway

SYSTEM_PROMPT = """\
You rewrite a question for a keyword search over a software team's documentation, which is \
written partly in Simplified Chinese and partly in English (with English identifiers).
Reply with exactly three short lines and nothing else:
1. the question's topic as English search keywords;
2. the same topic as Simplified Chinese search keywords (the words such docs would use);
3. identifiers and technical terms the answer likely contains (service, queue, table, \
variable or error names), as written in code; leave the line empty when there are none.
Do not answer the question. Do not add explanations, numbering or quotes."""


_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff]")


def bilingual(text: str) -> bool:
    """Whether a reply has the shape asked for: English keywords and Chinese ones."""
    return bool(_LATIN_WORD.search(text)) and bool(_CJK.search(text))


class Rewriter(Protocol):
    """What `Searcher` needs from a rewriter: extra search text for a question, or None."""

    def rewrite(self, query: str) -> str | None: ...


def normalise(query: str) -> str:
    """The cache key's form of a question: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", query).casefold().split())


class _Shared:
    """The bot's async client and its event loop, which rewrites are sent through once shared."""

    __slots__ = ("client", "loop", "slot_wait")

    def __init__(self, client: anthropic.AsyncAnthropic, loop: asyncio.AbstractEventLoop, slot_wait: float) -> None:
        self.client = client
        self.loop = loop
        self.slot_wait = slot_wait


class ModelRewriter:
    """Rewrites questions with the model, caching each answer in the index database."""

    def __init__(self, client: anthropic.Anthropic | None, *, model: str, db_path: Path) -> None:
        self.client = client
        self.model = model
        self.db_path = Path(db_path)
        self._shared: _Shared | None = None
        self._resting_until = 0.0
        self._kept_at = -math.inf
        self._lock = threading.Lock()

    def share(self, client: anthropic.AsyncAnthropic, loop: asyncio.AbstractEventLoop, *, slot_wait: float) -> None:
        """Send rewrites from now on with `client` (the answers' client, whose transport holds the
        process's adaptive concurrency limit) on `loop`, giving up on a slot after `slot_wait` s.
        The sync client is closed: every model request of the process then goes through the limit."""
        self._shared = _Shared(client.with_options(timeout=_timeout(), max_retries=MAX_RETRIES), loop, slot_wait)
        own, self.client = self.client, None
        if own is not None:
            own.close()

    # -- cache -----------------------------------------------------------------------------
    def _key(self, query: str) -> str:
        return f"v{PROMPT_VERSION}:{self.model}:{normalise(query)}"

    def _connect(self) -> sqlite3.Connection | None:
        if not self.db_path.is_file():
            return None
        # A short busy timeout: a cache write waits for no re-index; losing one is harmless.
        return sqlite3.connect(str(self.db_path), timeout=1.0, isolation_level=None)

    def cached(self, query: str) -> str | None:
        """The stored rewrite of a question ("" when the model had nothing to add), or None."""
        conn = self._connect()
        if conn is None:
            return None
        try:
            row = conn.execute("SELECT value FROM ix_rewrites WHERE key = ?", (self._key(query),)).fetchone()
        except sqlite3.Error:
            return None
        finally:
            conn.close()
        return None if row is None else str(row[0])

    def _store(self, query: str, value: str) -> None:
        conn = self._connect()
        if conn is None:
            return
        try:
            conn.execute(
                "INSERT OR REPLACE INTO ix_rewrites (key, value, created_at) VALUES (?, ?, ?)",
                (self._key(query), value, time.time()),
            )
        except sqlite3.Error as exc:
            log.info("query rewrite not cached", extra={"error": type(exc).__name__})
        finally:
            conn.close()

    def round_trips(self) -> list[float]:
        """The round trips of this model's recent rewrites kept by an earlier process (or none)."""
        conn = self._connect()
        if conn is None:
            return []
        try:
            row = conn.execute(
                "SELECT samples, updated_at FROM ix_rewrite_latency WHERE model = ?", (self.model,)
            ).fetchone()
            if row is None or not isinstance(row[1], float | int) or time.time() - row[1] > ROUND_TRIPS_MAX_AGE:
                return []
            values = json.loads(row[0])
        except (sqlite3.Error, ValueError):
            return []
        finally:
            conn.close()
        if not isinstance(values, list):
            return []
        return [float(v) for v in values if isinstance(v, float | int) and math.isfinite(v) and v >= 0]

    def keep_round_trips(self, samples: list[float]) -> None:
        """Store the recent round trips for the next process, at most every `KEEP_EVERY` seconds
        (losing a write, or the last few round trips, is harmless)."""
        with self._lock:
            now = time.monotonic()
            if now - self._kept_at < KEEP_EVERY:
                return
            self._kept_at = now
        conn = self._connect()
        if conn is None:
            return
        try:
            conn.execute(
                "INSERT OR REPLACE INTO ix_rewrite_latency (model, samples, updated_at) VALUES (?, ?, ?)",
                (self.model, json.dumps([round(v, 4) for v in samples]), time.time()),
            )
        except sqlite3.Error as exc:
            log.info("query rewrite round trips not kept", extra={"error": type(exc).__name__})
        finally:
            conn.close()

    def needs_model(self, query: str) -> bool:
        """Whether `rewrite(query)` would call the model now (not cached, not resting after a failure)."""
        query = query.strip()
        if not query or self.cached(query) is not None:
            return False
        with self._lock:
            return time.monotonic() >= self._resting_until

    # -- the model call --------------------------------------------------------------------
    def rewrite(self, query: str) -> str | None:
        """Search text to add to the question, or None (no rewrite: search the question alone)."""
        query = query.strip()
        if not query:
            return None
        hit = self.cached(query)
        if hit is not None:
            return hit or None
        with self._lock:
            if time.monotonic() < self._resting_until:
                return None
        try:
            text, finished = self._ask(query[:MAX_QUERY_CHARS])
        except Exception as exc:  # any failure means plain search, never a failed answer
            if _no_slot(exc):  # the model was not asked (busy with answers): no reason to rest
                log.info("query rewrite not sent: no model slot free in time; searching without it")
                return None
            with self._lock:
                self._resting_until = time.monotonic() + COOLDOWN_SECONDS
            status = getattr(exc, "status_code", None)
            log.warning(
                "query rewrite failed; searching without it", extra={"error": type(exc).__name__, "status": status}
            )
            return None
        if finished:  # a reply cut short (max_tokens) serves this search only: ask again next time
            self._store(query, text)
        return text or None

    def _ask(self, query: str) -> tuple[str, bool]:
        """(the rewrite's cleaned lines, whether the model ended its reply itself)."""
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": MAX_TOKENS,
            "system": SYSTEM_PROMPT,
            "messages": [{"role": "user", "content": query}],
        }
        shared = self._shared
        if shared is not None:
            message = self._ask_shared(shared, request)
        else:
            assert self.client is not None
            message = self.client.messages.create(**request)
        text = "\n".join(block.text for block in message.content if block.type == "text")
        lines = [_NUMBERING.sub("", line.strip()) for line in text.splitlines()]
        # The three lines asked for, no more: a reply that goes on (an answer, a canned text) adds
        # nothing but noise to the search beyond them (search.on_topic judges the rest).
        kept = "\n".join([line for line in lines if line][:MAX_LINES])[:MAX_REWRITE_CHARS]
        if kept and not bilingual(kept):
            # Not the keyword lines asked for (an answer to the question, a canned reply): searching
            # with it would send the model worse passages than the question alone. Cached as nothing.
            log.info("query rewrite ignored: not English and Chinese keyword lines")
            kept = ""
        return kept, message.stop_reason == "end_turn"

    def _ask_shared(self, shared: _Shared, request: dict[str, Any]) -> Message:
        """The request on the bot's loop, through its limit; this (worker) thread waits for it."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is shared.loop:  # waiting here would block the very loop that must send it
            raise RuntimeError("a shared query rewrite must be asked from a worker thread")

        async def send() -> Message:
            from bot.architect.limit import waiting_at_most

            with waiting_at_most(shared.slot_wait):
                return await shared.client.messages.create(**request)

        future = asyncio.run_coroutine_threadsafe(send(), shared.loop)
        try:
            # Bounded even if the loop stops answering: the slot wait, then each try and its backoff.
            return future.result(timeout=shared.slot_wait + (MAX_RETRIES + 1) * (TIMEOUT_SECONDS + 2.0))
        except BaseException:
            future.cancel()  # on the loop: gives back a slot it holds or waits for
            raise

    def close(self) -> None:
        """Close the sync client (a shared client belongs to whoever shared it)."""
        if self.client is not None:
            self.client.close()


def _no_slot(exc: BaseException) -> bool:
    from bot.architect.limit import NoSlot

    return isinstance(exc, NoSlot)


def _timeout() -> anthropic.Timeout:
    import anthropic

    return anthropic.Timeout(TIMEOUT_SECONDS, connect=CONNECT_SECONDS)


def build_rewriter(settings: Settings) -> ModelRewriter | None:
    """A `ModelRewriter` from settings alone, or None without a model key."""
    if settings.anthropic_api_key is None:
        return None
    import anthropic

    client = anthropic.Anthropic(
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url or DEFAULT_BASE_URL,
        timeout=_timeout(),
        max_retries=MAX_RETRIES,
    )
    return ModelRewriter(client, model=settings.model, db_path=settings.db_path)
