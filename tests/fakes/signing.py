"""Sign and post requests the way Slack does in HTTP mode (Events API, slash commands, interactivity).

Slack signs every HTTP request with the app's signing secret::

    X-Slack-Request-Timestamp: <unix seconds>
    X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:<timestamp>:<raw body>")>

and, when it retries an event that was not acknowledged in time, adds ``X-Slack-Retry-Num`` and
``X-Slack-Retry-Reason`` (e.g. ``http_timeout``).

API:
    - ``sign(secret, body, timestamp=None) -> dict[str, str]``: the two signature headers.
    - ``await post_event(url, secret, payload, retry_num=None, *, retry_reason="http_timeout",
      timestamp=None) -> (status, body)``: POST a JSON Events API payload.
    - ``await post_slash_command(url, secret, fields, ...)`` / ``await post_interactive(url, secret,
      payload, ...)``: the form-encoded bodies Slack posts for commands and interactivity
      (``payload=<json>`` for the latter).
    - ``await post_signed(url, secret, body, content_type, ...)``: the general form of the above.

``url`` may be the bot's root (``http://127.0.0.1:3000``); then ``/slack/events`` is appended.
Pass a wrong ``secret`` or an old ``timestamp`` to test rejection.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

EVENTS_PATH = "/slack/events"


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 request signature headers for ``body`` (``timestamp`` defaults to now)."""
    stamp = int(time.time()) if timestamp is None else int(timestamp)
    basestring = b"v0:" + str(stamp).encode() + b":" + body
    digest = hmac.new(secret.encode(), basestring, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(stamp), "X-Slack-Signature": f"v0={digest}"}


def events_url(url: str) -> str:
    """``url`` itself, or ``url + "/slack/events"`` when it names only the server."""
    return url.rstrip("/") + EVENTS_PATH if urlsplit(url).path in ("", "/") else url


async def post_signed(
    url: str,
    secret: str,
    body: bytes,
    content_type: str,
    *,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
    timestamp: int | None = None,
    session: aiohttp.ClientSession | None = None,
) -> tuple[int, str]:
    """POST a signed body; return the HTTP status and the response text."""
    headers = {"Content-Type": content_type, **sign(secret, body, timestamp)}
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason
    target = events_url(url)
    if session is not None:
        async with session.post(target, data=body, headers=headers) as response:
            return response.status, await response.text()
    async with aiohttp.ClientSession() as own, own.post(target, data=body, headers=headers) as response:
        return response.status, await response.text()


async def post_event(
    url: str,
    secret: str,
    payload: Mapping[str, Any],
    retry_num: int | None = None,
    *,
    retry_reason: str = "http_timeout",
    timestamp: int | None = None,
    session: aiohttp.ClientSession | None = None,
) -> tuple[int, str]:
    """POST an Events API payload (``event_callback``, ``url_verification``) as Slack does."""
    body = json.dumps(payload).encode()
    return await post_signed(
        url,
        secret,
        body,
        "application/json",
        retry_num=retry_num,
        retry_reason=retry_reason,
        timestamp=timestamp,
        session=session,
    )


async def post_slash_command(
    url: str,
    secret: str,
    fields: Mapping[str, str],
    *,
    timestamp: int | None = None,
    session: aiohttp.ClientSession | None = None,
) -> tuple[int, str]:
    """POST slash command fields (see ``slash_command_payload``) form-encoded."""
    body = urlencode(dict(fields)).encode()
    return await post_signed(
        url, secret, body, "application/x-www-form-urlencoded", timestamp=timestamp, session=session
    )


async def post_interactive(
    url: str,
    secret: str,
    payload: Mapping[str, Any],
    *,
    timestamp: int | None = None,
    session: aiohttp.ClientSession | None = None,
) -> tuple[int, str]:
    """POST an interactivity payload as ``payload=<json>``, form-encoded."""
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return await post_signed(
        url, secret, body, "application/x-www-form-urlencoded", timestamp=timestamp, session=session
    )
