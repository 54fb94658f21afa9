"""Settings: every knob archbot has, read once from the environment (or `.env`).

The contract's variable names (DESIGN.md) are the aliases. Tokens are `SecretStr`, so a
stray `repr()` or log line shows `**********` instead of the secret. Nothing below this
module reads `os.environ`; the CLI builds one `Settings` and passes it down.

`load_settings()` turns a validation error into `ConfigError`, which names the offending
variable; the CLI prints that one line and exits 2.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from bot.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# An installed wheel (`pip install .`) carries knowledge/ and prompts/ under bot/_bundled/ (setup.py);
# a source checkout (editable install, the container) reads them from the project folder.
BUNDLED_DIR = Path(__file__).resolve().parent / "_bundled"


def _shipped(name: str) -> Path:
    here = PROJECT_ROOT / name
    return here if (PROJECT_ROOT / "pyproject.toml").is_file() and here.is_dir() else BUNDLED_DIR / name


KNOWLEDGE_DIR = _shipped("knowledge")
PROMPTS_DIR = _shipped("prompts")
# A documented example of a team profile. It is never sent to the model: with no
# ARCHBOT_TEAM_PROFILE the prompt carries no team facts at all (draft one with `archbot profile draft`).
EXAMPLE_TEAM_PROFILE = PROMPTS_DIR / "team_profile.example.md"
DEFAULT_CRON = "0 9 * * MON"
DEFAULT_MODEL = "claude-sonnet-5-5"


def _alias(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    """archbot configuration. Field descriptions feed the README's configuration table."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    slack_bot_token: SecretStr | None = Field(
        None,
        validation_alias=_alias("SLACK_BOT_TOKEN"),
        description="Bot token (`xoxb-`). Required for `run`.",
    )
    slack_app_token: SecretStr | None = Field(
        None,
        validation_alias=_alias("SLACK_APP_TOKEN"),
        description="App-level token (`xapp-`). Set: Socket Mode. Unset: HTTP Events API.",
    )
    slack_signing_secret: SecretStr | None = Field(
        None,
        validation_alias=_alias("SLACK_SIGNING_SECRET"),
        description="Verifies Events API requests. Required in HTTP mode.",
    )
    slack_api_url: str = Field(
        "https://slack.com/api/",
        validation_alias=_alias("SLACK_API_URL"),
        description="Slack Web API base URL (ends in `/api/`).",
    )
    anthropic_api_key: SecretStr | None = Field(
        None,
        validation_alias=_alias("ANTHROPIC_API_KEY"),
        description="Claude API key. Unset: answers are retrieval-only.",
    )
    anthropic_base_url: str | None = Field(
        None,
        validation_alias=_alias("ANTHROPIC_BASE_URL"),
        description="Anthropic API base URL (the SDK default when unset).",
    )
    model: str = Field(DEFAULT_MODEL, validation_alias=_alias("ARCHBOT_MODEL"), description="Claude model id.")
    db_path: Path = Field(
        Path("./archbot.db"),
        validation_alias=_alias("ARCHBOT_DB"),
        description="SQLite database file (with ARCHBOT_DATABASE_URL: only the local retrieval index).",
    )
    database_url: SecretStr | None = Field(
        None,
        validation_alias=_alias("ARCHBOT_DATABASE_URL"),
        description="`postgresql://user:password@host/db`: jobs, threads, answers, feedback and digests in"
        " PostgreSQL, shared by several replicas. Unset: the SQLite file at ARCHBOT_DB.",
    )
    heartbeat_seconds: float = Field(
        5.0,
        gt=0,
        le=300,
        validation_alias=_alias("ARCHBOT_HEARTBEAT_SECONDS"),
        description="How often a running bot records that it is alive; another replica resumes its jobs"
        " after three missed beats.",
    )
    docs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        validation_alias=_alias("ARCHBOT_DOCS"),
        description="Comma-separated folders of team docs to index (`knowledge/` is always indexed).",
    )
    docs_url: str | None = Field(
        None,
        validation_alias=_alias("ARCHBOT_DOCS_URL"),
        description="Base URL that links a doc path, e.g. a repository's blob URL.",
    )
    port: int = Field(
        3000,
        ge=0,
        le=65535,
        validation_alias=_alias("ARCHBOT_PORT"),
        description=(
            "HTTP port: `/slack/events` (HTTP mode), `/healthz`, `/readyz`, `/metrics`;"
            " 0: one the OS picks, logged at start (`serving http`)."
        ),
    )
    digest_channel: str | None = Field(
        None,
        validation_alias=_alias("ARCHBOT_DIGEST_CHANNEL"),
        description="Channel id for the weekly digest. Unset: no digest.",
    )
    digest_cron: str = Field(
        DEFAULT_CRON, validation_alias=_alias("ARCHBOT_DIGEST_CRON"), description="Digest schedule (cron)."
    )
    tz: str = Field("UTC", validation_alias=_alias("ARCHBOT_TZ"), description="IANA timezone of the schedule.")
    digest_channels_opt_in: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_alias("ARCHBOT_DIGEST_PRIVATE_CHANNELS"),
        description="Comma-separated private channel ids allowed in the digest (public ones always are).",
    )
    team_profile: Path | None = Field(
        None,
        validation_alias=_alias("ARCHBOT_TEAM_PROFILE"),
        description="Markdown file: the team's stack and patterns, read into the system prompt "
        "(draft it with `archbot profile draft`, then review it). Unset: no team facts are sent.",
    )
    concurrency: int = Field(
        48,
        ge=1,
        le=256,
        validation_alias=_alias("ARCHBOT_CONCURRENCY"),
        description="Ceiling of model calls in flight (and jobs run at once) per process. The limit adapts"
        " below it: it shrinks when the API answers 429/529 (honouring retry-after) and grows back while"
        " it answers.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias=_alias("ARCHBOT_LOG_LEVEL"), description="Log level."
    )
    log_format: Literal["json", "text"] = Field(
        "json", validation_alias=_alias("ARCHBOT_LOG_FORMAT"), description="Log format: `json` or `text`."
    )
    model_timeout: float = Field(
        120.0,
        gt=0,
        validation_alias=_alias("ARCHBOT_MODEL_TIMEOUT"),
        description="Seconds per model request.",
    )
    model_max_retries: int = Field(
        3,
        ge=0,
        le=10,
        validation_alias=_alias("ARCHBOT_MODEL_RETRIES"),
        description="Retries per model call.",
    )
    max_tokens: int = Field(
        4096, ge=256, validation_alias=_alias("ARCHBOT_MAX_TOKENS"), description="Answer length cap (tokens)."
    )
    context_tokens: int = Field(
        6000,
        ge=500,
        validation_alias=_alias("ARCHBOT_CONTEXT_TOKENS"),
        description="Token budget for the thread history sent to the model.",
    )
    search_k: int = Field(
        8,
        ge=1,
        le=50,
        validation_alias=_alias("ARCHBOT_SEARCH_K"),
        description="Not used for answers any more (their passages fill ARCHBOT_PASSAGE_TOKENS); kept so "
        "existing settings still load.",
    )
    passage_tokens: int = Field(
        8000,
        ge=200,
        le=100_000,
        validation_alias=_alias("ARCHBOT_PASSAGE_TOKENS"),
        description="Token budget for the doc passages sent with a question: team docs fill it first "
        "(several sections of a doc, with neighbours), pattern-library pages get what is left.",
    )
    search_workers: int = Field(
        0,
        ge=0,
        le=16,
        validation_alias=_alias("ARCHBOT_SEARCH_WORKERS"),
        description="`archbot run`: processes that rank passages (0: threads of the bot's process, which"
        " measured as fast on two cores; more may help a burst on a larger machine).",
    )
    query_rewrite: bool = Field(
        True,
        validation_alias=_alias("ARCHBOT_QUERY_REWRITE"),
        description="With ANTHROPIC_API_KEY: rewrite each question into both languages, beside the lexical "
        "search (cached; used when it arrives in time, see ARCHBOT_REWRITE_WAIT, else the search goes on without "
        "it).",
    )
    rewrite_wait: float = Field(
        1.2,
        ge=0,
        le=10,
        validation_alias=_alias("ARCHBOT_REWRITE_WAIT"),
        description="Most seconds a search waits for the model rewrite running beside it (a cached one is "
        "immediate). Within it the wait follows the recent rewrites' round trips: about as long as they took to "
        "arrive, and none while most of them took longer than this. A rewrite that gets no slot of the model "
        "concurrency limit within it is not sent.",
    )
    dense: bool = Field(
        True,
        validation_alias=_alias("ARCHBOT_DENSE"),
        description="With the `dense` extra installed (`pip install 'archbot[dense]'`): embed each doc's outline in "
        "the background after indexing and blend that multilingual similarity into the ranking. false: lexical only.",
    )
    slack_retry_seconds: float = Field(
        60.0,
        gt=0,
        le=600,
        validation_alias=_alias("ARCHBOT_SLACK_RETRY_SECONDS"),
        description="How long Slack 5xx answers and connection errors are retried (with backoff) before a "
        "job gives up and says so.",
    )
    slack_start_seconds: float = Field(
        300.0,
        ge=0,
        validation_alias=_alias("ARCHBOT_SLACK_START_SECONDS"),
        description="How long `run` keeps trying to reach Slack at start (auth.test, with backoff up to 30 s, "
        "each failure logged) before it exits 1; meanwhile /healthz answers and /readyz reports `slack: false`. "
        "0: exit at the first failure.",
    )
    stream_mode: Literal["auto", "stream", "update"] = Field(
        "auto",
        validation_alias=_alias("ARCHBOT_STREAM_MODE"),
        description="`stream`: Slack's chat streaming API; `update`: post then throttled `chat.update`; "
        "`auto`: stream, falling back to update.",
    )
    language: Literal["en", "zh"] = Field(
        "en",
        validation_alias=_alias("ARCHBOT_LANGUAGE"),
        description="Language of what has no question to follow (the digest, suggested prompts, the review form and "
        "App Home for someone who never asked); answers and everything in a thread follow the asker's language.",
    )
    reindex_minutes: int = Field(
        30,
        ge=0,
        validation_alias=_alias("ARCHBOT_REINDEX_MINUTES"),
        description="`run` re-indexes the docs this often (0: only at start).",
    )
    shutdown_grace: float = Field(
        8.0,
        gt=0,
        validation_alias=_alias("ARCHBOT_SHUTDOWN_GRACE"),
        description="Seconds SIGTERM waits for running jobs; the rest go back to the queue, and the process exits "
        "within about a second more whatever Slack does.",
    )

    @field_validator("docs", "digest_channels_opt_in", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("team_profile", mode="before")
    @classmethod
    def _blank_profile_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("slack_api_url")
    @classmethod
    def _check_api_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("tz")
    @classmethod
    def _check_tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA timezone {value!r}") from exc
        return value

    @field_validator("digest_cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        if value == DEFAULT_CRON:
            return value  # known good: croniter is imported only for a configured schedule
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"not a cron expression: {value!r}")
        return value

    @field_validator("slack_bot_token")
    @classmethod
    def _check_bot_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value() and not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("must start with xoxb-")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _check_app_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("must start with xapp-")
        return value

    @model_validator(mode="after")
    def _empty_secrets_are_unset(self) -> Settings:
        for name in ("slack_signing_secret", "anthropic_api_key"):
            value = getattr(self, name)
            if value is not None and not value.get_secret_value():
                object.__setattr__(self, name, None)
        return self

    # -- derived -----------------------------------------------------------------------
    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    @property
    def has_model(self) -> bool:
        return self.anthropic_api_key is not None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def secrets(self) -> list[str]:
        """Every secret value set, for the log redactor."""
        out = []
        for name in ("slack_bot_token", "slack_app_token", "slack_signing_secret", "anthropic_api_key", "database_url"):
            value = getattr(self, name)
            if value is not None and value.get_secret_value():
                out.append(value.get_secret_value())
        if self.database_url is not None:
            password = urlsplit(self.database_url.get_secret_value()).password
            if password:
                out.append(password)
        return out

    def require_for_run(self) -> None:
        """What `archbot run` needs beyond what every command needs."""
        if self.slack_bot_token is None:
            raise ConfigError("SLACK_BOT_TOKEN", "is required for `archbot run` (a bot token, xoxb-...)")
        if not self.socket_mode and self.slack_signing_secret is None:
            raise ConfigError(
                "SLACK_SIGNING_SECRET", "is required in HTTP mode (or set SLACK_APP_TOKEN for Socket Mode)"
            )
        if self.team_profile is not None and not self.team_profile.is_file():
            raise ConfigError("ARCHBOT_TEAM_PROFILE", f"file not found: {self.team_profile}")
        for folder in self.docs:
            if not folder.is_dir():
                raise ConfigError("ARCHBOT_DOCS", f"not a folder: {folder}")


def env_name(field_name: str) -> str:
    """The environment variable behind a Settings field."""
    field = Settings.model_fields[field_name]
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return field_name.upper()


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment, or raise ConfigError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except SettingsError as exc:  # a value the settings source could not even parse
        match = re.search(r'field "(\w+)"', str(exc))
        field = match.group(1) if match else "?"
        name = env_name(field) if field in Settings.model_fields else field
        raise ConfigError(name, "could not be parsed") from None
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = error.get("loc") or ("?",)
        field = str(loc[0])
        name = env_name(field) if field in Settings.model_fields else field
        message = error.get("msg", "is invalid").removeprefix("Value error, ")
        raise ConfigError(name, message) from None
