"""Secret redaction at index time: credentials in the docs never reach the index.

Team docs hold env templates and examples with real-looking credentials (connection URLs with a
password, `JWT_SECRET=…`, cloud keys). The indexer passes every file's text through
`redact_secrets` before chunking, so the stored passages, and everything built on them (the model
request, Slack, `archbot search`, `archbot ask`), show `[redacted: password]` in place of the value.
`/arch-review <path>` redacts the same way, and so does everything people and the model write
(`bot/redaction.py`: Slack text, the CLI question, the answer on its way out). The context stays: the
variable name, the user and the host of a URL, the key's BEGIN/END lines, so an answer can still say
*which* setting to look up.

Two layers:
- our patterns, which keep the context: URLs with a password, `KEY=value` / `key: value` /
  `"key": "value"` / `--key value` assignments whose name says password/secret/token/key,
  `Authorization: Bearer …`, markdown table rows naming a secret, private-key blocks (also one cut
  short), JWTs, and vendor-prefixed keys detect-secrets does not know (Anthropic `sk-ant-…`, OpenAI
  project keys, Slack app tokens, GitHub, Google, Hugging Face). Names and values are ASCII, so
  Chinese written up against them (`配置里写着DB_PASSWORD=x，请…`) neither hides nor extends them;
- the token detectors of `detect-secrets` (Yelp's scanner: AWS, GitHub, GitLab, Slack, Stripe,
  Twilio, OpenAI, PyPI, npm, SendGrid, Telegram, Discord, Azure, IBM, …), for credentials with a
  recognisable shape wherever they stand. Its entropy detectors are left out (identifiers and
  hashes in docs look random too), and so is its IP detector (an address is not a credential).

Kept on purpose (not secrets, and useful in an answer): placeholders (`your-password`,
`<token>`, `xxxx`, `***`; but `changeme`, `password` or `secret` as a value are redacted: they
are working defaults, and the name says enough), the `user:pass@host:port` URL template, references
(`${DB_PASSWORD}`, `$TOKEN`, `process.env.X`, `{{ .Values.x }}`), numbers, durations and booleans
(`token_ttl: 3600`, `max_tokens: 4096`, `expires: 15m`), type names (`password: string`), code
expressions (`const token = getToken()`), and names that only mention a secret
(`password_hash_algorithm`, `token_bucket`, `device.connection.lost`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from typing import Any

MARK = "[redacted: {kind}]"
VERSION = "r6"  # part of the indexer's analysis version: bump when what is redacted changes


@dataclass
class Redaction:
    text: str
    kinds: Counter[str] = field(default_factory=Counter)  # kind -> values redacted

    @property
    def count(self) -> int:
        return sum(self.kinds.values())


# -- what counts as a placeholder, a reference, a non-secret value ---------------------------
_PLACEHOLDER = re.compile(
    r"""^(?:
        [<\x02][^<>\x02\x03]*[>\x03] | \[[^\[\]]*\] | \{[^{}]*\}  # <token> (or &lt;token&gt;), [password], {secret}
      | .*(?:x{4,}|X{4,}|\*{3,}|\.{3}|…).*            # xxxx, ****, ..., …
      | (?i:.*\byour[\s_-]?.*)                         # your-password, your_api_key_here
      | (?i:.*your[A-Z_].*)                            # yourPassword, YOUR_KEY
      | (?i:(?:my|some|the|a)[\s_-]?(?:secret|password|token|key).*)
      | (?i:.*(?:placeholder|redacted|example[_-]?(?:key|secret|token|password)|replace[_-]?me).*)
      | (?i:(?:value|string|none|null|nil|empty|tbd|todo|-+|_+))
    )$""",
    re.VERBOSE,
)
_REFERENCE = re.compile(
    r"""^(?:\$|%[A-Za-z_]|@[A-Za-z_]|\{|`?\$\{|(?:process\.env|os\.environ|os\.getenv|env\.|ENV\[|this\.|self\.|config\.|settings\.|
    await\b|async\b|new\b|function\b|lambda\b|yield\b|typeof\b|req\.|request\.|ctx\.|context\.|dto\.|user\.|data\.|props\.|import\b|require\b))""",
    re.VERBOSE,
)
_TYPE_NAMES = frozenset(
    [
        "string",
        "str",
        "number",
        "int",
        "integer",
        "float",
        "bool",
        "boolean",
        "any",
        "unknown",
        "object",
        "bytes",
        "buffer",
        "char",
        "text",
        "varchar",
        "uuid",
        "date",
        "datetime",
        "secretstr",
        "optional",
        "required",
        "true",
        "false",
        "yes",
        "no",
        "on",
        "off",
        "null",
        "none",
        "nil",
        "undefined",
    ]
)
_NUMBER_OR_DURATION = re.compile(r"^-?\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y|sec|secs|min|mins|hours?|days?|[kmg]b?)?$", re.I)
_MEMBER = re.compile(r"^[A-Za-z_$][\w$]*(?:\??\.[A-Za-z_$][\w$]*)+$")  # config.jwt.secret
_IDENTIFIER = re.compile(r"^[a-z_$][\w$]*$")  # token, newPassword (a variable, in code)


def _is_placeholder(value: str) -> bool:
    return bool(_PLACEHOLDER.match(value))


def _is_kept(value: str, *, quoted: bool, code: bool) -> bool:
    """True for values that are not secrets: placeholders, references, numbers, types, expressions."""
    v = value.strip()
    if len(v) < 3 or _is_placeholder(v) or _REFERENCE.match(v) or _NUMBER_OR_DURATION.match(v):
        return True
    if "(" in v or "${" in v or "$(" in v or "{{" in v:
        return True
    if not quoted:
        if v.lower().rstrip(";,?") in _TYPE_NAMES or _MEMBER.match(v.rstrip(";,")):
            return True
        if code and _IDENTIFIER.match(v.rstrip(";,")):
            return True
    return False


# -- names that say "secret" -----------------------------------------------------------------
_NAME_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_KEY_QUALIFIERS = frozenset(
    [
        "api",
        "access",
        "secret",
        "private",
        "signing",
        "sign",
        "encryption",
        "encrypt",
        "master",
        "app",
        "client",
        "auth",
        "license",
        "service",
        "account",
        "subscription",
        "webhook",
        "hmac",
        "session",
        "cookie",
        "jwt",
        "ssh",
        "gpg",
        "pgp",
        "shared",
        "consumer",
        "bot",
    ]
)
_NOT_A_SECRET = frozenset(
    [
        "ttl",
        "expiry",
        "expires",
        "expire",
        "expiration",
        "expired",
        "lifetime",
        "duration",
        "type",
        "length",
        "len",
        "header",
        "headers",
        "name",
        "names",
        "url",
        "uri",
        "endpoint",
        "path",
        "file",
        "dir",
        "policy",
        "algorithm",
        "alg",
        "algo",
        "count",
        "limit",
        "size",
        "timeout",
        "prefix",
        "format",
        "field",
        "hash",
        "hashed",
        "enabled",
        "enable",
        "required",
        "rotation",
        "interval",
        "id",
        "ids",
        "rounds",
        "changed",
        "change",
        "reset",
        "strength",
        "min",
        "max",
        "validator",
        "regex",
        "pattern",
        "hint",
        "label",
        "placeholder",
        "strategy",
        "manager",
        "guard",
        "module",
        "provider",
        "store",
        "storage",
        "cache",
        "bucket",
        "usage",
        "version",
        "kind",
        "mode",
        "schema",
        "dto",
        "entity",
        "repository",
        "repo",
        "time",
        "at",
        "ms",
        "seconds",
        "sec",
        "minutes",
        "hours",
        "days",
        "encoder",
        "generator",
        "status",
        "error",
        "errors",
        "message",
        "title",
        "description",
        "text",
        "input",
        "button",
        "form",
        "valid",
        "invalid",
        "ref",
        "refs",
        "salt",
        "length",
        "policy",
        "rule",
        "rules",
        "env",
        "var",
        "vars",
        "variable",
        "source",
        "location",
        "mount",
        "secrets",
        "tokens",
        "keys",
        "count",
        "audience",
        "issuer",
        "scope",
        "scopes",
        "method",
        "methods",
        "flow",
        "grant",
        "service",
        "endpoint",
        "refresh",
    ]
)


_FILE_TYPES = frozenset(
    ["ts", "tsx", "js", "jsx", "py", "go", "java", "md", "yaml", "yml", "json", "rs", "kt", "sh", "pem"]
)


@cache
def secret_kind(name: str) -> str | None:
    """The kind of secret a variable/field name announces (None: not a secret's name; "key?": a
    `FOO_KEY` that holds a credential only if its value looks like one)."""
    bare = name.strip("-\"'`")
    words = [w.lower() for part in re.split(r"[_.\-\s]+", bare) for w in _NAME_WORDS.findall(part)]
    if not words or any(w in _NOT_A_SECRET or w in _FILE_TYPES for w in words):
        return None
    joined = "".join(words)
    if any(w in ("password", "passwd", "pwd", "pass", "passphrase", "passcode") for w in words) or joined.endswith(
        "password"
    ):
        return "password"
    if "secret" in words or joined.endswith("secret"):
        return "secret"
    if "token" in words or joined.endswith("token"):
        return "token"
    if "credential" in words or "credentials" in words:
        return "credential"
    if "apikey" in words or (("key" in words) and any(w in _KEY_QUALIFIERS for w in words)):
        return "key"
    if words[-1] == "key" and bare.isupper() and len(words) > 1:  # FOO_KEY=…: a key only if it looks like one
        return "key?"
    return None


# -- our patterns ----------------------------------------------------------------------------
_PRIVATE_KEY = re.compile(
    r"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----)(.*?)(-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----)",
    re.DOTALL,
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
_URL_CREDENTIALS = re.compile(r"(?<![A-Za-z0-9+.-])([a-zA-Z][a-zA-Z0-9+.-]*://)([^\s:/@'\"`<>\[\]]*):([^\s@/'\"`<>]+)@(?=[\w\[])")
_AUTH_HEADER = re.compile(r"\b(Bearer|Basic|Token)([ \t]+)([A-Za-z0-9._~+/=-]{12,})")
_SECRET_WORD = re.compile(r"pass|pwd|secret|token|key|credential", re.IGNORECASE)
_NAME_TAIL = re.compile(r"[A-Za-z0-9_.-]*")  # ASCII: "配置里写着DB_PASSWORD=x" names DB_PASSWORD
_NAME_HEAD = re.compile(r"[A-Za-z0-9_.-]*\Z")
_OP_AHEAD = re.compile(r"""["'`]?[ \t]*(?::=|=>|=|:)|[ ]""")
_OP = re.compile(r"""(["'`]?)([ \t]*)(:=|=>|==|=|:)([ \t]*)""")
_UNQUOTED_VALUE = re.compile(r"""[^\s,;'"`|)}\]<>\u3000-\u9fff\uff00-\uffef]+""")  # Chinese text ends a value
_TABLE_CELL_VALUE = re.compile(r"`([^`\n]+)`")
_PROSE_AFTER = re.compile(r" +[A-Za-z]")
_GENERATED = re.compile(r"(?=[^\s]*\d)(?=[^\s]*[A-Za-z])\S{6,}$")  # letters and digits: a password, not a word
_CODE_AFTER = re.compile(r"[ \t]*(?:,|\}|\|\||&&|\?\?|\?)")


def _sub_count(pattern: re.Pattern[str], repl: Any, text: str) -> tuple[str, int]:
    return pattern.subn(repl, text)


def _redact_private_keys(text: str, kinds: Counter[str]) -> str:
    def repl(m: re.Match[str]) -> str:
        body = m.group(2)
        if len(re.sub(r"[^A-Za-z0-9+/=]", "", body)) < 40:  # "..." or a one-line placeholder
            return m.group(0)
        kinds["private key"] += 1
        return f"{m.group(1)}\n{MARK.format(kind='private key')}\n{m.group(3)}"

    return _PRIVATE_KEY.sub(repl, text)


# An unterminated block (a paste cut short, an answer still streaming): its body up to the first line
# that is not key material.
_KEY_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[ \t]*\n?")
_KEY_LINE = re.compile(r"[ \t]*(?:[A-Za-z0-9+/=]+|[A-Za-z-]+:[^\n]*)[ \t]*(?:\n|\Z)")


def _redact_open_private_keys(text: str, kinds: Counter[str]) -> str:
    out: list[str] = []
    pos = 0
    for m in _KEY_BEGIN.finditer(text):
        if m.start() < pos or _PRIVATE_KEY.match(text, m.start()):
            continue  # a whole block (already redacted, or a placeholder)
        end = m.end()
        while (line := _KEY_LINE.match(text, end)) is not None and line.end() > end:
            end = line.end()
        body = text[m.end() : end]
        if not re.search(r"[A-Za-z0-9+/]{4}", body) or _is_placeholder(body.strip()):
            continue
        kinds["private key"] += 1
        out += [text[pos : m.end()], MARK.format(kind="private key"), "\n" if body.endswith("\n") else ""]
        pos = end
    out.append(text[pos:])
    return "".join(out)


# Credentials with a vendor's prefix that detect-secrets does not know (or only in older forms).
_KEY_SHAPES = (
    ("anthropic key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{16,}")),
    ("openai key", re.compile(r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}|\bsk-[A-Za-z0-9]{40,}\b")),
    ("slack token", re.compile(r"\bxapp-\d-[A-Za-z0-9-]{20,}")),
    ("github token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b|\bgithub_pat_[A-Za-z0-9_]{30,}")),
    ("google api key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("hugging face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
)
_KEY_PREFIXES = re.compile(r"\b(?:sk-|xapp-|gh[pousr]_|github_pat_|AIza|hf_)")


def _redact_key_shapes(text: str, kinds: Counter[str]) -> str:
    for kind, pattern in _KEY_SHAPES:

        def repl(m: re.Match[str], kind: str = kind) -> str:
            if _is_placeholder(m.group(0)):
                return m.group(0)  # sk-ant-api03-xxxxxxxxxxxxxxxxxxxx
            kinds[kind] += 1
            return MARK.format(kind=kind)

        text = pattern.sub(repl, text)
    return text


def _redact_jwts(text: str, kinds: Counter[str]) -> str:
    text, n = _JWT.subn(MARK.format(kind="jwt"), text)
    if n:
        kinds["jwt"] += n
    return text


def _redact_url_credentials(text: str, kinds: Counter[str]) -> str:
    def repl(m: re.Match[str]) -> str:
        password = m.group(3)
        if _is_kept(password, quoted=True, code=False) or password.lower() in ("pass", "password", "pwd"):
            return m.group(0)
        kinds["password"] += 1
        return f"{m.group(1)}{m.group(2)}:{MARK.format(kind='password')}@"

    return _URL_CREDENTIALS.sub(repl, text)


def _redact_auth_headers(text: str, kinds: Counter[str]) -> str:
    def repl(m: re.Match[str]) -> str:
        value = m.group(3)
        if _is_kept(value, quoted=False, code=False) or not (re.search(r"\d", value) and re.search(r"[A-Za-z]", value)):
            return m.group(0)
        kind = "password" if m.group(1) == "Basic" else "token"
        kinds[kind] += 1
        return f"{m.group(1)}{m.group(2)}{MARK.format(kind=kind)}"

    return _AUTH_HEADER.sub(repl, text)


def _redact_assignments(text: str, kinds: Counter[str]) -> str:
    """`NAME=value`, `name: value`, `"name": "value"`, `--name value` where the name says secret."""
    out: list[str] = []
    pos = 0
    n = len(text)
    for hit in _SECRET_WORD.finditer(text):
        end = _NAME_TAIL.match(text, hit.end()).end()  # type: ignore[union-attr]
        if not _OP_AHEAD.match(text, end):
            continue  # no operator after the name: prose, a heading, a call
        start = hit.start() - len(_NAME_HEAD.search(text, max(0, hit.start() - 80), hit.start()).group(0))  # type: ignore[union-attr]
        if start < pos:
            continue
        name = text[start:end]
        if not name.isascii() or text[max(0, start - 2) : start] == "${":
            continue  # prose in another script; `${TOKEN:0:8}`
        kind = secret_kind(name)
        if kind is None:
            continue
        name_quoted = start > 0 and text[start - 1] in "\"'`"
        op = _OP.match(text, end)
        flag = name.startswith("--") and op is None and end < n and text[end] == " "
        if op is None and not flag:
            continue
        if op is not None and op.group(3) == "==":
            continue  # a comparison
        if op is not None and op.group(1) and not name_quoted:
            continue  # `token"` ends some other string
        if op is not None and op.group(3) == ":" and not op.group(4) and not op.group(1):
            continue  # `api_key:create` names a permission; a yaml mapping needs `: `
        vstart = end + 1 if flag else op.end()  # type: ignore[union-attr]
        if vstart >= n or text[vstart] == "\n":
            continue
        quote = text[vstart] if text[vstart] in "\"'`" else ""
        if quote:
            close = text.find(quote, vstart + 1)
            if close < 0 or "\n" in text[vstart + 1 : close]:
                continue
            vs, ve = vstart + 1, close
        else:
            m = _UNQUOTED_VALUE.match(text, vstart)
            if m is None:
                continue
            vs, ve = m.start(), m.end()
            if ve < n and text[ve] in "([.'\"":
                continue  # `row['x']`, `getToken()`: an expression
            if _CODE_AFTER.match(text, ve) or not text[vs:ve].isascii():
                continue  # `{ password: hashed, … }`, `a || null`: code; a value in another script: prose
            prose = re.fullmatch(r"[A-Za-z][a-z]+", name) and _PROSE_AFTER.match(text, ve)
            if prose and not _GENERATED.match(text[vs:ve]):
                continue  # "stuff it into the token: tokens over 4 KB break…": a sentence (not "password: Tr0ub4 pls")
            while ve > vs and text[ve - 1] in ".:":  # a sentence's full stop, a yaml key
                ve -= 1
        value = text[vs:ve]
        operator = "" if op is None else op.group(3)
        code = name_quoted or (operator in ("=", ":=") and not name.isupper() and not name.startswith("--"))
        if name_quoted and not quote:
            continue  # `"token": token` in code
        if not value or "[redacted" in value or _is_kept(value, quoted=bool(quote), code=code):
            continue
        if kind == "key?" and not (len(value) >= 12 and re.search(r"\d", value) and re.search(r"[A-Za-z]", value)):
            continue  # CACHE_KEY = 'roles': a constant's name, not a credential
        kind = kind.rstrip("?")
        kinds[kind] += 1
        out.append(text[pos:vs])
        out.append(MARK.format(kind=kind))
        pos = ve
    out.append(text[pos:])
    return "".join(out)


_SECRET_ROW = re.compile(r"(?m)^[ \t]*\|[ \t]*[`*]*[A-Z0-9_]*(?:PASS|PWD|SECRET|TOKEN|KEY|CREDENTIAL)")


def _redact_table_rows(text: str, kinds: Counter[str]) -> str:
    """`| DB_PASSWORD | the database password | `s3cret` |`: the value cells of a row naming a secret."""
    if "|" not in text or not _SECRET_ROW.search(text):
        return text
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("|") or not _SECRET_ROW.match(line):
            continue
        cells = line.strip().strip("|").split("|")
        if len(cells) < 2:
            continue
        kind = secret_kind(cells[0].strip().strip("`*"))
        if kind is None or not cells[0].strip().strip("`*").replace("_", "").isupper():
            continue
        kind = kind.rstrip("?")

        def repl(m: re.Match[str], kind: str = kind) -> str:
            if _is_kept(m.group(1), quoted=True, code=False) or "[redacted" in m.group(1):
                return m.group(0)
            kinds[kind] += 1
            return f"`{MARK.format(kind=kind)}`"

        head, _, rest = line.partition(cells[0])
        rest = _TABLE_CELL_VALUE.sub(repl, rest)
        parts = rest.split("|")
        for j, cell in enumerate(parts):  # `| MINIO_SECRET_KEY | string | ✅ | minioadmin |`: a bare default value
            if "`" not in cell and _credential_value(cell, quoted=False) and cell.strip() not in ("-", "✅", "❌"):
                parts[j] = f" {MARK.format(kind=kind)} "
                kinds[kind] += 1
        lines[i] = head + cells[0] + "|".join(parts)
    return "\n".join(lines)


# -- credentials written for people: `-u user:pass`, "user/pass", 密码: x, a password column ----
_CLI_USER = re.compile(r"(?<![\w-])(-u|--user)([ =])([^\s:'\"`/]+):([^\s'\"`]+)")
_CJK_LABEL = re.compile(r"(密码|口令|密钥|令牌)(\**[ \t]*[:：][ \t]*`?)([^\s,，;；)）|`'\"。：、（【】「」！？]+)")
_ESCAPED_JSON = re.compile(r'\\"([A-Za-z_][\w-]*)(\\"[ \t]*:[ \t]*\\")([^"\\\s]+)\\"')
# A login written as a pair: "admin/admin123", "(minioadmin/minioadmin)", "admin / admin123".
_PAIR = re.compile(
    r"(?:^|(?<=[\s(（]))(`?)([A-Za-z][\w.@-]{1,40})(`?[ \t]*/[ \t]*`?)([\w.@#$%^&*!+-]{3,64})(?=`?(?:$|[\s)）,，;；|]))"
)
# The line must say it is about a login, or the pair must follow a URL, e.g. "http://host:9001 (user/pass)".
_LOGIN_CUE = re.compile(
    r"密码|口令|账号|账户|帐号|用户名|凭据|凭证|控制台|\b(?:password|passwd|credentials?|login|username|console)\b",
    re.I,
)
# Default passwords written as the second half of a pair need no cue: "| Grafana | … | admin/admin123 |".
_WEAK_PASSWORDS = frozenset(["admin123", "admin@123", "minioadmin", "123456", "12345678", "password123", "qwerty"])
_PATH_TAIL = re.compile(r"\.[A-Za-z]{1,5}$")  # Login/index.tsx: a file, not a login
_URL_THEN_PAIR = re.compile(r"://\S+[ \t]*[(（][ \t]*$")
_PASSWORD_HEADER = re.compile(r"^(?:密码|口令|默认密码|初始密码|password|passwd|pwd)$", re.I)
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")  # a variable's name in a cell, not its value
_VARIABLE_NAME = re.compile(r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)+")  # JWT_SECRET as a column: its values


def _credential_value(value: str, *, quoted: bool = True) -> bool:
    """A single ASCII token that is not a placeholder, a reference, a number (or, unquoted, a type name)."""
    v = value.strip().strip("`*")
    if not v or not v.isascii() or " " in v or "[redacted" in v or re.fullmatch(r"[\d.,%]+", v):
        return False
    return not _is_kept(v, quoted=quoted, code=False)


def _mask(m: re.Match[str], group: int, kind: str, kinds: Counter[str]) -> str:
    """The match with `group` (the value) replaced by the redaction mark, counted under `kind`."""
    kinds[kind] += 1
    start = m.start()
    whole = m.group(0)
    return whole[: m.start(group) - start] + MARK.format(kind=kind) + whole[m.end(group) - start :]


def _redact_people_credentials(text: str, kinds: Counter[str]) -> str:
    """Logins written for a reader rather than a program: `curl -u admin:admin123`, "MinIO console
    (minioadmin/minioadmin)", "用户名/密码: admin/admin123", "密码: admin123"."""

    def cli(m: re.Match[str]) -> str:
        return _mask(m, 4, "password", kinds) if _credential_value(m.group(4)) else m.group(0)

    text = _CLI_USER.sub(cli, text)

    def label(m: re.Match[str]) -> str:
        return _mask(m, 3, "password", kinds) if _credential_value(m.group(3)) else m.group(0)

    text = _CJK_LABEL.sub(label, text)

    def escaped(m: re.Match[str]) -> str:  # JSON inside a shell string: -d "{\"password\":\"x\"}"
        kind = secret_kind(m.group(1))
        if kind is None or kind == "key?" or not _credential_value(m.group(3)):
            return m.group(0)
        return _mask(m, 3, kind, kinds)

    if '\\"' in text:
        text = _ESCAPED_JSON.sub(escaped, text)
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if "/" not in line:
            continue
        cue = bool(_LOGIN_CUE.search(line))

        def pair(m: re.Match[str], line: str = line, cue: bool = cue) -> str:
            user, password = m.group(2), m.group(4)
            weak = password.lower() in _WEAK_PASSWORDS or (password == user and password.islower())
            after_url = bool(_URL_THEN_PAIR.search(line[: m.start()]))
            if not (weak or after_url or (cue and re.search(r"\d", password))):
                return m.group(0)  # "roles/permissions … login", "VNC/ADB": words, not a login
            if password.lower() in ("password", "pass") or _PATH_TAIL.search(password):
                return m.group(0)
            if not _credential_value(password):
                return m.group(0)
            if user.lower() in ("read", "write", "get", "post", "put", "true", "yes", "and", "or", "input", "output"):
                return m.group(0)
            return _mask(m, 4, "password", kinds)

        lines[i] = _PAIR.sub(pair, line)
    return "\n".join(lines)


def _table_cells(line: str) -> list[str]:
    return line.strip().strip("|").split("|")


def _redact_password_columns(text: str, kinds: Counter[str]) -> str:
    """A table whose header names a password/secret column (`| 用户名 | 密码 |`, `| 服务 | JWT_SECRET |`):
    the values in that column."""
    if "|" not in text:
        return text
    lines = text.split("\n")
    columns: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped.startswith("|"):
            columns = []
            continue
        if i + 1 < len(lines) and re.fullmatch(r"\|?[\s:|-]+\|?", lines[i + 1].strip() or "x"):
            columns = []  # a header row: which of its columns hold a secret
            for j, cell in enumerate(_table_cells(stripped)):
                name = cell.strip().strip("`*")
                kind = (
                    "password"
                    if _PASSWORD_HEADER.match(name)
                    else secret_kind(name)
                    if _VARIABLE_NAME.fullmatch(name)
                    else None
                )
                if kind and kind != "key?":
                    columns.append((j, kind))
            continue
        if not columns or re.fullmatch(r"\|?[\s:|-]+\|?", stripped):
            continue
        cells = _table_cells(stripped)
        changed = False
        for j, kind in columns:
            if j < len(cells) and _credential_value(cells[j]) and not _ENV_NAME.fullmatch(cells[j].strip().strip("`*")):
                cells[j] = f" {MARK.format(kind=kind)} "
                kinds[kind] += 1
                changed = True
        if changed:
            indent = line[: len(line) - len(line.lstrip())]
            lines[i] = indent + "|" + "|".join(cells) + "|"
    return "\n".join(lines)


# -- detect-secrets: credentials with a recognisable shape -------------------------------------
# Detectors left out: ours cover these with context (basic auth URLs, keywords, JWTs, private
# keys), entropy ones flag identifiers, and an IP address is not a credential.
_LEFT_OUT = {
    "Base64 High Entropy String",
    "Hex High Entropy String",
    "Public IP (ipv4)",
    "Secret Keyword",
    "Basic Auth Credentials",
    "JSON Web Token",
    "Private Key",
}
# Slow detectors run only on text that mentions their service (each alone costs ~0.5 s on a large corpus).
_GATES = {
    "Cloudant Credentials": ("cloudant",),
    "IBM Cloud IAM Key": ("ibm",),
    "IBM COS HMAC Credentials": ("ibm",),
    "SoftLayer Credentials": ("softlayer",),
    "Artifactory Credentials": ("artifactory", "akc"),
    "Mailchimp Access Key": ("-us",),
    "Slack Token": ("xox", "hooks.slack.com"),
    "Telegram Bot Token": ("telegram", "bot"),
    "Stripe Access Key": ("_live_",),
    "Discord Bot Token": ("discord",),
    "GitLab Token": ("glpat", "gldt", "glft", "glsoat", "glrt", "gr1348941"),
}


@cache
def _detectors() -> list[tuple[str, Any, tuple[str, ...]]]:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    out = []
    for secret_type, cls in sorted(get_mapping_from_secret_type_to_class().items()):
        if secret_type in _LEFT_OUT:
            continue
        out.append((secret_type.lower(), cls(), _GATES.get(secret_type, ())))
    return out


def _redact_detected(text: str, kinds: Counter[str]) -> str:
    lowered = text.lower()
    for kind, plugin, gate in _detectors():
        if gate and not any(g in lowered for g in gate):
            continue
        for value in set(plugin.analyze_string(text)):
            if not isinstance(value, str) or len(value) < 8 or "redacted" in value or _is_placeholder(value):
                continue
            n = text.count(value)
            if n:
                text = text.replace(value, MARK.format(kind=kind))
                kinds[kind] += n
    return text


# -- the entry point ---------------------------------------------------------------------------
# Slack escapes `&`, `<` and `>` in message text. While such text is redacted they stand in as
# control characters, so `DB_PASSWORD=a&amp;b` is one value (`;` would end it) and `&lt;token&gt;`
# a placeholder like `<token>`.
_ESCAPES = (("&amp;", "\x01"), ("&lt;", "\x02"), ("&gt;", "\x03"))


def redact_secrets(text: str) -> Redaction:
    """`text` with every credential replaced by `[redacted: kind]`, and what was replaced (by kind)."""
    escaped = "&" in text and not any(c in text for _, c in _ESCAPES)
    if escaped:
        for entity, stand_in in _ESCAPES:
            text = text.replace(entity, stand_in)
    redaction = _redact(text)
    if escaped:
        for entity, stand_in in _ESCAPES:
            redaction.text = redaction.text.replace(stand_in, entity)
    return redaction


def _redact(text: str) -> Redaction:
    kinds: Counter[str] = Counter()
    if "PRIVATE KEY" in text:
        text = _redact_private_keys(text, kinds)
        text = _redact_open_private_keys(text, kinds)
    if "eyJ" in text:
        text = _redact_jwts(text, kinds)
    if _KEY_PREFIXES.search(text):
        text = _redact_key_shapes(text, kinds)
    if "://" in text:
        text = _redact_url_credentials(text, kinds)
    text = _redact_auth_headers(text, kinds)
    text = _redact_assignments(text, kinds)
    text = _redact_table_rows(text, kinds)
    text = _redact_password_columns(text, kinds)
    if "/" in text or ":" in text or "：" in text:
        text = _redact_people_credentials(text, kinds)
    text = _redact_detected(text, kinds)
    return Redaction(text=text, kinds=kinds)


def count_marks(text: str) -> int:
    """How many redaction marks a text holds."""
    return text.count("[redacted: ")


TOTALS_SQL = (
    "SELECT COALESCE(SUM((LENGTH(text) - LENGTH(REPLACE(text, '[redacted: ', ''))) / 11), 0) AS n_values,"
    " COUNT(DISTINCT file_id) AS n_files FROM ix_chunks WHERE text LIKE '%[redacted: %'"
)


def redaction_totals(db: Any) -> tuple[int, int]:
    """(values redacted, files with any) in the stored index, counted from the marks in the passages."""
    try:
        values, files = db.execute(TOTALS_SQL).fetchone()
    except Exception:  # no index yet, or an older schema
        return 0, 0
    return int(values or 0), int(files or 0)
