"""Wiring: the Slack Web API client and the Bolt app, built the same way for both transports.

`build_client` gives an `AsyncWebClient` on `SLACK_API_URL` with retry handlers for rate
limits (several 429s in a row, honouring Retry-After), and for connection errors and 5xx over
`ARCHBOT_SLACK_RETRY_SECONDS` (`bot/slack/retry.py`: posts are never repeated blindly).
`build_app` hands that client to `AsyncApp`, so Bolt's own calls (auth.test,
apps.connections.open for Socket Mode) follow the same base URL, and registers every
listener in one place (`bot/slack/listeners.py`), whichever transport delivers the events.
"""

from __future__ import annotations

import logging

import aiohttp
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.slack.deps import Deps
from bot.slack.listeners import QuestionIntake, register_listeners
from bot.slack.retry import ArchbotWebClient, build_retry_handlers

log = logging.getLogger(__name__)


def build_client(
    settings: Settings, *, timeout: int = 30, session: aiohttp.ClientSession | None = None, retry: bool = True
) -> AsyncWebClient:
    """The Web API client. Pass a `session` (made inside the running loop) in long-lived processes:
    without one slack_sdk opens a new session, TCP connection and DNS lookup for every call.
    `retry=False`: one try per call, at most `timeout` seconds (a probe that must answer quickly)."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    return ArchbotWebClient(
        token=token,
        base_url=settings.slack_api_url,
        timeout=timeout,
        session=session,
        retry_handlers=build_retry_handlers(settings.slack_retry_seconds) if retry else [],
        retry_window=settings.slack_retry_seconds,
    )


class _SameTokenNotice(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN itself and, given our client too, warns at every start that the
    token "will be unused". Our client was built from that same variable: drop that one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def _bolt_logger() -> logging.Logger:
    logger = logging.getLogger("slack_bolt.App")
    if not any(isinstance(f, _SameTokenNotice) for f in logger.filters):
        logger.addFilter(_SameTokenNotice())
    return logger


def build_app(deps: Deps, client: AsyncWebClient, intake: QuestionIntake | None = None) -> AsyncApp:
    """The Bolt app with every listener registered. Acks are sent after the listener ran
    (process_before_response): a job is durable in the store before Slack hears "ok"."""
    settings = deps.settings
    app = AsyncApp(
        client=client,
        signing_secret=settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None,
        request_verification_enabled=not settings.socket_mode,
        process_before_response=True,
        raise_error_for_unhandled_request=False,
        logger=_bolt_logger(),
    )
    register_listeners(app, deps, intake)
    return app
