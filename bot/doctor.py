"""`archbot doctor`: is this deployment ready to answer? One line per check, with the fix.

Checks, in order: the settings (mode, tokens present, files and folders that must exist),
Slack (`auth.test`, then the granted scopes from its `x-oauth-scopes` header against
manifest.yml's bot scopes), Socket Mode (`apps.connections.open` with the app token), the
database (opens, migrations apply), the stored text (swept by this version's credential detector:
a warning when an older one, or none, last swept it), the index (built, per source, fresh), the
model (`models.retrieve`), and the digest schedule (next run in ARCHBOT_TZ).

Each line starts with ✓ (fine), ✗ (must be fixed: `archbot run` would fail or misbehave),
! (worth a look, not fatal) or – (for information). Every ✗ is followed by its fix.
The exit code is 1 when any line is ✗, else 0.

Secrets are never printed: a token shows as its kind's prefix (`xoxb-…`), and every error
text from a client library passes through the log redactor first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from croniter import croniter
from pydantic import SecretStr

from bot.config import EXAMPLE_TEAM_PROFILE, PROJECT_ROOT, Settings
from bot.logs import Redactor
from bot.profile import DRAFT_MARKER
from bot.stats import format_age

Status = Literal["ok", "fail", "warn", "info"]
SYMBOLS: dict[Status, str] = {"ok": "✓", "fail": "✗", "warn": "!", "info": "–"}
SLACK_TIMEOUT = 10
MODEL_TIMEOUT = 20.0
STALE_SCAN_LIMIT = 20_000  # files looked at per folder for the freshness check

# The bot scopes in manifest.yml, for an installed package that ships without the manifest.
# tests/test_doctor.py checks that this list and manifest.yml agree.
MANIFEST_SCOPES = (
    "app_mentions:read",
    "assistant:write",
    "channels:history",
    "channels:read",
    "chat:write",
    "commands",
    "groups:history",
    "groups:read",
    "im:history",
    "im:read",
    "im:write",
    "mpim:read",
    "reactions:write",
    "users:read",
)

_SLACK_AUTH_FIX = {
    "invalid_auth": "SLACK_BOT_TOKEN is not valid for this workspace: copy the Bot User OAuth Token again "
    "(api.slack.com/apps → your app → OAuth & Permissions).",
    "not_authed": "set SLACK_BOT_TOKEN to the Bot User OAuth Token (OAuth & Permissions, starts with xoxb-).",
    "token_revoked": "the bot token was revoked: reinstall the app to the workspace and copy the new xoxb- token.",
    "token_expired": "the bot token expired: turn off token rotation for the app, reinstall, copy the new token.",
    "account_inactive": "the app was uninstalled or its workspace is inactive: reinstall the app.",
}
_SOCKET_FIX = {
    "invalid_auth": "SLACK_APP_TOKEN is not valid: create an app-level token with the connections:write scope "
    "(Basic Information → App-Level Tokens) and copy it (xapp-…).",
    "not_allowed_token_type": "SLACK_APP_TOKEN must be an app-level token (xapp-…) with connections:write.",
    "missing_scope": "the app-level token needs the connections:write scope: create a new one with it.",
    "token_revoked": "the app-level token was revoked: create a new one (Basic Information → App-Level Tokens).",
}


@dataclass(frozen=True)
class Check:
    status: Status
    name: str
    detail: str
    fix: str | None = None

    def lines(self) -> list[str]:
        out = [f"{SYMBOLS[self.status]} {self.name}: {self.detail}"]
        if self.fix and self.status in ("fail", "warn"):
            out.append(f"    fix: {self.fix}")
        return out


def ok(name: str, detail: str) -> Check:
    return Check("ok", name, detail)


def fail(name: str, detail: str, fix: str) -> Check:
    return Check("fail", name, detail, fix)


def warn(name: str, detail: str, fix: str | None = None) -> Check:
    return Check("warn", name, detail, fix)


def info(name: str, detail: str) -> Check:
    return Check("info", name, detail)


def mask(secret: SecretStr | str | None) -> str:
    """A secret as its kind's prefix only: `xoxb-…`, `xapp-…`, `sk-ant-…`; `set` for anything else."""
    if secret is None:
        return "unset"
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    for prefix in ("xoxb-", "xapp-", "xoxp-", "sk-ant-"):
        if value.startswith(prefix):
            return f"{prefix}…"
    return "set (hidden)"


