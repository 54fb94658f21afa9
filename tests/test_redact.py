"""Secret redaction at index time: planted credentials never reach the index, the model, Slack,
`archbot search --json` or `archbot ask`; placeholders, numbers and identifiers are kept."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.retrieval.redact import redact_secrets
from tests.conftest import bot_settings, running_bot
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.fakes.signing import post_event
from tests.fakes.slack import FakeSlack, event_callback, mention_event
from tests.helpers import wait_answers

# Planted values: each must vanish everywhere. (Fake: none of them opens anything.)
PG_PASSWORD = "Adm1n-pg-9f2c"
JWT_SECRET = "k7Hq2vX9pL4mN8rT1wZ6"
MINIO_PASSWORD = "minio-Pw-77aa"
AWS_KEY_ID = "AKIAQYLPMN5HHHFPZAM2"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzKEYq4a1b"
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
SLACK_TOKEN = "xoxb-" + "1234567890123-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZG1pbiIsInJvbGUiOiJvd25lciJ9."
    "c2lnbmF0dXJlLXRoYXQtaXMtbm90LXJlYWwtMTIzNDU2"
)
KEY_BODY = "MIIEowIBAAKCAQEAx7Yq0zvUfQmY3nC9h2Kw8pLrT5vB1sD4fG6hJ8kL0mN2pQ4rS6tU8vW0xY2zA4bC6dE8fG0hI2"
TABLE_VALUE = "tbl-Secret-4455"
PLANTED = [PG_PASSWORD, JWT_SECRET, MINIO_PASSWORD, AWS_KEY_ID, AWS_SECRET, GITHUB_TOKEN, SLACK_TOKEN, JWT, KEY_BODY]
PLANTED.append(TABLE_VALUE)

DOC = f"""# Billing service configuration

The billing service talks to Postgres and MinIO. Connection settings for the billing database:

```env
DATABASE_URL=postgres://billing_admin:{PG_PASSWORD}@billing-db.internal:5432/billing
JWT_SECRET={JWT_SECRET}
MINIO_ROOT_PASSWORD={MINIO_PASSWORD}
JWT_EXPIRES_IN=15m
BILLING_PORT=3007
```

```yaml
aws:
  access_key_id: {AWS_KEY_ID}
  secret_access_key: "{AWS_SECRET}"
github_token: {GITHUB_TOKEN}
slack:
  bot_token: '{SLACK_TOKEN}'
```

| variable | meaning | example |
| --- | --- | --- |
| `BILLING_API_SECRET` | signs webhooks | `{TABLE_VALUE}` |

Call it with `curl -H "Authorization: Bearer {JWT}" https://billing.internal/v1/invoices`.

-----BEGIN RSA PRIVATE KEY-----
{KEY_BODY}
{KEY_BODY}
-----END RSA PRIVATE KEY-----

The event `device.connection.lost` triggers a billing pause. Set DB_PASSWORD=${{DB_PASSWORD}} in
production and `password: your-password-here` locally; `max_tokens: 4096`.
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"DB_URL=postgres://app:{PG_PASSWORD}@db:5432/x", "DB_URL=postgres://app:[redacted: password]@db:5432/x"),
        (f"JWT_SECRET={JWT_SECRET}", "JWT_SECRET=[redacted: secret]"),
        (f'"password": "{PG_PASSWORD}"', '"password": "[redacted: password]"'),
        (f"  apiKey: '{JWT_SECRET}'", "  apiKey: '[redacted: key]'"),
        (f"--db-password {PG_PASSWORD} --port 5432", "--db-password [redacted: password] --port 5432"),
        ("MINIO_ROOT_PASSWORD=minioadmin", "MINIO_ROOT_PASSWORD=[redacted: password]"),
        ("amqp://admin:admin123@rabbitmq:5672", "amqp://admin:[redacted: password]@rabbitmq:5672"),
        (f"Authorization: Bearer {JWT}", "Authorization: Bearer [redacted: jwt]"),
        (f"aws_access_key_id = {AWS_KEY_ID}", "aws_access_key_id = [redacted: aws access key]"),
    ],
)
def test_credentials_are_replaced_in_context(text: str, expected: str) -> None:
    assert redact_secrets(text).text == expected


