"""Deterministic extraction: what the docs themselves say about the team, each fact with its paths.

No model, no network: regular expressions and counting over the indexed docs. It finds
- services: folders named like a service (`*-service`, `*-gateway`, `api-gateway`, `*-bff`…)
  and service names the docs mention often; for each, the port most docs give it (other ports
  some docs give are kept, they are worth settling), its README, and a one-line description
  when a doc has one on the same line as the name;
- messaging: exchange names (`*.events`, `*.dlx`, `exchange: '…'`), routing keys of the form
  `service.entity.action`, queues named after a service, the naming convention a doc states,
  and spellings of the same event that differ between docs;
- datastores and infrastructure by name (PostgreSQL, Redis, RabbitMQ…) and database names;
- shared libraries: the project's own scoped packages and `shared`/`common` folders;
- deployment and discovery: PM2 instance lines, Consul, the gateway, containers;
- patterns by name (CQRS, event sourcing, saga, outbox, circuit breaker…) with where they live;
- known debts: short lines flagged as missing, broken or to-do in audit and review docs.

Every `Fact` carries the doc paths it was read from, best evidence first. Extraction is
generous on purpose: the result is a draft a person reviews, and a wrong line with its
source is quick to check and delete.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bot.profile.docs import Doc

MAX_PATHS = 3  # paths cited per line
SERVICE_NAME = re.compile(r"(?<![\w/.-])([a-z][a-z0-9]*(?:-[a-z0-9]+)*-(?:service|gateway|bff|svc|worker))(?![\w-])")
GATEWAY_NAME = re.compile(r"(?<![\w/.-])(api-gateway|gateway|bff)(?![\w-])")
SERVICE_DIR = re.compile(r"^(?:[a-z0-9]+(?:-[a-z0-9]+)*-(?:service|gateway|bff|svc|worker)|api-gateway|gateway)$")
SERVICE_PARENTS = frozenset({"backend", "services", "service", "apps", "microservices", "server", "servers"})
LIBRARY_DIRS = frozenset({"shared", "common", "libs", "lib", "core", "packages"})
NOT_SERVICES = frozenset(
    {"cross-service", "service-to-service", "database-per-service", "my-service", "xxx-service", "your-service"}
)
SERVICE_MARKERS = ("-service", "-gateway", "-bff", "-svc", "-worker")
PERMISSION_VERB = re.compile(r"\.(?:create|read|update|delete|list|manage|view|write|export|import|approve)$")
FILE_SUFFIX = re.compile(r"\.(?:ts|js|md|json|ya?ml|py|go|sql|log|sh)$")
MIN_MENTIONS = 15  # a service known only from the text must be this common...
MIN_DOCS = 3  # ...across this many docs
PORT_NEAR = re.compile(r"(?:port|端口|:|：|\(|\||=)\s*\**\s*([1-9]\d{3,4})(?!\d|\.\d|%)", re.IGNORECASE)
EXCHANGE = re.compile(r"(?<![\w/-])([a-z][a-z0-9_-]*(?:\.[a-z0-9_-]+)*\.(?:events|dlx|exchange))(?![\w.-])")
EXCHANGE_DECL = re.compile(r"exchange['\"]?\s*[:=]\s*['\"`]([a-z][\w.-]+)['\"`]", re.IGNORECASE)
CONVENTION = re.compile(
    r"`?\{?(service|domain|source)\}?\.\{?(entity|resource|aggregate)\}?\.\{?(action|event|verb)\}?`?"
)
DB_CONTEXT = re.compile(r"database|数据库|\bpsql\b|\bDB_(?:NAME|DATABASE)\b|\bdbname\b", re.IGNORECASE)
DB_NAME = re.compile(r"`([a-z][a-z0-9]*_[a-z0-9_]+)`|(?:-d|DB_DATABASE=|DB_NAME=)\s*([a-z][a-z0-9]*_[a-z0-9_]+)")
METRIC_SUFFIX = re.compile(r"_(?:total|seconds|bytes|count|sum|bucket|ms|ratio)$")
SCOPED_PACKAGE = re.compile(r"(?<![\w/])@([a-z0-9-]+)/([a-z0-9-]+)")
PM2_LINE = re.compile(
    r"\*\*([a-z][\w-]*)\*\*\s*[:：]\s*([\w-]+(?:\s*-\s*[\w-]+)?)\s*instances?\s*\(([^)]*mode[^)]*)\)", re.IGNORECASE
)
MD_NOISE = re.compile(r"\*\*|__|`|~~|<[^>]+>|!\[[^\]]*\]\([^)]*\)")
LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")

# Terms are counted as whole words (ASCII) or as substrings (phrases, Chinese), which is much
# faster than a regular expression per term over every doc.
INFRA = (  # (label, keywords, kind)
    ("PostgreSQL", ("postgres", "postgresql"), "datastore"),
    ("MySQL", ("mysql",), "datastore"),
    ("MongoDB", ("mongo", "mongodb"), "datastore"),
    ("Redis", ("redis",), "datastore"),
    ("Elasticsearch", ("elasticsearch",), "datastore"),
    ("MinIO", ("minio",), "datastore"),
    ("ClickHouse", ("clickhouse",), "datastore"),
    ("RabbitMQ", ("rabbitmq",), "broker"),
    ("Kafka", ("kafka",), "broker"),
    ("NATS", ("nats",), "broker"),
    ("PM2", ("pm2",), "deploy"),
    ("Docker", ("docker",), "deploy"),
    ("Kubernetes", ("kubernetes", "k8s"), "deploy"),
    ("Consul", ("consul",), "discovery"),
    ("Envoy", ("envoy",), "discovery"),
    ("Nginx", ("nginx",), "discovery"),
    ("Prometheus", ("prometheus",), "observability"),
    ("Grafana", ("grafana",), "observability"),
    ("Jaeger", ("jaeger",), "observability"),
    ("Loki", ("loki",), "observability"),
)
PATTERNS = (  # (label, keywords)
    ("CQRS", ("cqrs",)),
    ("Event sourcing", ("event sourcing", "event-sourcing", "event sourced", "事件溯源")),
    ("Saga", ("saga", "sagas")),
    ("Transactional outbox", ("outbox",)),
    ("Circuit breaker", ("circuit breaker", "circuit-breaker", "熔断")),
    ("Dead-letter exchange/queue", ("dlx", "dead letter", "dead-letter", "死信")),
    ("Idempotent consumers", ("idempotent", "idempotency", "幂等")),
    ("Distributed locks", ("distributed lock", "分布式锁")),
    ("Cache-aside with Redis", ("cache-aside", "cache aside", "@cacheable", "cache invalidation")),
    ("Rate limiting", ("rate limit", "rate-limit", "ratelimit", "throttl", "限流")),
    ("Database per service", ("database per service", "database-per-service", "separate databases per service")),
    ("Multi-tenancy and quotas", ("multi-tenan", "多租户", "quota", "quotas")),
    ("RBAC with JWT", ("rbac", "jwt")),
    ("Event snapshots", ("snapshots every", "event snapshot", "user_snapshots")),
    ("Service-to-service auth", ("service-to-service auth", "service token")),
)
_WORD = re.compile(r"[a-z0-9]+")
DEBT_DOC = re.compile(r"audit|review|issue|debt|problem|risk|gap|todo|analysis|审计|问题|风险", re.IGNORECASE)
DEBT_LINE = re.compile(
    r"❌|⚠️|\btodo\b|\bmissing\b|not implemented|\bno (?:retry|idempoten|outbox|dlx|tests?)\b|\blacks?\b"
    r"|\bdebt\b|\bbroken\b|\bunsafe\b|缺少|缺失|未实现|没有|技术债|<\s*\d+\s*%",
    re.IGNORECASE,
)
MAX_DEBTS = 12
MAX_VARIANTS = 6  # "docs spell one event differently" lines


@dataclass
class Fact:
    text: str  # markdown, one line
    paths: list[str] = field(default_factory=list)


@dataclass
class Service:
    name: str
    paths: list[str]  # best evidence first
    port: int | None = None
    other_ports: dict[int, list[str]] = field(default_factory=dict)  # ports some docs give instead
    description: str = ""
    readme: str | None = None
    from_folder: bool = False
    database: str | None = None  # the database named after it, when the docs name one


@dataclass
class Profile:
    docs: int
    services: list[Service] = field(default_factory=list)
    messaging: list[Fact] = field(default_factory=list)
    datastores: list[Fact] = field(default_factory=list)
    libraries: list[Fact] = field(default_factory=list)
    deployment: list[Fact] = field(default_factory=list)
    patterns: list[Fact] = field(default_factory=list)
    debts: list[Fact] = field(default_factory=list)


# -- helpers ------------------------------------------------------------------------------
def plain(line: str) -> str:
    """A markdown line as plain text: links to their label, emphasis and code marks dropped."""
    line = LINK.sub(r"\1", line)
    line = MD_NOISE.sub("", line)
    line = re.sub(r"^\s*(?:[-*+]|\d+[.)]|#+|>)\s*", "", line)
    return " ".join(line.split())


def ranked(counts: Counter[str], limit: int = MAX_PATHS) -> list[str]:
    """Paths by how much evidence they hold (ties: the shorter, more central path first)."""
    return [p for p, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].count("/"), len(kv[0]), kv[0]))][:limit]


_LINES: dict[int, list[tuple[str, bool]]] = {}  # split lines per doc, for one extract_profile() call


def _doc_lines(doc: Doc) -> list[tuple[str, bool]]:
    """(line, inside a fenced code block) for each line of a doc, computed once per doc."""
    key = id(doc)
    if key not in _LINES:
        out: list[tuple[str, bool]] = []
        in_code = False
        for line in doc.text.splitlines():
            if line.startswith("#### "):  # a chunk starts (docs.py): a fence cut at a chunk edge ends here
                in_code = False
            if line.lstrip().startswith("```"):
                in_code = not in_code
                continue
            out.append((line, in_code))
        _LINES[key] = out
    return _LINES[key]


def _lines(doc: Doc, *, prose_only: bool = False) -> Iterable[str]:
    return (line for line, code in _doc_lines(doc) if not (prose_only and code))


def _clip(text: str, limit: int = 140) -> str:
    text = text.strip(" -–—:：|")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# -- services -----------------------------------------------------------------------------
def _folder_services(docs: Sequence[Doc]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(service folder name → doc paths under it, library folder path → doc paths under it)."""
    services: dict[str, list[str]] = defaultdict(list)
    libraries: dict[str, list[str]] = defaultdict(list)
    for doc in docs:
        parts = doc.path.split("/")[:-1]
        for i, part in enumerate(parts):
            parent = parts[i - 1] if i else ""
            if SERVICE_DIR.match(part) or (parent in SERVICE_PARENTS and part not in LIBRARY_DIRS and i == 1):
                services[part].append(doc.path)
                break
            if part in LIBRARY_DIRS and parent in SERVICE_PARENTS:
                libraries["/".join(parts[: i + 1])].append(doc.path)
                break
    return services, libraries