# -- settings ----------------------------------------------------------------------------
def check_settings(settings: Settings) -> list[Check]:
    out = [ok("settings", "every variable parsed and valid")]
    if settings.socket_mode:
        out.append(ok("mode", f"Socket Mode (SLACK_APP_TOKEN {mask(settings.slack_app_token)})"))
    else:
        out.append(
            ok(
                "mode",
                f"HTTP Events API: Slack must reach https://<your host>/slack/events (port {settings.port})",
            )
        )
    if settings.slack_bot_token is None:
        out.append(
            fail(
                "SLACK_BOT_TOKEN",
                "unset: `archbot run` cannot start",
                "set SLACK_BOT_TOKEN to the Bot User OAuth Token (api.slack.com/apps → OAuth & Permissions, xoxb-…).",
            )
        )
    else:
        out.append(ok("SLACK_BOT_TOKEN", mask(settings.slack_bot_token)))
    if not settings.socket_mode:
        if settings.slack_signing_secret is None:
            out.append(
                fail(
                    "SLACK_SIGNING_SECRET",
                    "unset in HTTP mode: requests from Slack cannot be verified, `archbot run` refuses to start",
                    "set SLACK_SIGNING_SECRET (Basic Information → App Credentials → Signing Secret), "
                    "or set SLACK_APP_TOKEN to use Socket Mode instead.",
                )
            )
        else:
            out.append(ok("SLACK_SIGNING_SECRET", "set (hidden)"))
    elif settings.slack_signing_secret is not None:
        out.append(info("SLACK_SIGNING_SECRET", "set but unused in Socket Mode"))
    out.append(check_team_profile(settings.team_profile))
    if not settings.docs:
        out.append(info("ARCHBOT_DOCS", "unset: only the bundled knowledge/ library is indexed"))
    for folder in settings.docs:
        if folder.is_dir():
            out.append(ok("ARCHBOT_DOCS", f"folder {folder}"))
        else:
            out.append(
                fail(
                    "ARCHBOT_DOCS",
                    f"not a folder: {folder}",
                    "fix the path (comma-separated folders, relative to where archbot runs) or remove it.",
                )
            )
    return out


_PROFILE_FIX = (
    "run `archbot profile draft --out team_profile.md`, review and correct it with the team, "
    "delete its draft marker line, then set ARCHBOT_TEAM_PROFILE=team_profile.md."
)


def check_team_profile(path: Path | None) -> Check:
    """A reviewed profile is fine; none, the bundled example or an unreviewed draft is a warning."""
    if path is None:
        return warn("ARCHBOT_TEAM_PROFILE", "unset: answers know nothing of your team beyond the docs", _PROFILE_FIX)
    if not path.is_file():
        return fail(
            "ARCHBOT_TEAM_PROFILE",
            f"file not found: {path}",
            "point ARCHBOT_TEAM_PROFILE at your reviewed team profile, or unset it (" + _PROFILE_FIX + ")",
        )
    if path.resolve() == EXAMPLE_TEAM_PROFILE.resolve():
        return warn(
            "ARCHBOT_TEAM_PROFILE",
            "points at the bundled example: the model is told about a made-up team",
            _PROFILE_FIX,
        )
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return fail("ARCHBOT_TEAM_PROFILE", f"cannot read {path}: {type(exc).__name__}", "check the file's permissions")
    if DRAFT_MARKER in text:
        return warn(
            "ARCHBOT_TEAM_PROFILE",
            f"{path} is an unreviewed draft (it still carries the draft marker)",
            f"review it with the team, correct what is wrong, then delete the line containing `{DRAFT_MARKER}`.",
        )
    return ok("ARCHBOT_TEAM_PROFILE", str(path))


