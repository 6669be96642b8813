"""A dry run of a templated, localized publish (issue 12: "plans everything … rendering per
locale"): each locale's sample is that locale's rendering, and a device whose template fails
is recorded as the real publish records it, with nothing sent to the lab."""

from __future__ import annotations

from typing import Any

from support.api import fcm_token, register
from support.gateway import Gateway
from support.lab import Lab

TEMPLATE: dict[str, Any] = {
    "id": "hello",
    "title": "Hello {{ device.meta.name }}",
    "body": "order {{ data.order }}",
    "locales": {"en": {}, "de": {"title": "Hallo {{ device.meta.name }}"}},
    "default_locale": "en",
}


async def test_a_dry_run_renders_each_locale_and_records_template_failures(
    gateway: Gateway, lab: Lab
) -> None:
    r = await gateway.client.post("/v1/templates", json=TEMPLATE)
    assert r.status_code == 201, r.text
    named = {"de-AT": "Anna", "en-GB": "Ben"}
    for locale, name in named.items():
        await register(
            gateway,
            provider="fcm",
            token=fcm_token(),
            platform="android",
            locale=locale,
            meta={"name": name},
            channels=["dry-t"],
        )
    # No meta.name: its template fails for this device alone.
    await register(gateway, provider="fcm", token=fcm_token(), platform="android", channels=["dry-t"])
    body = {
        "recipients": [{"type": "channel", "channel": "dry-t"}],
        "template": {"id": "hello", "data": {"order": "A-1"}},
        "dry_run": True,
    }
    r = await gateway.client.post("/v1/publish", json=body)
    if r.status_code == 202:
        dry = await gateway.wait_done(r.json()["publish_id"])
        dry = (await gateway.client.get(f"/v1/publishes/{dry['id']}")).json()
    else:
        assert r.status_code == 200, r.text
        dry = r.json()
    assert dry["status"] == "completed" and dry["counts"]["dry_run"] == 2, dry
    assert dry["counts"]["failed"] == 1 and dry["counts"]["sent"] == 0
    assert dry["reasons"] == [{"error_class": "payload", "code": "template_error", "count": 1}]
    titles = {
        locale: sample["body"]["message"]["notification"]["title"]
        for locale, sample in dry["samples"]["fcm"].items()
    }
    assert titles == {"de": "Hallo Anna", "en": "Hello Ben"}, dry["samples"]
    assert lab.ledger("fcm")["items"] == []

    real = await gateway.client.post("/v1/publish", json={**body, "dry_run": False})
    final = await gateway.wait_done(real.json()["publish_id"])
    assert (final["counts"]["sent"], final["counts"]["failed"]) == (2, 1)
    assert final["reasons"] == dry["reasons"]