def _port_after(line: str, start: int) -> int | None:
    """The first port-like number after a name, before the next service name on the line."""
    rest = line[start : start + 60]
    stop = SERVICE_NAME.search(rest)
    if stop:
        rest = rest[: stop.start()]
    found = PORT_NEAR.search(rest)
    if not found:
        return None
    port = int(found.group(1))
    return port if 1024 <= port <= 65535 else None


def _description_after(line: str, start: int) -> str:
    """`**name** (Port 30001) - what it owns` → `what it owns` ('' when the line is not of that shape)."""
    rest = re.sub(r"^[*`]*\s*(?:\((?:port|端口)[^)]*\))?[*`]*\s*", "", line[start:], flags=re.IGNORECASE)
    found = re.match(r"^(?:-|–|—)\s*(.+)$", rest)
    if not found:
        return ""
    text = plain(re.sub(r"\((?:port|端口)[^)]*\)", "", found.group(1), flags=re.IGNORECASE))
    if len(text) < 3 or re.match(r"^(?:port|端口|\d)", text, re.IGNORECASE):
        return ""
    return _clip(text, 100)


def _readme_summary(doc: Doc) -> str:
    """The first prose line of a README (not a heading, badge, list or table)."""
    for line in doc.text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "|", "```", "![", "<", "---", ">")):
            continue
        text = plain(stripped)
        if len(text) >= 12:
            return _clip(text, 120)
    return ""


