"""The Anthropic client, built from Settings only, and the model check `doctor` and start-up run."""

from __future__ import annotations

import logging

import anthropic
import httpx2
from anthropic import AsyncAnthropic

from bot.architect.limit import AdaptiveLimit, LimitedTransport
from bot.config import Settings
from bot.errors import ConfigError
from bot.logs import Redactor

log = logging.getLogger(__name__)
DEFAULT_BASE_URL = "https://api.anthropic.com"


def build_anthropic_client(settings: Settings, *, limit: AdaptiveLimit | None = None) -> AsyncAnthropic:
    """An `AsyncAnthropic` configured from `settings` alone (nothing read from the environment here).

    Its own retries (`ARCHBOT_MODEL_RETRIES`, backoff honouring `retry-after`) cover 408/409/429/5xx
    and connection errors before a stream starts; `Architect` retries what happens mid-stream.
    With a `limit`, every message request (retries included) waits for a slot of that adaptive
    concurrency limit, shared by every job of the process (`bot/architect/limit.py`).
    """
    if settings.anthropic_api_key is None:
        raise ConfigError("ANTHROPIC_API_KEY", "is not set (answers are retrieval-only without it)")
    return AsyncAnthropic(
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url or DEFAULT_BASE_URL,
        timeout=anthropic.Timeout(settings.model_timeout, connect=min(10.0, settings.model_timeout)),
        max_retries=settings.model_max_retries,
        http_client=_limited_http_client(settings, limit) if limit is not None else None,
    )


def _limited_http_client(settings: Settings, limit: AdaptiveLimit) -> httpx2.AsyncClient:
    pool = httpx2.Limits(max_connections=max(100, 2 * limit.ceiling), max_keepalive_connections=max(20, limit.ceiling))
    return httpx2.AsyncClient(
        transport=LimitedTransport(httpx2.AsyncHTTPTransport(limits=pool), limit),
        timeout=httpx2.Timeout(settings.model_timeout, connect=min(10.0, settings.model_timeout)),
        follow_redirects=True,
    )


async def check_model(settings: Settings, client: AsyncAnthropic | None = None) -> tuple[bool, str]:
    """Is `ARCHBOT_MODEL` a model this key can use? (ok, a one-line message for people).

    Without an API key there is nothing to check: that is the retrieval-only mode, not an error.
    """
    if settings.anthropic_api_key is None:
        return True, "no ANTHROPIC_API_KEY: answers are retrieval-only (no model is called)"
    redact = Redactor(settings.secrets())
    own_client = client is None
    client = client or build_anthropic_client(settings)
    try:
        info = await client.models.retrieve(settings.model)
        lifecycle = getattr(info, "lifecycle", None) or "active"
        if lifecycle == "retired":
            return False, f"ARCHBOT_MODEL={settings.model!r} is retired: choose a current model"
        if lifecycle == "deprecated":
            when = f" on {info.retires_at:%Y-%m-%d}" if getattr(info, "retires_at", None) else ""
            return (
                True,
                f"model {info.id} works but is deprecated and retires{when or ' soon'}: plan to change ARCHBOT_MODEL",
            )
        return True, f"model {info.id} is available ({info.display_name})"
    except anthropic.NotFoundError:
        known = await _some_models(client)
        hint = f"; available include: {', '.join(known)}" if known else ""
        return False, f"ARCHBOT_MODEL={settings.model!r} does not exist for this API key (not in the models list){hint}"
    except anthropic.AuthenticationError:
        return False, "the Anthropic API rejected ANTHROPIC_API_KEY (401): check the key"
    except anthropic.PermissionDeniedError:
        return False, "ANTHROPIC_API_KEY may not list models (403): check the key's permissions"
    except anthropic.APIConnectionError as exc:
        where = settings.anthropic_base_url or DEFAULT_BASE_URL
        return False, redact(f"cannot reach the Anthropic API at {where}: {type(exc).__name__}")
    except anthropic.APIStatusError as exc:
        return False, redact(f"the models endpoint answered HTTP {exc.status_code}")
    finally:
        if own_client:
            await client.close()


async def _some_models(client: AsyncAnthropic, limit: int = 8) -> list[str]:
    try:
        page = await client.models.list(limit=limit)
        return [m.id for m in page.data][:limit]
    except anthropic.APIError:
        return []