# -- Slack -------------------------------------------------------------------------------
def manifest_scopes(path: Path | None = None) -> tuple[list[str], str]:
    """(bot scopes, where they came from): manifest.yml when found, else the built-in copy."""
    candidates = [path] if path else [PROJECT_ROOT / "manifest.yml", Path.cwd() / "manifest.yml"]
    for candidate in candidates:
        if candidate is None or not candidate.is_file():
            continue
        try:
            data = yaml.safe_load(candidate.read_text(encoding="utf-8")) or {}
            scopes = data["oauth_config"]["scopes"]["bot"]
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            continue
        return [str(s) for s in scopes], str(candidate.name)
    return list(MANIFEST_SCOPES), "built-in list"


def _slack_error(exc: Exception) -> str:
    from slack_sdk.errors import SlackApiError

    if isinstance(exc, SlackApiError):
        with contextlib.suppress(Exception):
            return str(exc.response.get("error") or exc.response.status_code)
    return type(exc).__name__


async def check_slack(settings: Settings, redact: Redactor) -> list[Check]:
    if settings.slack_bot_token is None:
        return [info("Slack", "skipped: no SLACK_BOT_TOKEN")]
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    client = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url, timeout=SLACK_TIMEOUT
    )
    out: list[Check] = []
    try:
        response = await client.auth_test()
    except SlackApiError as exc:
        code = _slack_error(exc)
        fix = _SLACK_AUTH_FIX.get(code, f"Slack answered `{code}`: check SLACK_BOT_TOKEN and SLACK_API_URL.")
        return [fail("Slack auth.test", f"failed: {code}", fix)]
    except Exception as exc:
        return [
            fail(
                "Slack auth.test",
                redact(f"cannot reach {settings.slack_api_url}: {type(exc).__name__} {exc}".strip()),
                "check the network, a proxy, and SLACK_API_URL (default https://slack.com/api/).",
            )
        ]
    who = f"bot @{response.get('user') or '?'} ({response.get('user_id') or '?'})"
    where = response.get("team") or response.get("team_id") or "?"
    out.append(ok("Slack auth.test", f"{who} in {where}"))

    wanted, origin = manifest_scopes()
    header = _header(response, "x-oauth-scopes")
    if header is None:
        out.append(warn("Slack scopes", "Slack did not report the granted scopes; not checked"))
    else:
        granted = {s.strip() for s in header.split(",") if s.strip()}
        missing = [s for s in wanted if s not in granted]
        if missing:
            out.append(
                fail(
                    "Slack scopes",
                    f"missing {', '.join(missing)} (wanted by {origin})",
                    "add the missing scopes (OAuth & Permissions → Bot Token Scopes, or update the app from "
                    "manifest.yml), then reinstall the app to the workspace; the bot token stays the same.",
                )
            )
        else:
            out.append(ok("Slack scopes", f"all {len(wanted)} bot scopes of {origin} granted"))

    if settings.digest_channel:
        out.append(await _check_digest_channel(client, settings.digest_channel))
    return out


def _header(response: Any, name: str) -> str | None:
    headers = getattr(response, "headers", None) or {}
    with contextlib.suppress(Exception):
        value = headers.get(name)
        if value is not None:
            return str(value)
    for key, value in dict(headers).items():
        if str(key).lower() == name:
            return str(value)
    return None


