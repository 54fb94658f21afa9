"""archbot's error tree. Each error carries the context a caller needs to act on it.

What a user sees is never `str(exc)` of these: the job runner and the CLI translate them
into a plain line (see `bot/jobs.py` and `bot/cli.py`), and the detail goes to the log.
"""

from __future__ import annotations


class ArchbotError(Exception):
    """Base class of every error archbot raises on purpose."""


class ConfigError(ArchbotError):
    """A setting is missing or malformed; `variable` is its environment name."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


class ModelError(ArchbotError):
    """The model call failed after its bounded retries."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        self.status = status
        self.retryable = retryable
        super().__init__(message)


class SlackPostError(ArchbotError):
    """Posting to Slack failed for good (after the client's retries)."""

    def __init__(self, message: str, *, channel: str, thread_ts: str | None, error: str | None = None) -> None:
        self.channel = channel
        self.thread_ts = thread_ts
        self.error = error
        super().__init__(message)


class IndexError_(ArchbotError):
    """Indexing could not run at all (not a single odd file: those are skipped and counted)."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class StoreUnavailable(ArchbotError):
    """The database cannot take a write now (locked past the caller's budget, read-only, gone).
    The listener answers 503 so Slack redelivers the event; nothing was acked."""
