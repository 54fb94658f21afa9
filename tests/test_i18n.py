"""The message catalogue and language detection (bot/i18n.py)."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from bot.i18n import LANGUAGES, catalogue, detect_language, parse_lang, t, turns_language
from bot.types import Turn

BOT_DIR = Path(__file__).resolve().parents[1] / "bot"


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_key_has_every_language_with_the_same_placeholders() -> None:
    entries = catalogue()
    assert len(entries) > 40
    for key, texts in entries.items():
        assert set(texts) == set(LANGUAGES), key
        assert all(v.strip() for v in texts.values()), key
        assert len({frozenset(_fields(v)) for v in texts.values()}) == 1, key


def test_every_key_the_code_asks_for_exists() -> None:
    used: set[str] = set()
    for path in BOT_DIR.rglob("*.py"):
        used |= set(re.findall(r"""\bt\(\s*f?["']([a-z_]+\.[a-z_.]+)["']""", path.read_text(encoding="utf-8")))
    assert used, "no t(...) call found"
    assert used <= set(catalogue()), sorted(used - set(catalogue()))


def test_modal_titles_and_buttons_fit_slack_limits() -> None:
    for key, limit in {"review.modal_title": 24, "feedback.modal_title": 24, "review.modal_submit": 24}.items():
        assert all(len(v) <= limit for v in catalogue()[key].values()), key


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("How do device events reach the notification service?", "en"),
        ("设备事件如何送达通知服务？", "zh"),
        ("device-service 的端口是多少？", "zh"),  # identifiers do not make it English
        ("如何处理 RabbitMQ DLX 的重试?", "zh"),
        ("设备断连事件的 routing key 是 device.connection_lost 还是 device.connection.lost？", "zh"),
        ("What does 设备服务 mean for the billing-service?", "en"),
        ("<@U123> `device.connection_lost` 和 `device.connection.lost` 哪个对？", "zh"),
        ("", "en"),
    ],
)
def test_detect_language(text: str, lang: str) -> None:
    assert detect_language(text) == lang


def test_a_short_follow_up_takes_the_threads_language() -> None:
    assert detect_language("continue", "设备事件如何送达通知服务？") == "zh"
    assert detect_language("继续") == "zh"
    assert detect_language("ok?", "How do device events flow?") == "en"
    turns = [Turn("user", "Alice: 设备心跳间隔是多少？"), Turn("assistant", "30 秒。"), Turn("user", "Alice: continue")]
    assert turns_language(turns) == "zh"


def test_t_fills_placeholders_and_parse_lang_falls_back() -> None:
    assert t("answer.reason_quoted", "zh", n=2) == "有 2 段文档原文支持"
    assert t("answer.sources", "en") == "Sources" and t("answer.sources", "zh") == "来源"
    assert parse_lang("zh-CN") == "zh" and parse_lang("fr") == "en" and parse_lang(None) == "en"