async def _check_digest_channel(client: Any, channel: str) -> Check:
    """Can the bot post the digest there? Membership, read through conversations.info (a warning at most)."""
    from slack_sdk.errors import SlackApiError

    try:
        data = (await client.conversations_info(channel=channel)).get("channel") or {}
    except SlackApiError as exc:
        code = _slack_error(exc)
        needed = str(exc.response.get("needed") or "")
        if code == "missing_scope" and needed != "groups:read":
            return warn("digest channel", f"{channel} not checked: the token lacks {needed or 'a scope'}")
        if code == "missing_scope":  # a private channel read without groups:read (an install from an older manifest)
            return warn(
                "digest channel",
                f"{channel} could not be checked (a private channel?)",
                f"make sure the bot is a member of {channel} (/invite @archbot) and that it is listed in "
                "ARCHBOT_DIGEST_PRIVATE_CHANNELS if private.",
            )
        return warn(
            "digest channel",
            f"conversations.info {channel}: {code}",
            "check ARCHBOT_DIGEST_CHANNEL is a channel id (C…), and invite the bot there: /invite @archbot.",
        )
    except Exception as exc:
        return warn("digest channel", f"not checked: {type(exc).__name__}")
    name = f"#{data['name']}" if data.get("name") else channel
    if data.get("is_archived"):
        return fail("digest channel", f"{name} is archived", "pick another channel for ARCHBOT_DIGEST_CHANNEL.")
    if data.get("is_member") is False:
        return warn("digest channel", f"the bot is not in {name}", f"invite it: /invite @archbot in {name}.")
    if data.get("is_private"):
        return warn(
            "digest channel",
            f"{name} is a private channel: only its members will see the digest",
            "use a public channel for ARCHBOT_DIGEST_CHANNEL if the whole team should read it.",
        )
    return ok("digest channel", f"{name}")


async def check_socket_mode(settings: Settings, redact: Redactor) -> list[Check]:
    if settings.slack_app_token is None:
        return [info("Socket Mode", "off (SLACK_APP_TOKEN unset): events arrive over HTTP")]
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    client = AsyncWebClient(base_url=settings.slack_api_url, timeout=SLACK_TIMEOUT)
    try:
        response = await client.apps_connections_open(app_token=settings.slack_app_token.get_secret_value())
    except SlackApiError as exc:
        code = _slack_error(exc)
        fix = _SOCKET_FIX.get(
            code,
            f"Slack answered `{code}`: enable Socket Mode for the app (Settings → Socket Mode) "
            "and check SLACK_APP_TOKEN.",
        )
        return [fail("Socket Mode", f"apps.connections.open failed: {code}", fix)]
    except Exception as exc:
        return [
            fail(
                "Socket Mode",
                redact(f"cannot reach {settings.slack_api_url}: {type(exc).__name__} {exc}".strip()),
                "check the network, a proxy, and SLACK_API_URL.",
            )
        ]
    if not response.get("url"):
        return [
            fail(
                "Socket Mode",
                "apps.connections.open returned no WebSocket URL",
                "enable Socket Mode for the app (Settings → Socket Mode).",
            )
        ]
    return [ok("Socket Mode", "apps.connections.open ok: a WebSocket URL was issued")]


# -- database and index ------------------------------------------------------------------
def check_postgres(settings: Settings, redact: Redactor) -> tuple[list[Check], Any]:
    """ARCHBOT_DATABASE_URL: reachable, migrated, writable. (lines, an open PgStore or None)."""
    from bot.store_pg import PgStore

    assert settings.database_url is not None
    url = settings.database_url.get_secret_value()
    try:
        store = PgStore(url, pool_size=2, migrate=False, connect_timeout=2.0)
    except Exception as exc:
        return [
            fail(
                "database",
                redact(f"PostgreSQL at ARCHBOT_DATABASE_URL unreachable: {type(exc).__name__}: {exc}"),
                "check host, port, user, password and database name in ARCHBOT_DATABASE_URL, and that the"
                " server accepts connections from here.",
            )
        ], None
    pending = store.pending_migrations()
    if pending:
        store.close()
        return [
            fail(
                "database",
                f"PostgreSQL reachable but not migrated (pending: {', '.join(map(str, pending))})",
                "start `archbot run` once: it applies the migrations (replicas wait for each other).",
            )
        ], None
    try:
        store.check_writable()
    except Exception as exc:
        store.close()
        return [
            fail(
                "database",
                redact(f"PostgreSQL reachable and migrated but refuses writes: {type(exc).__name__}"),
                "connect to the primary (not a read replica) as a user that may write archbot's tables.",
            )
        ], None
    counts = store.job_counts()
    queued = counts.get("queued", 0) + counts.get("running", 0)
    where = redact(url.split("@")[-1])
    detail = f"PostgreSQL {where}: reachable, migrated, writable; {sum(counts.values())} jobs"
    if queued:
        detail += f" ({queued} queued or running)"
    return [ok("database", detail)], store


