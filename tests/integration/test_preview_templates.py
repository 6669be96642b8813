"""``POST /v1/publish/preview`` for templated and localized publishes (one preview per provider
and locale variant), and the ``template`` a publish object names, on both databases."""

from __future__ import annotations

from typing import Any

from support.gateway import Gateway
from support.lab import Lab

CHANNEL = [{"type": "channel", "channel": "news"}]
GREETING: dict[str, Any] = {
    "id": "greeting",
    "title": "Order {{ data.order }}",
    "body": "Hi {{ device.meta.name }} ({{ user.id }})",
    "locales": {
        "de": {"title": "Bestellung {{ data.order }}"},
        "pt-BR": {"title": "Pedido {{ data.order }}", "body": "{{ data.long }}"},
    },
    "default_locale": "de",
}


def fcm_title(preview: dict[str, Any]) -> str:
    return str(preview["request"]["body"]["message"]["notification"]["title"])


async def test_template_preview_has_one_entry_per_locale_variant(gateway: Gateway, lab: Lab) -> None:
    r = await gateway.client.post("/v1/templates", json=GREETING)
    assert r.status_code == 201, r.text
    body = {"recipients": CHANNEL, "template": {"id": "greeting", "data": {"order": "A-1", "long": "ok"}}}
    r = await gateway.client.post("/v1/publish/preview", json=body)
    assert r.status_code == 200, r.text
    fcm = r.json()["providers"]["fcm"]
    # A default locale: no device gets the base content, so there is no ``default`` variant.
    assert set(fcm["locales"]) == {"de", "pt-BR"}
    de, pt = fcm["locales"]["de"], fcm["locales"]["pt-BR"]
    assert fcm_title(de) == "Bestellung A-1" and fcm_title(pt) == "Pedido A-1"
    # Rendered with admission's sample device: its meta has every key, its user is a placeholder.
    assert de["request"]["body"]["message"]["notification"]["body"] == "Hi sample (sample-user)"
    assert pt["request"]["body"]["message"]["notification"]["body"] == "ok"
    assert de["fits"] is True and de["limit"] == 4096 and de["size"] > 0
    largest = max((de, pt), key=lambda p: p["size"])
    assert (fcm["request"], fcm["size"], fcm["fits"]) == (largest["request"], largest["size"], True)
    web = r.json()["providers"]["webpush"]["locales"]
    assert web["pt-BR"]["request"]["body"]["title"] == "Pedido A-1"
    # One variant over the limit: it says so, and so does the provider's entry (admission refuses).
    body["template"]["data"]["long"] = "x" * 4090  # type: ignore[index]
    fcm = (await gateway.client.post("/v1/publish/preview", json=body)).json()["providers"]["fcm"]
    assert fcm["locales"]["pt-BR"]["fits"] is False and fcm["locales"]["de"]["fits"] is True
    assert fcm["fits"] is False and fcm["size"] == fcm["locales"]["pt-BR"]["size"] > 4096
    assert (await gateway.client.post("/v1/publish", json=body)).json()["error"][
        "code"
    ] == "payload_too_large"
    # An undefined variable in one variant: that variant's error, the others rendered.
    body["template"]["data"] = {"order": "A-2"}  # type: ignore[index]
    fcm = (await gateway.client.post("/v1/publish/preview", json=body)).json()["providers"]["fcm"]
    assert "data.long" in fcm["locales"]["pt-BR"]["error"] and "request" not in fcm["locales"]["pt-BR"]
    assert fcm_title(fcm["locales"]["de"]) == "Bestellung A-2"
    assert fcm["error"].startswith("locale 'pt-BR': ") and "request" not in fcm
    assert (await gateway.client.post("/v1/publish", json=body)).status_code == 400
    assert (await gateway.client.get("/v1/publishes")).json()["items"] == []
    assert lab.ledger()["total"] == 0


async def test_localized_and_plain_previews_and_unknown_template(gateway: Gateway) -> None:
    plain = {"recipients": CHANNEL, "notification": {"title": "Hello", "body": "World"}}
    fcm = (await gateway.client.post("/v1/publish/preview", json=plain)).json()["providers"]["fcm"]
    assert "locales" not in fcm and fcm_title(fcm) == "Hello"  # the answer of a plain publish is unchanged
    localized = {**plain, "localizations": {"fr": {"title": "Bonjour"}}}
    fcm = (await gateway.client.post("/v1/publish/preview", json=localized)).json()["providers"]["fcm"]
    # No default locale: devices matching no variant get the base content (``default``).
    assert {k: fcm_title(v) for k, v in fcm["locales"].items()} == {"default": "Hello", "fr": "Bonjour"}
    unknown = {"recipients": CHANNEL, "template": {"id": "nope"}}
    previewed = await gateway.client.post("/v1/publish/preview", json=unknown)
    published = await gateway.client.post("/v1/publish", json=unknown)
    assert previewed.status_code == published.status_code == 400
    assert previewed.json() == published.json()
    assert "template.id" in previewed.json()["error"]["message"]


async def test_a_publish_names_its_template_and_version(gateway: Gateway) -> None:
    r = await gateway.client.post("/v1/templates", json={"id": "promo", "title": "Sale {{ data.code }}"})
    assert r.status_code == 201, r.text
    use = {"recipients": CHANNEL, "template": {"id": "promo", "data": {"code": "A"}}}
    first = (await gateway.client.post("/v1/publish", json=use)).json()["publish_id"]
    r = await gateway.client.put("/v1/templates/promo", json={"title": "Promo {{ data.code }}"})
    assert r.status_code == 200 and r.json()["version"] == 2
    second = (await gateway.client.post("/v1/publish", json=use)).json()["publish_id"]
    pinned = {"recipients": CHANNEL, "template": {"id": "promo", "version": 1, "data": {"code": "B"}}}
    third = (await gateway.client.post("/v1/publish", json=pinned)).json()["publish_id"]
    plain = {"recipients": CHANNEL, "notification": {"title": "No template"}}
    fourth = (await gateway.client.post("/v1/publish", json=plain)).json()["publish_id"]
    got = {p: (await gateway.client.get(f"/v1/publishes/{p}")).json() for p in (first, second, third, fourth)}
    assert got[first]["template"] == {"id": "promo", "version": 1}
    assert got[second]["template"] == {"id": "promo", "version": 2}
    assert got[third]["template"] == {"id": "promo", "version": 1}
    assert "template" not in got[fourth]
    listed = {p["id"]: p.get("template") for p in (await gateway.client.get("/v1/publishes")).json()["items"]}
    assert listed == {
        first: got[first]["template"],
        second: got[second]["template"],
        third: got[third]["template"],
        fourth: None,
    }
