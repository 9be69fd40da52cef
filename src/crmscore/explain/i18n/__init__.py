"""Translations of the operations page and of reason texts: one JSON file per language next to this
module (`en.json`, `zh.json`), nested keys read as dotted paths ("customer.title").

A missing key in a language falls back to English, then to the key itself, so a half-translated
file never breaks a page (tests check both files have the same keys). Feature descriptions live with
the feature declarations (crmscore.features.translations). This module has no web dependencies: the
reason texts of the API use it too.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

LANGUAGES = ("en", "zh")
DEFAULT = "en"


@lru_cache(maxsize=None)
def catalog(lang: str) -> dict[str, Any]:
    """The parsed translation file of a language."""
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; known: {', '.join(LANGUAGES)}")
    return json.loads(resources.files(__package__).joinpath(f"{lang}.json").read_text(encoding="utf-8"))


def _get(lang: str, key: str) -> str | None:
    node: Any = catalog(lang)
    parts = key.split(".")
    i = 0
    while i < len(parts):
        if not isinstance(node, dict):
            return None
        # a key may contain dots itself ("source.previous_publish"): prefer the longest match
        for j in range(len(parts), i, -1):
            candidate = ".".join(parts[i:j])
            if candidate in node:
                node = node[candidate]
                i = j
                break
        else:
            return None
    return node if isinstance(node, str) else None


def text(lang: str, key: str, **values: Any) -> str:
    """The translated string for a dotted key, formatted with values; English, then the key, as fallbacks."""
    template = _get(lang, key) if lang in LANGUAGES else None
    if template is None:
        template = _get(DEFAULT, key)
    if template is None:
        return key
    return template.format(**values) if values else template


def has(lang: str, key: str) -> bool:
    return _get(lang, key) is not None


def effect(lang: str, reason_effect: str) -> str:
    """A model's reason effect ("raises churn risk") in lang; unchanged when there is no translation."""
    if lang == DEFAULT:
        return reason_effect
    table = catalog(lang).get("effects", {})
    if reason_effect in table:
        return table[reason_effect]
    for english, translated in table.items():  # next-category: "makes buying {target} more likely"
        if "{target}" in english:
            head, tail = english.split("{target}", 1)
            if reason_effect.startswith(head) and reason_effect.endswith(tail) and len(reason_effect) > len(head + tail):
                return translated.format(target=reason_effect[len(head):len(reason_effect) - len(tail)])
    return reason_effect


def pick_language(query: str | None = None, cookie: str | None = None, accept_language: str | None = None) -> str:
    """`?lang=` wins, then the language cookie, then the browser's Accept-Language (highest q first)."""
    for choice in (query, cookie):
        if choice:
            norm = normalize(choice)
            if norm:
                return norm
    if accept_language:
        ranked = []
        for i, part in enumerate(accept_language.split(",")):
            tag, _, params = part.strip().partition(";")
            q = 1.0
            for p in params.split(";"):
                k, _, v = p.strip().partition("=")
                if k == "q":
                    try:
                        q = float(v)
                    except ValueError:
                        q = 0.0
            ranked.append((-q, i, tag.strip()))
        for _, _, tag in sorted(ranked):
            norm = normalize(tag)
            if norm:
                return norm
    return DEFAULT


def normalize(tag: str) -> str | None:
    """'zh-CN', 'zh-Hans', 'zh' -> 'zh'; 'en-GB' -> 'en'; anything else None."""
    base = tag.strip().lower().replace("_", "-").split("-")[0]
    return base if base in LANGUAGES else None