def check_database(settings: Settings, redact: Redactor) -> tuple[list[Check], Any]:
    """(lines, an open Store or None)."""
    from bot.store import Store

    if settings.database_url is not None:
        return check_postgres(settings, redact)
    try:
        store = Store(settings.db_path)
        store.ping()
    except Exception as exc:
        return [
            fail(
                "database",
                redact(f"cannot open {settings.db_path}: {type(exc).__name__}: {exc}"),
                "point ARCHBOT_DB at a file in a folder archbot can write (the folder is created if missing).",
            )
        ], None
    counts = store.job_counts()
    queued = counts.get("queued", 0) + counts.get("running", 0)
    detail = f"{settings.db_path}: opens, migrations applied; {sum(counts.values())} jobs"
    if queued:
        detail += f" ({queued} queued or running)"
    return [ok("database", detail)], store


_SWEEP_FIX = (
    "start `archbot run` (one replica is enough): at start it redacts the stored text again in the"
    " background, in short steps between the acks."
)


def check_stored_text(store: Any, *, now: float | None = None) -> list[Check]:
    """Was the stored text swept by this version's credential detector? (`Store.start_sweep`) A
    warning when only an older detector did, or none did and rows are stored; nothing to say on an
    empty database."""
    if store is None:
        return []
    from bot.redaction import detector_version

    try:
        current = detector_version()
        last = store.last_sweep()
        owed = store.needs_sweep(current)
        stored = owed and last is None and store.holds_text()
    except Exception as exc:
        return [warn("stored text", f"not checked ({type(exc).__name__})")]
    now = time.time() if now is None else now
    if last is None:
        if not stored:
            return []
        return [
            warn(
                "stored text",
                f"never swept by the credential detector: rows stored before detector {current} may hold"
                " credentials it redacts",
                _SWEEP_FIX,
            )
        ]
    version, at = last
    if owed:
        return [
            warn(
                "stored text",
                f"last swept for credentials by detector {version} ({format_age(now - at)}), older than this"
                f" version's {current}: rows stored before may hold credentials it redacts",
                _SWEEP_FIX,
            )
        ]
    return [ok("stored text", f"swept for credentials by detector {version} ({format_age(now - at)})")]


