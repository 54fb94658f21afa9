"""Markdown chunking and the text analyser."""

from __future__ import annotations

from bot.retrieval.chunking import parse, size
from bot.retrieval.search import analyse
from bot.retrieval.text import fold, terms


def test_heading_path_and_front_matter() -> None:
    doc = parse(
        "---\ntitle: Guide\ntags: [ops]\n---\n# Top\n\n" + "intro " * 60 + "\n\n## Deploy\n\n" + "step " * 60,
        fallback_title="x",
    )
    assert doc.title == "Guide" and doc.tags == ["ops"] and doc.aliases == []
    assert [c.heading for c in doc.chunks] == [["Top"], ["Top", "Deploy"]]
    assert all("title:" not in c.text for c in doc.chunks)


def test_code_blocks_and_tables_are_not_cut_when_they_fit() -> None:
    code = "```python\n" + "\n".join(f"x{i} = {i}  # a line of code" for i in range(30)) + "\n```"
    table = "| a | b |\n| --- | --- |\n" + "\n".join(f"| r{i} | v{i} |" for i in range(30))
    doc = parse(f"# T\n\n{'para ' * 200}\n\n{code}\n\n{table}\n", fallback_title="t", max_chars=1200)
    assert any(code in c.text for c in doc.chunks)
    assert any(table in c.text for c in doc.chunks)
    assert all(size(c.text) <= 1200 for c in doc.chunks)


def test_headings_inside_code_are_not_headings() -> None:
    doc = parse("# Real\n\n```bash\n# not a heading\necho hi\n```\n", fallback_title="t")
    assert [c.heading for c in doc.chunks] == [["Real"]]


def test_oversized_block_is_cut_at_lines() -> None:
    big = "\n".join(f"line {i} " + "word " * 20 for i in range(200))
    doc = parse(f"# Big\n\n```\n{big}\n```\n", fallback_title="t", max_chars=1000)
    assert len(doc.chunks) > 3 and all(size(c.text) <= 1000 for c in doc.chunks)


def test_identifier_terms_whole_and_split() -> None:
    t = terms("publish device.connection.lost with DB_PASSWORD via getUserById")
    for term in ("device_connection_lost", "db_password", "getuserbyid"):  # whole, not stemmed
        assert term in t
    for part in ("device", "connection", "lost", "password", "user"):  # parts, stemmed like any word
        assert fold(part) in t
    assert "用户" in terms("用户服务的缓存")


def test_english_words_are_stemmed_on_both_sides() -> None:
    assert fold("caching") == fold("cached") == fold("cache") == fold("Caches")
    assert fold("updating") == fold("update")
    assert fold("缓存") == "缓存" and fold("DB") == "db"
    assert set(terms("users still see the old profile after updating")) & set(terms("update the user cache"))


def test_query_expansion_crosses_languages() -> None:
    concepts = {c.label: c for c in analyse("how does the circuit breaker work")}
    assert ("熔断",) in concepts["circuit breaker"].alternatives
    labels = [c.label for c in analyse("我们怎么做灰度发布")]
    assert "我们" not in labels and "怎么" not in labels
    assert any((fold("canary"),) in c.alternatives for c in analyse("灰度发布"))


def test_aliases_from_front_matter() -> None:
    doc = parse(
        "---\ntitle: Circuit breaker\naliases: [熔断, fail fast]\n---\n# Circuit breaker\n\nText.\n", fallback_title="x"
    )
    assert doc.aliases == ["熔断", "fail fast"]
    assert parse("---\naliases: 熔断\n---\n# T\n\nText.\n", fallback_title="x").aliases == ["熔断"]


def test_navigation_lists_are_left_out() -> None:
    text = (
        "# Guide\n\n## Contents\n\n1. [Setup](#setup)\n2. [Deploy](#deploy)\n3. [Ports](#ports)\n\n"
        "## Setup\n\n" + "Install the thing and run it. " * 10 + "\n\n"
        "## Related\n\n- [retries](retries.md): backoff\n- [timeouts](timeouts.md)\n"
    )
    doc = parse(text, fallback_title="g")
    assert [c.heading for c in doc.chunks] == [["Guide", "Setup"]]
    assert "[Deploy]" not in doc.chunks[0].text
    # A page that is nothing but links (an index page) keeps them rather than vanishing.
    index = parse("# Index\n\n- [a](a.md)\n- [b](b.md)\n", fallback_title="i")
    assert len(index.chunks) == 1 and "[a](a.md)" in index.chunks[0].text
