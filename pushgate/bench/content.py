"""What issue 12's workloads say and to whom: device attributes for the seed, the bench
templates, and the named audience filters.

Kept in one place so that the seed, ``transactional --template``, ``e2e --template``,
``audience`` and ``plan --filter`` agree: a filter named here selects a known share of the
devices :func:`device_attributes` describes, and the templates read exactly the variables those
devices carry (``device.meta.name``, ``device.locale``, the user), so a run never measures a
render failure by accident.
"""

from __future__ import annotations

import json
from typing import Any

from pushgate.bench.http import BenchClient, BenchHttpError

__all__ = [
    "FANOUT_TEMPLATE",
    "FILTERS",
    "LOCALES",
    "TX_TEMPLATE",
    "device_attributes",
    "ensure_template",
    "resolve_filter",
]

#: Device locales, round-robin (``None``: no locale). With the bench templates' ``en``, ``de``
#: and ``pt-BR`` variants every rule of the locale choice is taken: exact (``pt-BR``, ``de``),
#: language (``de-AT``, ``en-US``, ``en-GB``), same language (``pt-PT`` → ``pt-BR``) and the
#: default (``fr``, none).
LOCALES: tuple[str | None, ...] = ("en-US", "de-AT", "pt-BR", "pt-PT", "fr", "de", "en-GB", None)


def device_attributes(n: int) -> dict[str, Any]:
    """Device ``n``'s user, locale, app version, tags and meta (a deterministic spread).

    Two devices per user. ``plan`` tags: ``pro`` for 10%, ``enterprise`` for 0.1% (``n % 1000
    == 1``), ``free`` for the rest. Versions ``1.x.y`` to ``3.x.y`` with minors 0 to 11 (so ``2.10.0``
    vs ``2.9.x`` is compared semantically); one in 500 devices has the rare ``10.0.1``.
    """
    major, minor, patch = 1 + (n // 7) % 3, (n // 21) % 12, n % 5
    plan = "enterprise" if n % 1000 == 1 else "pro" if n % 10 == 0 else "free"
    out: dict[str, Any] = {
        "user": f"bu-{n // 2}",
        "app_version": "10.0.1" if n % 500 == 3 else f"{major}.{minor}.{patch}",
        "tags": {"plan": plan, "cohort": f"c{n % 16}"},
        "meta": {"name": f"User {n}", "city": ("Lisbon", "Berlin", "Austin", "Lyon")[n % 4]},
    }
    locale = LOCALES[n % len(LOCALES)]
    if locale is not None:
        out["locale"] = locale
    return out


#: Named filters over devices seeded with :func:`device_attributes` (``bench seed --attributes``).
#: At 100,000 devices (fcm, apns, webpush round-robin): ``selective`` 66 devices (the rare
#: tag, through the tag index), ``version`` 200 (the rare exact version, through the version
#: index), ``issue`` 2,300 (the issue's acceptance filter), ``broad`` 58,198 (a language,
#: evaluated per row, or a version range).
FILTERS: dict[str, dict[str, Any]] = {
    "selective": {"all": [{"tag": "plan", "is": "enterprise"}, {"app_version": {"gte": "2.0.0"}}]},
    "version": {"app_version": {"is": "10.0.1"}},
    "issue": {
        "all": [
            {"provider": {"in": ["fcm", "apns"]}},
            {"tag": "plan", "is": "pro"},
            {"app_version": {"gte": "2.10.0"}},
            {"not": {"user": "absent"}},
        ]
    },
    "broad": {
        "any": [
            {"language": {"in": ["de", "pt"]}},
            {"app_version": {"gte": "3.6.0"}},
        ]
    },
}


def resolve_filter(value: str) -> tuple[str, dict[str, Any]]:
    """``(name, filter)`` from a name of :data:`FILTERS` or a filter given as JSON."""
    if value in FILTERS:
        return value, FILTERS[value]
    try:
        parsed = json.loads(value)
    except ValueError:
        raise ValueError(f"filter {value!r}: one of {', '.join(FILTERS)} or a JSON filter") from None
    if not isinstance(parsed, dict):
        raise ValueError('a JSON filter is an object, e.g. {"tag": "plan", "is": "pro"}')
    return "json", parsed


#: ``transactional --template``: a one-user message in three locale variants reading the
#: publish's data, the device's meta and the user (the everyday templated path).
TX_TEMPLATE: dict[str, Any] = {
    "id": "bench_tx",
    "title": "Your code, {{ device.meta.name | default('there') }}",
    "body": "Code {{ data.code }} for {{ user.id | default('you') }}",
    "data": {"seq": "{{ data.seq }}"},
    "locales": {
        "en": {},
        "de": {
            "title": "Dein Code, {{ device.meta.name | default('du') }}",
            "body": "Code {{ data.code }} für {{ user.id | default('dich') }}",
        },
        "pt-BR": {
            "title": "Seu código, {{ device.meta.name | default('você') }}",
            "body": "Código {{ data.code }} para {{ user.id | default('você') }}",
        },
    },
    "default_locale": "en",
}

#: ``e2e --template``: a channel-wide message personalised per device from ``device.meta.*``
#: and translation keys, in three locale variants.
FANOUT_TEMPLATE: dict[str, Any] = {
    "id": "bench_fanout",
    "title": "{{ l10n.hello }}, {{ device.meta.name | default('friend') }}",
    "body": "{{ l10n.sale }} {{ device.meta.city | default('') }}: {{ data.discount }}%",
    "data": {"campaign": "{{ data.campaign }}"},
    "l10n": {"hello": "Hello", "sale": "Sale today in"},
    "locales": {
        "en": {},
        "de": {"l10n": {"hello": "Hallo", "sale": "Heute Sale in"}},
        "pt-BR": {"l10n": {"hello": "Olá", "sale": "Promoção hoje em"}},
    },
    "default_locale": "en",
}


async def ensure_template(api: BenchClient, template: dict[str, Any]) -> int:
    """Create ``template`` (or replace it, adding a version, if its id exists); its version."""
    status, _h, data = await api.request("POST", "/v1/templates", template)
    if status == 409:
        body = {k: v for k, v in template.items() if k != "id"}
        status, _h, data = await api.request("PUT", f"/v1/templates/{template['id']}", body)
    if status not in (200, 201):
        raise BenchHttpError(f"template {template['id']}: HTTP {status}: {data[:300]!r}")
    return int(json.loads(data)["version"])