def _walk_docs(root: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of the files the indexer would read under root (stat only)."""
    from bot.retrieval.index import DOC_SUFFIXES, SKIP_DIRS

    found: dict[str, tuple[int, int]] = {}
    seen: set[str] = set()
    inside = os.path.realpath(root)

    def outside(path: str) -> bool:  # the indexer never follows a link out of the folder
        real = os.path.realpath(path)
        return real != inside and not real.startswith(inside.rstrip(os.sep) + os.sep)

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):  # as the indexer does, loops cut
        real = os.path.realpath(dirpath)
        if real in seen or outside(dirpath):
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS]
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in DOC_SUFFIXES:
                continue
            path = Path(dirpath) / name
            if path.is_symlink() and outside(str(path)):
                continue
            with contextlib.suppress(OSError):
                st = path.stat()
                found[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
            if len(found) >= STALE_SCAN_LIMIT:
                return found
    return found


def index_drift(store: Any, source: str, root: Path) -> tuple[int, int, int]:
    """(new, changed, removed) files of one source compared with the index, by size and mtime."""
    stored = {
        r["path"]: (r["size"], r["mtime_ns"])
        for r in store.query("SELECT path, size, mtime_ns FROM ix_files WHERE source = ?", (source,))
    }
    from bot.retrieval.index import left_out

    on_disk = {rel: sig for rel, sig in _walk_docs(root).items() if not left_out(source, rel)}
    new = sum(1 for rel in on_disk if rel not in stored)
    changed = sum(1 for rel, sig in on_disk.items() if rel in stored and tuple(stored[rel]) != sig)
    removed = sum(1 for rel in stored if rel not in on_disk)
    return new, changed, removed


def check_index(settings: Settings, store: Any) -> list[Check]:
    if store is None:
        return [info("index", "skipped: the database did not open")]
    from bot.stats import index_summary

    summary = index_summary(store)
    fix = "run `archbot index` (`archbot run` also indexes at start and every ARCHBOT_REINDEX_MINUTES)."
    if not summary or not summary.get("chunks"):
        return [fail("index", "not indexed: run archbot index", fix)]
    now = time.time()
    indexed_at = summary.get("indexed_at")
    when = f"; newest change indexed {format_age(now - indexed_at)}" if indexed_at else ""
    sources = {str(s["source"]): s for s in summary["sources"]}
    names = ", ".join(f"{name} {s['documents']}" for name, s in sources.items())
    out = [ok("index", f"{summary['documents']} docs ({names}), {summary['chunks']} passages{when}")]
    try:
        from bot.retrieval.redact import TOTALS_SQL

        totals = store.query(TOTALS_SQL)[0]
        out.append(
            info(
                "secrets redacted",
                f"{totals['n_values']} credential values in {totals['n_files']} files replaced by [redacted: …] "
                "at index time: the model, Slack, search and ask never see them",
            )
        )
    except Exception:  # an index from an older version: nothing to say
        pass
    try:
        from bot.retrieval.index import sources_for

        configured = sources_for(settings)
    except Exception:  # a missing folder: already a ✗ under ARCHBOT_DOCS
        configured = []
    for name, folder in configured:
        if name not in sources:
            out.append(fail("index", f"{folder} ({name}) is not in the index", fix))
            continue
        try:
            new, changed, removed = index_drift(store, name, folder)
        except Exception as exc:
            out.append(warn("index freshness", f"{name}: not checked ({type(exc).__name__})"))
            continue
        if new or changed or removed:
            out.append(
                warn(
                    "index freshness",
                    f"{name}: {new} new, {changed} changed, {removed} removed file(s) since the last index run",
                    "run `archbot index` (a running bot re-indexes every ARCHBOT_REINDEX_MINUTES).",
                )
            )
        else:
            out.append(ok("index freshness", f"{name}: up to date with {folder}"))
    return out


# -- model -------------------------------------------------------------------------------
async def check_model(settings: Settings, redact: Redactor) -> list[Check]:
    if settings.anthropic_api_key is None:
        return [
            info(
                "model",
                "ANTHROPIC_API_KEY unset: answers will be retrieval-only (the best passages, no written answer)",
            )
        ]
    import anthropic

    client = anthropic.AsyncAnthropic(
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url,
        timeout=min(settings.model_timeout, MODEL_TIMEOUT),
        max_retries=1,
    )
    try:
        model = await client.models.retrieve(settings.model)
    except anthropic.NotFoundError:
        known = await _known_models(client)
        hint = f" Available to this key: {', '.join(known)}." if known else ""
        return [
            fail(
                "model",
                f"{settings.model} not found (ANTHROPIC_API_KEY {mask(settings.anthropic_api_key)})",
                f"set ARCHBOT_MODEL to a model id this key can use.{hint}",
            )
        ]
    except anthropic.AuthenticationError:
        return [
            fail(
                "model",
                f"ANTHROPIC_API_KEY {mask(settings.anthropic_api_key)} was rejected",
                "create a key in the Claude Console (API keys) and set ANTHROPIC_API_KEY; "
                "or unset it for retrieval-only answers.",
            )
        ]
    except anthropic.PermissionDeniedError:
        return [
            fail(
                "model",
                f"the key may not use {settings.model}",
                "use a key of a workspace with access to the model, or change ARCHBOT_MODEL.",
            )
        ]
    except anthropic.APIStatusError as exc:
        return [
            fail(
                "model",
                f"models.retrieve answered HTTP {exc.status_code}",
                "try again later; if it persists, check ANTHROPIC_BASE_URL and the service status.",
            )
        ]
    except Exception as exc:
        where = settings.anthropic_base_url or "the Anthropic API"
        return [
            fail(
                "model",
                redact(f"cannot reach {where}: {type(exc).__name__}"),
                "check the network, a proxy, and ANTHROPIC_BASE_URL.",
            )
        ]
    finally:
        with contextlib.suppress(Exception):
            await client.close()
    name = getattr(model, "display_name", None) or ""
    label = f"{model.id}" + (f" ({name})" if name and name != model.id else "")
    return [ok("model", f"{label} available (ANTHROPIC_API_KEY {mask(settings.anthropic_api_key)})")]


async def _known_models(client: Any, limit: int = 5) -> list[str]:
    with contextlib.suppress(Exception):
        page = await client.models.list(limit=limit)
        return [m.id for m in page.data][:limit]
    return []


# -- digest ------------------------------------------------------------------------------
def check_digest(settings: Settings, store: Any, *, now: datetime | None = None) -> list[Check]:
    if not settings.digest_channel:
        return [info("digest", "no digest channel (ARCHBOT_DIGEST_CHANNEL unset): no weekly digest")]
    now = now or datetime.now(settings.zone)
    upcoming = croniter(settings.digest_cron, now.astimezone(settings.zone)).get_next(datetime)
    detail = f"to {settings.digest_channel}, `{settings.digest_cron}` → next {upcoming:%a %Y-%m-%d %H:%M} {settings.tz}"
    if store is not None:
        with contextlib.suppress(Exception):
            last = store.last_digest()
            if last and last.get("posted_at"):
                posted = datetime.fromtimestamp(last["posted_at"], settings.zone)
                detail += f"; last posted {posted:%Y-%m-%d %H:%M}"
    return [ok("digest", detail)]


# -- all together ------------------------------------------------------------------------
async def _remote_checks(settings: Settings, redact: Redactor) -> tuple[list[Check], list[Check], list[Check]]:
    slack, socket, model = await asyncio.gather(
        check_slack(settings, redact), check_socket_mode(settings, redact), check_model(settings, redact)
    )
    return slack, socket, model


async def gather_checks(settings: Settings) -> list[Check]:
    """Every check, in display order (the network checks run concurrently)."""
    redact = Redactor(settings.secrets())
    checks = check_settings(settings)
    slack, socket, model = await _remote_checks(settings, redact)
    db_checks, store = check_database(settings, redact)
    index_store = store
    if settings.database_url is not None:  # the retrieval index stays a local SQLite file
        from bot.store import Store

        try:
            index_store = Store(settings.db_path)
        except Exception:
            index_store = None
    try:
        checks += (
            slack
            + socket
            + db_checks
            + check_stored_text(store)
            + check_index(settings, index_store)
            + model
            + check_digest(settings, store)
        )
    finally:
        for opened in {id(s): s for s in (store, index_store) if s is not None}.values():
            opened.close()
    return checks


def run_checks(settings: Settings) -> list[Check]:
    return asyncio.run(gather_checks(settings))


def render(checks: Iterable[Check]) -> str:
    checks = list(checks)
    lines = [line for check in checks for line in check.lines()]
    failed = sum(1 for c in checks if c.status == "fail")
    warned = sum(1 for c in checks if c.status == "warn")
    if failed:
        lines.append(f"\n{failed} problem(s) to fix" + (f", {warned} warning(s)" if warned else "") + ".")
    else:
        lines.append("\nAll checks passed" + (f" ({warned} warning(s))" if warned else "") + ".")
    return "\n".join(lines)


def doctor_command(settings: Settings) -> int:
    """`archbot doctor`: print the checks; 1 when any failed."""
    checks = run_checks(settings)
    sys.stdout.write(Redactor(settings.secrets())(render(checks)) + "\n")
    return 1 if any(c.status == "fail" for c in checks) else 0
