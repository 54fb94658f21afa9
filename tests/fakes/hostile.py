"""Hostile and broken requests for `POST /slack/events`: a table shared by the tests and the bench.

``build_cases(secret)`` returns ``Case``s in three groups, each with the answer Slack's side of the
contract expects:
- ``unsigned``: forged, stale, missing or non-numeric signature headers → 401;
- ``malformed``: signed bodies that are not a Slack request (bad JSON, non-UTF-8, arrays, deep
  nesting, ``payload=`` garbage, url_verification oddities) → 400;
- ``odd-shaped``: signed JSON objects of shapes Slack never sends (``event`` as a string,
  ``channel`` as a number, unknown event types...) → 200 (acked, so Slack does not redeliver,
  and ignored).
``await fire(session, url, secret, case) -> (status, text)`` posts one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

from tests.fakes.signing import sign
from tests.fakes.slack import event_callback, mention_event

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@dataclass
class Case:
    group: str  # unsigned | malformed | odd-shaped
    name: str
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] | None = None  # None: signed correctly


def _event(event: object, **extra: object) -> bytes:
    return json.dumps({**event_callback({"type": "message"}), "event": event, **extra}).encode()


def _message(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "type": "message",
        "channel": "C9",
        "user": "U1",
        "text": "<@UBOT> hi",
        "ts": "1700000001.000001",
        "channel_type": "channel",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def build_cases(secret: str) -> list[Case]:
    valid = json.dumps(event_callback(mention_event("<@UBOT> hi", channel="C9", user="U1", ts="1.1"))).encode()
    now = int(time.time())
    good = sign(secret, valid, now)

    def headers(ts: str | None, sig: str | None) -> dict[str, str]:
        out = {}
        if ts is not None:
            out["X-Slack-Request-Timestamp"] = ts
        if sig is not None:
            out["X-Slack-Signature"] = sig
        return out

    cases = [
        Case("unsigned", "no signature headers", valid, headers={}),
        Case("unsigned", "wrong secret", valid, headers=sign("not-the-secret", valid, now)),
        Case("unsigned", "stale timestamp", valid, headers=sign(secret, valid, now - 600)),
        Case("unsigned", "future timestamp", valid, headers=sign(secret, valid, now + 600)),
        Case("unsigned", "non-numeric timestamp", valid, headers=headers("abc", good["X-Slack-Signature"])),
        Case("unsigned", "float timestamp", valid, headers=headers(f"{now}.5", good["X-Slack-Signature"])),
        Case("unsigned", "exponent timestamp", valid, headers=headers("1e9", good["X-Slack-Signature"])),
        Case("unsigned", "empty timestamp", valid, headers=headers("", good["X-Slack-Signature"])),
        Case("unsigned", "huge timestamp", valid, headers=headers("9" * 40, good["X-Slack-Signature"])),
        Case("unsigned", "timestamp only", valid, headers=headers(str(now), None)),
        Case("unsigned", "signature only", valid, headers=headers(None, good["X-Slack-Signature"])),
        Case("unsigned", "signature without v0=", valid, headers=headers(str(now), good["X-Slack-Signature"][3:])),
        Case("unsigned", "empty signature", valid, headers=headers(str(now), "")),
        Case("unsigned", "non-ascii signature", valid, headers=headers(str(now), "v0=é")),
        Case("unsigned", "body changed after signing", valid + b" ", headers=good),
        Case("unsigned", "bad JSON", b"{not json", headers={}),
        Case("unsigned", "non-UTF-8", b"\xff\xfe{}", headers={}),
        Case("unsigned", "JSON array", b"[1, 2]", headers={}),
        Case("unsigned", "deep nesting", b"[" * 100_000 + b"]" * 100_000, headers={}),
        Case("unsigned", "payload= garbage", b"payload=%7Bnope", FORM, headers={}),
    ]
    malformed = [
        ("bad JSON", b"{not json", JSON),
        ("truncated JSON", valid[:-5], JSON),
        ("trailing garbage", valid + b"garbage", JSON),
        ("empty body as JSON", b"", JSON),
        ("whitespace body", b"   ", JSON),
        ("non-UTF-8 bytes", b"\xff\xfe\x00{}", JSON),
        ("latin-1 text", '{"type": "event_callback", "x": "café"}'.encode("latin-1"), JSON),
        ("JSON array", b"[1, 2, 3]", JSON),
        ("array of events", json.dumps([json.loads(valid)]).encode(), JSON),
        ("JSON string", b'"event_callback"', JSON),
        ("JSON number", b"42", JSON),
        ("JSON null", b"null", JSON),
        ("JSON true", b"true", JSON),
        ("deep array nesting", b"[" * 100_000 + b"]" * 100_000, JSON),
        ("deep object nesting", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, JSON),
        ("payload= not JSON", b"payload=not-json", FORM),
        ("payload= open brace", b"payload=%7B", FORM),
        ("payload= empty", b"payload=", FORM),
        ("payload= null", b"payload=null", FORM),
        ("payload= array", b"payload=" + quote("[1,2]").encode(), FORM),
        ("payload= number", b"payload=12", FORM),
        ("payload= non-UTF-8", b"payload=%FF%FE%7B%7D", FORM),
        ("payload= raw non-UTF-8", b"payload=\xff\xfe", FORM),
        ("payload= deep nesting", b"payload=" + quote("[" * 50_000 + "]" * 50_000).encode(), FORM),
        ("form with 'payload' in a value", b"command=%2Farch-review&text=payload", FORM),
        ("form garbage", b"&&&===&&&", FORM),
        ("text/plain JSON", valid.replace(b"{", b" {", 1), "text/plain"),
        ("url_verification without challenge", b'{"type": "url_verification"}', JSON),
        ("url_verification challenge number", b'{"type": "url_verification", "challenge": 12}', JSON),
        ("url_verification challenge object", b'{"type": "url_verification", "challenge": {"a": 1}}', JSON),
        ("url_verification challenge null", b'{"type": "url_verification", "challenge": null}', JSON),
        (
            "url_verification huge challenge",
            json.dumps({"type": "url_verification", "challenge": "x" * 10**6}).encode(),
            JSON,
        ),
        ("empty object", b"{}", JSON),
    ]
    cases += [Case("malformed", name, body, ctype) for name, body, ctype in malformed]
    odd_objects = [
        ("lone surrogate escape", b'{"type": "event_callback", "event": {"type": "message", "text": "\\ud800"}}', JSON),
        ("deep nesting in event", _event({"type": "message", "text": json.loads("[" * 500 + "]" * 500)}), JSON),
        ("NaN literal", b'{"type": "event_callback", "event": {"type": "message"}, "event_time": NaN}', JSON),
        ("authorizations as string", _event(_message(), authorizations="x"), JSON),
        ("authorizations as list of str", _event(_message(), authorizations=["x"]), JSON),
        ("team as number", _event(_message(), team=7), JSON),
        ("team as list", _event(_message(), team=["T1"]), JSON),
        ("enterprise as number", _event(_message(), enterprise=7), JSON),
        ("JSON sent as form", valid, FORM),
        ("type as list", b'{"type": ["event_callback"]}', JSON),
        ("type as object", b'{"type": {"a": 1}}', JSON),
    ]
    cases += [Case("odd-shaped", name, body, ctype) for name, body, ctype in odd_objects]
    odd = [
        ("event as string", _event("message")),
        ("event as list", _event([_message()])),
        ("event as number", _event(5)),
        ("event as null", _event(None)),
        ("event without type", _event({"channel": "C9"})),
        ("event type as number", _event(_message(type=3))),
        ("event type as list", _event(_message(type=["message"]))),
        ("channel as number", _event(_message(channel=12345))),
        ("channel as object", _event(_message(channel={"id": "C9"}))),
        ("channel missing", _event(_message(channel=...))),
        ("user as number", _event(_message(user=7))),
        ("user missing", _event(_message(user=...))),
        ("ts as number", _event(_message(ts=1700000001.5))),
        ("ts missing", _event(_message(ts=...))),
        ("text as object", _event(_message(text={"a": 1}))),
        ("text as list", _event(_message(text=["<@UBOT>"]))),
        ("thread_ts as list", _event(_message(thread_ts=["1.1"]))),
        ("subtype as list", _event(_message(subtype=["x"]))),
        ("channel_type as number", _event(_message(channel_type=1))),
        ("bot_id as object", _event(_message(bot_id={"id": "B1"}))),
        ("edited as string", _event(_message(edited="yes"))),
        ("team in event as number", _event(_message(team=5))),
        ("app_mention channel as number", _event({**_message(type="app_mention"), "channel": 9})),
        ("app_mention text as null", _event({**_message(type="app_mention"), "text": None})),
        ("app_home_opened without user", _event({"type": "app_home_opened", "tab": "home"})),
        ("app_home_opened user as list", _event({"type": "app_home_opened", "user": ["U1"], "tab": "home"})),
        ("app_home_opened tab as list", _event({"type": "app_home_opened", "user": "U1", "tab": ["home"]})),
        ("assistant_thread_started as string", _event({"type": "assistant_thread_started", "assistant_thread": "x"})),
        ("assistant_thread_started as list", _event({"type": "assistant_thread_started", "assistant_thread": [1]})),
        ("lone surrogate in a mention", _event(_message(text="<@UBOT> \ud800 hi", ts="1700000002.000002"))),
        ("event_callback without event", json.dumps({"type": "event_callback", "event_id": "Ev1"}).encode()),
    ]
    odd += [(f"unknown event type {i}", _event({"type": f"never_seen_type_{i}"})) for i in range(5)]
    cases += [Case("odd-shaped", name, body) for name, body in odd]
    return cases


async def fire(session: aiohttp.ClientSession, url: str, secret: str, case: Case) -> tuple[int, str]:
    headers = {"Content-Type": case.content_type}
    headers.update(sign(secret, case.body) if case.headers is None else case.headers)
    async with session.post(url, data=case.body, headers=headers) as resp:
        return resp.status, await resp.text()