def extract_services(docs: Sequence[Doc]) -> tuple[list[Service], dict[str, list[str]]]:
    folders, libraries = _folder_services(docs)
    mentions: Counter[str] = Counter()
    mention_docs: dict[str, Counter[str]] = defaultdict(Counter)
    ports: dict[str, dict[int, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    descriptions: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for doc in docs:
        for line in _lines(doc):
            if "-" not in line or not any(marker in line for marker in SERVICE_MARKERS):
                continue
            names = [(m.group(1), m.end()) for m in SERVICE_NAME.finditer(line)]
            names += [(m.group(1), m.end()) for m in GATEWAY_NAME.finditer(line) if m.group(1) == "api-gateway"]
            for name, end in names:
                if name in NOT_SERVICES:
                    continue
                mentions[name] += 1
                mention_docs[name][doc.path] += 1
                port = _port_after(line, end)
                if port is not None:
                    ports[name][port][doc.path] += 1
                    described = _description_after(line, end)
                    if described:
                        descriptions[name][(described, doc.path)] += 1
    names = set(folders)
    for name, count in mentions.items():
        spread = len(mention_docs[name])
        with_port = sum(len(v) for v in ports[name].values())
        # common enough, or given a port in two docs, or listed as "name (Port N) - what it does"
        if (count >= MIN_MENTIONS and spread >= MIN_DOCS) or with_port >= 2 or descriptions[name]:
            names.add(name)
    # a mention-only name that contains a folder service's name plus a prefix is a variant (cloudphone-user-service)
    names = {n for n in names if n in folders or not any(n != f and n.endswith("-" + f) for f in folders)}
    readmes = {d.path: d for d in docs if d.path.lower().endswith("readme.md")}
    services: list[Service] = []
    for name in names:
        evidence: Counter[str] = Counter()
        by_port = {p: c for p, c in ports[name].items()}
        best_port = max(by_port, key=lambda p: (len(by_port[p]), sum(by_port[p].values()))) if by_port else None
        if best_port is not None:
            evidence.update({p: 5 for p in by_port[best_port]})
        readme = next((p for p in sorted(readmes, key=len) if f"/{name}/" in f"/{p}" and p.count("/") <= 3), None)
        if readme:
            evidence[readme] += 8
        evidence.update({p: min(c, 4) for p, c in mention_docs[name].items()})
        for p in folders.get(name, [])[:2]:
            evidence[p] += 1
        description = ""
        if descriptions[name]:
            (description, where), _ = descriptions[name].most_common(1)[0]
            evidence[where] += 6
        elif readme:
            description = _readme_summary(readmes[readme])
        other = {}
        if best_port is not None:
            total = len(by_port[best_port])
            other = {p: ranked(c, 2) for p, c in by_port.items() if p != best_port and len(c) * 4 >= total}
        services.append(
            Service(
                name=name,
                paths=ranked(evidence),
                port=best_port,
                other_ports=other,
                description=description,
                readme=readme,
                from_folder=name in folders,
            )
        )
    services.sort(key=lambda s: (s.port is None, s.port or 0, s.name))
    return services, libraries


# -- messaging ----------------------------------------------------------------------------
def _normal_key(key: str) -> str:
    return re.sub(r"[._-]", "", key)


def extract_messaging(docs: Sequence[Doc], services: Sequence[Service]) -> list[Fact]:
    stems = {s.name.rsplit("-", 1)[0] for s in services} | {s.name.split("-")[0] for s in services}
    stems |= {stem[:-1] for stem in stems if stem.endswith("s") and len(stem) > 4}  # orders-service → order.*
    stems.discard("api")
    exchanges: dict[str, Counter[str]] = defaultdict(Counter)
    keys: dict[str, Counter[str]] = defaultdict(Counter)
    queues: dict[str, Counter[str]] = defaultdict(Counter)
    convention: Counter[str] = Counter()
    service_names = {s.name for s in services}
    key_pattern = re.compile(r"`([a-z][a-z0-9]*(?:\.[a-z0-9_]+){1,3})`|'([a-z][a-z0-9]*(?:\.[a-z0-9_]+){1,3})'")
    queue_pattern = re.compile(r"(?<![\w/-])([a-z][a-z0-9-]*-service\.[a-z0-9_.-]*[a-z0-9])(?![\w/-])")
    for doc in docs:
        for line in _lines(doc):
            if "." not in line:
                continue
            if ".events" in line or ".dlx" in line or ".exchange" in line:
                for m in EXCHANGE.finditer(line):
                    name = m.group(1)
                    if name.split(".")[0] not in stems or name.endswith(".dlx"):
                        exchanges[name][doc.path] += 1
            if "xchange" in line:
                for m in EXCHANGE_DECL.finditer(line):
                    exchanges[m.group(1)][doc.path] += 1
            if ("entity" in line or "resource" in line or "aggregate" in line) and CONVENTION.search(line):
                convention[doc.path] += 1
            if "-service." in line:
                for m in queue_pattern.finditer(line):
                    queue = m.group(1)
                    if queue.split(".")[0] in service_names and not re.search(r"\.(?:ts|js|md|json|ya?ml)$", queue):
                        queues[queue][doc.path] += 1
            if "`" not in line and "'" not in line:
                continue
            for m in key_pattern.finditer(line):
                key = m.group(1) or m.group(2)
                head = key.split(".")[0]
                if (
                    head in stems
                    and not FILE_SUFFIX.search(key)
                    and not key.endswith((".events", ".dlx"))
                    and not PERMISSION_VERB.search(key)
                ):
                    keys[key][doc.path] += 1
    facts: list[Fact] = []
    main = sorted((n for n in exchanges if not n.endswith(".dlx")), key=lambda n: (-sum(exchanges[n].values()), n))[:3]
    main = [n for i, n in enumerate(main) if i == 0 or len(exchanges[n]) >= 2]
    for name in main:
        topic = "topic exchange" if any("topic" in d.text for d in docs if d.path in exchanges[name]) else "exchange"
        facts.append(Fact(f"Events go through the `{name}` {topic}.", ranked(exchanges[name])))
    dead = sorted((n for n in exchanges if n.endswith(".dlx")), key=lambda n: (-sum(exchanges[n].values()), n))[:4]
    if dead:
        evidence: Counter[str] = Counter()
        for n in dead:
            evidence.update(exchanges[n])
        names = ", ".join(f"`{n}`" for n in dead)
        note = " (the docs name more than one: settle which is current)" if len(dead) > 1 else ""
        facts.append(Fact(f"Dead-letter exchanges: {names}{note}.", ranked(evidence)))
    if convention:
        facts.append(Fact("Routing keys follow `service.entity.action`, as a doc states.", ranked(convention)))
    common = sorted(keys, key=lambda k: (-len(keys[k]), -sum(keys[k].values()), k))[:8]
    if common:
        evidence = Counter()
        for k in common:
            evidence.update(keys[k])
        facts.append(Fact("Routing keys in use include " + ", ".join(f"`{k}`" for k in common) + ".", ranked(evidence)))
    variants: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        variants[_normal_key(key)].append(key)
    for spellings in sorted(variants.values(), key=lambda v: -sum(len(keys[k]) for k in v)):
        if len(spellings) < 2 or sum(f.text.startswith("Docs spell") for f in facts) >= MAX_VARIANTS:
            continue
        spellings.sort(key=lambda k: -sum(keys[k].values()))
        paths: list[str] = []
        for k in spellings[:2]:
            paths += [p for p in ranked(keys[k], 2) if p not in paths]
        facts.append(
            Fact(
                "Docs spell one event differently: " + " vs ".join(f"`{k}`" for k in spellings[:3]) + ".",
                paths[:MAX_PATHS],
            )
        )
    if queues:
        per_service: dict[str, int] = Counter(q.split(".")[0] for q in queues)
        top = sorted(queues, key=lambda q: (-sum(queues[q].values()), q))[:4]
        evidence = Counter()
        for q in top:
            evidence.update(queues[q])
        facts.append(
            Fact(
                "Queues are named `<service>.<event>`, one set per consuming service ("
                + ", ".join(f"{s}: {n}" for s, n in sorted(per_service.items(), key=lambda kv: -kv[1])[:4])
                + "), e.g. "
                + ", ".join(f"`{q}`" for q in top)
                + ".",
                ranked(evidence),
            )
        )
    return facts


# -- datastores, libraries, deployment, patterns ------------------------------------------
def _count_terms(docs: Sequence[Doc], terms: Sequence[tuple[str, tuple[str, ...]]]) -> dict[str, Counter[str]]:
    """Mentions of each term per doc: ASCII keywords as whole words, the others as substrings."""
    found: dict[str, Counter[str]] = defaultdict(Counter)
    for doc in docs:
        lower = doc.text.lower()
        words = Counter(_WORD.findall(lower))
        for label, keywords in terms:
            n = sum(words[k] if _WORD.fullmatch(k) else lower.count(k) for k in keywords)
            if n:
                found[label][doc.path] += n
    return found


def extract_databases(docs: Sequence[Doc]) -> dict[str, Counter[str]]:
    """Database names (`snake_case` on lines about databases) → the docs naming them."""
    databases: dict[str, Counter[str]] = defaultdict(Counter)
    for doc in docs:
        for line in _lines(doc):
            if "_" not in line or not DB_CONTEXT.search(line):
                continue
            for m in DB_NAME.finditer(line):
                name = m.group(1) or m.group(2)
                if not METRIC_SUFFIX.search(name) and name.count("_") <= 2:
                    databases[name][doc.path] += 1
    return databases


def attach_databases(services: Sequence[Service], databases: dict[str, Counter[str]], least: int) -> None:
    """Give each service the database named after it (`cloudphone_user` → user-service), when one is."""
    for service in services:
        stem = service.name.rsplit("-", 1)[0].replace("-", "_")
        stems = {stem, stem[:-1] if stem.endswith("s") and len(stem) > 4 else stem, stem.split("_")[0]}
        candidates = [
            n
            for n in databases
            if len(databases[n]) >= least and (n.split("_", 1)[-1] in stems or n.rsplit("_", 1)[-1] in stems)
        ]
        if candidates:
            best = max(candidates, key=lambda n: (len(databases[n]), -len(n)))
            service.database = best
            service.paths = list(dict.fromkeys([*service.paths, *ranked(databases[best], 1)]))[: MAX_PATHS + 1]


def extract_infrastructure(
    docs: Sequence[Doc], min_docs: int, databases: dict[str, Counter[str]]
) -> dict[str, list[Fact]]:
    kinds = {label: kind for label, _, kind in INFRA}
    found = _count_terms(docs, [(label, keywords) for label, keywords, _ in INFRA])
    out: dict[str, list[Fact]] = defaultdict(list)
    for label, counts in sorted(found.items(), key=lambda kv: -len(kv[1])):
        if len(counts) < min_docs:
            continue
        kind = kinds[label]
        text = f"**{label}** (named in {len(counts)} docs)"
        if label in ("PostgreSQL", "MySQL"):
            least = 1 if min_docs < 3 else 2  # a small doc set names each database once
            names = sorted((n for n in databases if len(databases[n]) >= least), key=lambda n: -len(databases[n]))[:8]
            if names:
                text += ": databases " + ", ".join(f"`{n}`" for n in names)
                extra: Counter[str] = Counter()
                for n in names[:3]:
                    extra.update(databases[n])
                counts = counts + extra
        out["deployment" if kind in ("deploy", "discovery", "observability") else "datastores"].append(
            Fact(text + ".", ranked(counts))
        )
    return out


def extract_libraries(docs: Sequence[Doc], library_dirs: dict[str, list[str]], project: set[str]) -> list[Fact]:
    packages: dict[str, Counter[str]] = defaultdict(Counter)
    for doc in docs:
        for m in SCOPED_PACKAGE.finditer(doc.text):
            scope, name = m.group(1), m.group(2)
            if scope in project or name in ("shared", "common"):
                packages[f"@{scope}/{name}"][doc.path] += 1
    facts = []
    for package in sorted(packages, key=lambda p: -sum(packages[p].values()))[:5]:
        if len(packages[package]) < 2 and package.split("/")[0][1:] not in project:
            continue
        n = len(packages[package])
        facts.append(Fact(f"`{package}` (named in {n} doc{'s' if n > 1 else ''}).", ranked(packages[package])))
    for folder, paths in sorted(library_dirs.items()):
        facts.append(Fact(f"Shared code lives in `{folder}/`.", paths[:MAX_PATHS]))
    return facts


def extract_pm2(docs: Sequence[Doc]) -> list[Fact]:
    lines: dict[str, Counter[str]] = defaultdict(Counter)
    for doc in docs:
        for m in PM2_LINE.finditer(doc.text):
            lines[f"{m.group(1)} {m.group(2)} ({m.group(3).strip()})"][doc.path] += 1
    if not lines:
        return []
    evidence: Counter[str] = Counter()
    for counts in lines.values():
        evidence.update(counts)
    best_doc = ranked(evidence, 1)[0]
    shown = [line for line, counts in lines.items() if best_doc in counts][:12]
    return [Fact("PM2 instances: " + "; ".join(shown) + ".", [best_doc])]


def extract_patterns(docs: Sequence[Doc], services: Sequence[Service], min_docs: int) -> list[Fact]:
    found = _count_terms(docs, PATTERNS)
    keywords = dict(PATTERNS)
    names = [s.name for s in services]
    facts = []
    for label, counts in sorted(found.items(), key=lambda kv: -len(kv[1])):
        if len(counts) < min_docs:
            continue
        where: Counter[str] = Counter()  # services named on the same lines as the pattern
        for doc in docs:
            if doc.path not in counts:
                continue
            for line in _lines(doc, prose_only=True):
                lower = line.lower()
                if any(k in lower for k in keywords[label]):
                    where.update(n for n in names if n in lower)
        total = sum(where.values())
        owners = [n for n, c in where.most_common(2) if total >= 3 and c * 3 >= total]
        text = (
            f"**{label}**" + (f", mostly around {' and '.join(owners)}" if owners else "") + f" ({len(counts)} docs)."
        )
        facts.append(Fact(text, ranked(counts)))
    return facts


def extract_debts(docs: Sequence[Doc]) -> list[Fact]:
    candidates: list[tuple[int, str, str]] = []
    for doc in docs:
        if not DEBT_DOC.search(doc.path):
            continue
        for line in _lines(doc, prose_only=True):
            stripped = line.strip()
            if stripped.startswith(("#", "|", "```")) or not DEBT_LINE.search(stripped):
                continue
            text = plain(stripped)
            text = re.sub(r"^(?:❌|⚠️|✅|🔴|🟡)\s*", "", text)
            if not 25 <= len(text) <= 200:
                continue
            score = 3 if re.search(r"audit|审计", doc.path, re.IGNORECASE) else 1
            score += 2 if re.search(r"❌|<\s*\d+\s*%|missing|缺少|缺失", stripped, re.IGNORECASE) else 0
            candidates.append((score, text, doc.path))
    candidates.sort(key=lambda c: (-c[0], c[2], c[1]))
    facts: list[Fact] = []
    seen_text: set[str] = set()
    per_doc: Counter[str] = Counter()
    for _, text, path in candidates:
        key = re.sub(r"\W+", "", text.lower())[:60]
        if key in seen_text or per_doc[path] >= 4:
            continue
        seen_text.add(key)
        per_doc[path] += 1
        facts.append(Fact(_clip(text, 180), [path]))
        if len(facts) >= MAX_DEBTS:
            break
    return facts


# -- all of it ----------------------------------------------------------------------------
def extract_profile(docs: Sequence[Doc]) -> Profile:
    _LINES.clear()  # keyed by id(): valid only while these docs are alive
    try:
        return _extract_profile(docs)
    finally:
        _LINES.clear()


def _extract_profile(docs: Sequence[Doc]) -> Profile:
    services, library_dirs = extract_services(docs)
    min_docs = 2 if len(docs) < 40 else 3
    databases = extract_databases(docs)
    attach_databases(services, databases, 1 if min_docs < 3 else 2)
    infra = extract_infrastructure(docs, min_docs, databases)
    messaging = extract_messaging(docs, services)
    exchange_heads = {f.text.split("`")[1].split(".")[0] for f in messaging if f.text.startswith("Events go")}
    project = {h for h in exchange_heads if h} | {d.source.lower() for d in docs}
    profile = Profile(docs=len(docs), services=services, messaging=messaging)
    profile.datastores = infra.get("datastores", [])
    profile.libraries = extract_libraries(docs, library_dirs, project)
    gateways = [s for s in services if "gateway" in s.name or s.name.endswith("-bff")]
    profile.deployment = [
        *[
            Fact(f"Clients enter through `{g.name}`" + (f" (port {g.port})." if g.port else "."), g.paths)
            for g in gateways
        ],
        *extract_pm2(docs),
        *infra.get("deployment", []),
    ]
    profile.patterns = extract_patterns(docs, services, min_docs)
    profile.debts = extract_debts(docs)
    return profile
