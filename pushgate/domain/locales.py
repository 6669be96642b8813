"""Which locale variant a device gets (docs/templates.md, "Locale choice"). Pure.

Locale tags are compared case-insensitively with ``_`` read as ``-`` (``pt_br`` is ``pt-BR``):
devices report their locale in whatever form their platform uses.
"""

from __future__ import annotations

from collections.abc import Iterable


def normalize_locale(tag: str) -> str:
    """The comparable form of a locale tag: ``pt_BR`` → ``pt-br``."""
    return tag.strip().replace("_", "-").lower()


def language_of(tag: str) -> str:
    """The language subtag: ``pt-BR`` → ``pt``."""
    return normalize_locale(tag).split("-", 1)[0]


def choose_locale(device_locale: str | None, available: Iterable[str], default: str | None) -> str | None:
    """The variant (as spelled in ``available``) a device with ``device_locale`` gets.

    In order: the exact tag (``pt-BR``); the bare language (``pt``); another variant of the
    same language (``pt-PT`` gets ``pt-BR`` when there is no ``pt-PT`` nor ``pt``: a Portuguese
    reader is better served by Portuguese than by the default language), the first of them in
    sorted order so the choice is stable; then ``default`` when it is one of ``available``.
    None when nothing applies: the caller uses its base (untranslated) content.
    """
    by_norm: dict[str, str] = {}
    for tag in available:
        by_norm.setdefault(normalize_locale(tag), tag)
    if device_locale and device_locale.strip():
        wanted = normalize_locale(device_locale)
        if wanted in by_norm:
            return by_norm[wanted]
        lang = wanted.split("-", 1)[0]
        if lang in by_norm:
            return by_norm[lang]
        same = sorted(norm for norm in by_norm if norm.split("-", 1)[0] == lang)
        if same:
            return by_norm[same[0]]
    if default is not None:
        return by_norm.get(normalize_locale(default))
    return None