@pytest.mark.parametrize(
    "text",
    [
        "DB_PASSWORD=${DB_PASSWORD}",
        "JWT_SECRET=your-secret-here",
        "password: <your password>",
        "token: $TOKEN",
        "API_KEY=xxxxxxxxxxxxxxxx",
        "password: string;",
        "const token = await this.authService.getToken(user);",
        "secretOrKey: configService.get('JWT_SECRET'),",
        "max_tokens: 4096",
        "JWT_EXPIRES_IN=15m",
        "token_ttl: 3600",
        "The event `device.connection.lost` has port 5432.",
        "password_hash_algorithm: bcrypt",
        "http://user:pass@host:port",
        "api_key:create - create an API key",
        "export const ROLES_KEY = 'roles';",
        "echo ${TOKEN:0:20}",
        "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----",
        "Do not stuff all permissions into the token: tokens over ~4 KB break headers.",
        "password: async () => secrets.get('pg-password') });",
    ],
)
def test_placeholders_references_and_identifiers_are_kept(text: str) -> None:
    assert redact_secrets(text).text == text


def test_the_planted_doc_is_fully_redacted_with_its_context() -> None:
    result = redact_secrets(DOC)
    for value in PLANTED:
        assert value not in result.text, value
    assert "postgres://billing_admin:[redacted: password]@billing-db.internal:5432/billing" in result.text
    assert "-----BEGIN RSA PRIVATE KEY-----\n[redacted: private key]\n-----END RSA PRIVATE KEY-----" in result.text
    assert "BILLING_PORT=3007" in result.text and "device.connection.lost" in result.text
    assert "DB_PASSWORD=${DB_PASSWORD}" in result.text and "your-password-here" in result.text
    assert result.count >= len(PLANTED)
    assert {"password", "secret", "jwt", "private key", "aws access key"} <= set(result.kinds)


# -- end to end --------------------------------------------------------------------------------
@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "team-docs"
    folder.mkdir()
    (folder / "billing-config.md").write_text(DOC, encoding="utf-8")
    (folder / "notes.md").write_text("# Notes\n\nNothing secret here: billing runs nightly.\n", encoding="utf-8")
    return folder


def _cli_env(tmp_path: Path) -> dict[str, str]:
    return {"ARCHBOT_DB": str(tmp_path / "archbot.db")}


def test_index_search_and_offline_ask_never_show_a_planted_value(tmp_path: Path, docs: Path) -> None:
    runner = CliRunner()
    env = _cli_env(tmp_path)
    indexed = runner.invoke(cli, ["index", str(docs)], env=env)
    assert indexed.exit_code == 0, indexed.output
    assert "secret values redacted in 1 files" in indexed.stdout

    found = runner.invoke(cli, ["search", "billing database connection postgres jwt secret", "--json"], env=env)
    assert found.exit_code == 0
    hits = json.loads(found.stdout)
    assert any(h["path"] == "billing-config.md" for h in hits)
    for value in PLANTED:
        assert value not in found.stdout
    assert "[redacted: " in found.stdout

    asked = runner.invoke(cli, ["ask", "What are the billing database connection settings and JWT secret?"], env=env)
    assert asked.exit_code == 0, asked.output
    assert "billing" in asked.output.lower()
    for value in PLANTED:
        assert value not in asked.output

    stored = (tmp_path / "archbot.db").read_bytes()
    for value in PLANTED:
        assert value.encode() not in stored


def test_doctor_shows_the_count(tmp_path: Path, docs: Path) -> None:
    from bot.config import Settings
    from bot.doctor import check_index
    from bot.retrieval import index_sources
    from bot.store import Store

    settings = Settings(db_path=tmp_path / "archbot.db", docs=[docs])
    report = index_sources(settings)
    assert report.redacted_files == 1 and report.redacted_values >= len(PLANTED)
    store = Store(settings.db_path)
    try:
        lines = [c for c in check_index(settings, store) if "redacted" in c.name]
    finally:
        store.close()
    assert lines and f"{report.redacted_values} credential values in 1 files" in lines[0].detail


