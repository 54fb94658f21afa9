"""Structured logs: one JSON object per line (or plain text), secrets redacted at the edge.

Call `setup_logging(settings)` once at start. Log with `logging.getLogger(__name__)`, lazy
`%s` arguments, and ids as fields: `log.info("job done", extra={"job_id": 3, "channel": "C1"})`.
Every record passes through `RedactFilter`, which replaces any configured secret and anything
shaped like a Slack or Anthropic token with `[redacted]` — in the message, the arguments
and the extra fields — and any other credential (one a teammate pasted, quoted back in an error)
with `[redacted: kind]`, as everywhere else (`bot/redaction.py`).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from bot.redaction import redact_text

TOKEN_PATTERN = re.compile(r"(xox[abprs]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+|sk-ant-[A-Za-z0-9_-]+)")
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class Redactor:
    """Replaces secrets in strings. One instance, shared by the log filter and error paths."""

    def __init__(self, secrets: Iterable[str] = (), *, credentials: bool = False) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        self.credentials = credentials  # also every credential the docs' detector finds (log records)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        text = TOKEN_PATTERN.sub("[redacted]", text)
        return redact_text(text) if self.credentials else text

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(v) for v in value)
        return value


redact = Redactor(credentials=True)


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD:
                record.__dict__[key] = redact.value(value)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class TextFormatter(logging.Formatter):
    """`time level logger message key=value ...` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD)
        return f"{base} {extras}".rstrip()


def setup_logging(*, level: str = "INFO", fmt: str = "json", secrets: Iterable[str] = ()) -> None:
    """Configure the root logger once: redaction, format, and quiet third-party loggers."""
    global redact
    redact.secrets = Redactor(secrets).secrets
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactFilter())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level"})
        )
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Their DEBUG dumps carry request bodies and headers: never below INFO.
    for noisy in ("anthropic", "httpx", "httpcore", "slack_sdk", "slack_bolt", "aiohttp.access", "jieba"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLevelName(level)))