async def test_the_model_and_slack_never_see_a_planted_value(
    tmp_path: Path, docs: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    from bot.retrieval import index_sources

    settings = bot_settings(tmp_path, slack, model, docs=[docs])
    await asyncio.to_thread(index_sources, settings)
    model.script(Reply(text="Use the billing database settings from the config doc."))
    async with running_bot(settings) as bot:
        parent = slack.add_message("C1", "<@UBOT> what are the billing database connection settings?", user="U1")
        payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
        assert (await post_event(f"http://127.0.0.1:{bot.port}", slack.signing_secret, payload))[0] == 200
        await wait_answers(slack, "C1", parent.ts)
        await slack.wait_for(lambda f: bot.store.job_counts() == {"done": 1})
    sent = json.dumps([r.body for r in model.message_requests], ensure_ascii=False)
    assert "billing-db.internal" in sent and "[redacted: password]" in sent  # the passage went, redacted
    written = json.dumps([c.args for c in slack.calls], ensure_ascii=False)
    for value in PLANTED:
        assert value not in sent and value not in written


async def test_without_a_model_slack_shows_the_passage_redacted(tmp_path: Path, docs: Path, slack: FakeSlack) -> None:
    from bot.retrieval import index_sources

    settings = bot_settings(tmp_path, slack, None, docs=[docs])
    await asyncio.to_thread(index_sources, settings)
    async with running_bot(settings) as bot:
        parent = slack.add_message("C1", "<@UBOT> billing database connection settings jwt secret?", user="U1")
        payload = event_callback(mention_event(parent.text, channel="C1", user="U1", ts=parent.ts))
        assert (await post_event(f"http://127.0.0.1:{bot.port}", slack.signing_secret, payload))[0] == 200
        await wait_answers(slack, "C1", parent.ts)
    written = json.dumps([c.args for c in slack.calls], ensure_ascii=False)
    assert "billing" in written
    for value in PLANTED:
        assert value not in written


def test_weak_defaults_are_credentials_too() -> None:
    for text, expected in [
        ("password: 'secret'", "password: '[redacted: password]'"),
        ('"password":"password"', '"password":"[redacted: password]"'),
        ("POSTGRES_PASSWORD=changeme", "POSTGRES_PASSWORD=[redacted: password]"),
    ]:
        assert redact_secrets(text).text == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "curl -s -u admin:admin123 http://mq:15672/api/overview",
            "curl -s -u admin:[redacted: password] http://mq:15672/api/overview",
        ),
        (
            "- MinIO: http://localhost:9001 (minioadmin/minioadmin)",
            "- MinIO: http://localhost:9001 (minioadmin/[redacted: password])",
        ),
        (
            "| Grafana | http://localhost:3000 | admin/admin123 |",
            "| Grafana | http://localhost:3000 | admin/[redacted: password] |",
        ),
        ("默认账号 : admin / admin123", "默认账号 : admin / [redacted: password]"),
        ("**默认账号**: `admin` / `admin123`", "**默认账号**: `admin` / `[redacted: password]`"),
        ("- 密码: `admin123`", "- 密码: `[redacted: password]`"),
        ("- **密码**: `admin123`", "- **密码**: `[redacted: password]`"),
        (
            '-d "{\\"username\\":\\"admin\\",\\"password\\":\\"admin123\\"}"',
            '-d "{\\"username\\":\\"admin\\",\\"password\\":\\"[redacted: password]\\"}"',
        ),
        ("(用户名: minioadmin, 密码: minioadmin)", "(用户名: minioadmin, 密码: [redacted: password])"),
        (
            "| 用户名 | 密码 | 角色 |\n|---|---|---|\n| admin | admin123 | Super Admin |",
            "| 用户名 | 密码 | 角色 |\n|---|---|---|\n| admin | [redacted: password] | Super Admin |",
        ),
        (
            "| 服务 | JWT_SECRET |\n| --- | --- |\n| user-service | `dev-secret-key-change-in-production` |",
            "| 服务 | JWT_SECRET |\n| --- | --- |\n| user-service | [redacted: secret] |",
        ),
        (
            "| MINIO_SECRET_KEY | string | ✅ | minioadmin | 密钥 |",
            "| MINIO_SECRET_KEY | string | ✅ | [redacted: secret] | 密钥 |",
        ),
    ],
)
def test_logins_written_for_people_are_redacted(text: str, expected: str) -> None:
    assert redact_secrets(text).text == expected


@pytest.mark.parametrize(
    "text",
    [
        "cd frontend/admin",
        "See docs/README.md for the password policy; read/write access; TCP/IP",
        "| **P3: Login/index.tsx** | 303 | 102 |",
        "- POST /users/:id/change-password (4 tests)",
        "- Changes to roles/permissions are reflected on next login",
        "device:console - 访问设备控制台（VNC/ADB）",
        "| Service | Tests | Pass Rate |\n|---|---|---|\n| AuthService | 36 | 69% |",
        "| Secret | Description |\n|---|---|\n| `CODECOV_TOKEN` | Codecov upload token |",
        "- ✅ API密钥: 100%",
    ],
)
def test_words_that_look_like_logins_are_kept(text: str) -> None:
    assert redact_secrets(text).text == text
