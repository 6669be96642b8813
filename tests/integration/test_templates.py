"""Templates and localization end to end (docs/templates.md), on both databases, at the lab.

Issue 12's acceptance 1 and 2: a template with ``en``/``de``/``pt-BR`` variants reaches devices
of five locales with the right text (read at the lab's ledger, Web Push decrypted there), an
edit after admission changes nothing for that publish; sandbox escapes and undefined variables
are a 400 at admission where knowable and a ``payload`` outcome of only the devices concerned
otherwise.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import re
import time
from typing import Any

from support.api import fcm_token, ledger_token, register
from support.gateway import Gateway
from support.lab import Lab

from pushgate.domain.timefmt import rfc3339
from pushgate.store.db import Database
from pushgate.store.templates import TemplateStore

ORDER_SHIPPED: dict[str, Any] = {
    "id": "order_shipped",
    "title": "Order {{ data.order }} shipped",
    "body": "Hi {{ device.meta.name }}, {{ user.id }}'s parcel is on its way",
    "data": {"order": "{{ data.order }}", "lang": "en"},
    "locales": {
        "en": {},
        "de": {
            "title": "Bestellung {{ data.order }} versandt",
            "body": "Hallo {{ device.meta.name }}, das Paket von {{ user.id }} ist unterwegs",
            "data": {"lang": "de"},
        },
        "pt-BR": {
            "title": "Pedido {{ data.order }} enviado",
            "body": "Olá {{ device.meta.name }}, o pacote de {{ user.id }} está a caminho",
            "data": {"lang": "pt-BR"},
        },
    },
    "default_locale": "en",
}


async def create_template(gateway: Gateway, body: dict[str, Any]) -> dict[str, Any]:
    r = await gateway.client.post("/v1/templates", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def delivered(lab: Lab, device: dict[str, Any]) -> list[dict[str, Any]]:
    """What the lab received for ``device``: ``{"title", "body", "data"}`` per push (FCM's
    message, or the decrypted Web Push payload), each push's message ids checked and left out
    (docs/receipts.md)."""
    out = []
    for item in lab.ledger(device["provider"], ledger_token(device))["items"]:
        if device["provider"] == "webpush":
            p = item["payload"]
            assert p.pop("pushgate")["d"] == device["id"]
            out.append({"title": p.get("title"), "body": p.get("body"), "data": p.get("data")})
        else:
            m = item["message"]
            data = dict(m.get("data") or {})
            assert json.loads(data.pop("pushgate"))["d"] == device["id"]
            out.append({**m["notification"], "data": data or None})
    return out


def expected(title: str, body: str, lang: str) -> list[dict[str, Any]]:
    return [{"title": title, "body": body, "data": {"order": "A-17", "lang": lang}}]


async def test_locale_variants_reach_each_device_and_a_later_edit_changes_nothing(
    gateway: Gateway, lab: Lab
) -> None:
    await create_template(gateway, ORDER_SHIPPED)
    devices = {
        "de-AT": await register(
            gateway, provider="fcm", token=fcm_token(), platform="android", locale="de-AT",
            user="u-de", meta={"name": "Anna"},
        ),
        "pt-BR": await register(
            gateway, provider="webpush", token=lab.subscription(), platform="web", locale="pt-BR",
            user="u-br", meta={"name": "Bia"},
        ),
        "pt-PT": await register(
            gateway, provider="fcm", token=fcm_token(), platform="android", locale="pt_PT",
            user="u-pt", meta={"name": "Carla"},
        ),
        "fr": await register(
            gateway, provider="fcm", token=fcm_token(), platform="android", locale="fr",
            user="u-fr", meta={"name": "Dan"},
        ),
        None: await register(
            gateway, provider="webpush", token=lab.subscription(), platform="web", user="u-none",
            meta={"name": "Eve"},
        ),
    }  # fmt: skip
    # Scheduled a moment ahead, so the edit below certainly lands before the publish is sent.
    r = await gateway.client.post(
        "/v1/publish",
        json={
            "recipients": [{"type": "device", "device_id": d["id"]} for d in devices.values()],
            "template": {"id": "order_shipped", "data": {"order": "A-17"}},
            "send_at": rfc3339(time.time() + 1.5),
        },
    )
    assert r.status_code == 202, r.text
    publish_id = r.json()["publish_id"]
    edited = {k: v for k, v in ORDER_SHIPPED.items() if k != "id"}
    edited["locales"] = {**ORDER_SHIPPED["locales"], "de": {"title": "GEÄNDERT {{ data.order }}"}}
    r = await gateway.client.put("/v1/templates/order_shipped", json=edited)
    assert (r.status_code, r.json()["version"]) == (200, 2)

    done = await gateway.wait_done(publish_id)
    assert done["counts"]["sent"] == 5, done
    assert delivered(lab, devices["de-AT"]) == expected(
        "Bestellung A-17 versandt", "Hallo Anna, das Paket von u-de ist unterwegs", "de"
    )
    assert delivered(lab, devices["pt-BR"]) == expected(
        "Pedido A-17 enviado", "Olá Bia, o pacote de u-br está a caminho", "pt-BR"
    )
    # No pt-PT nor pt variant: another Portuguese variant rather than the default language.
    assert delivered(lab, devices["pt-PT"]) == expected(
        "Pedido A-17 enviado", "Olá Carla, o pacote de u-pt está a caminho", "pt-BR"
    )
    english = ("Order A-17 shipped", "Hi {}, {}'s parcel is on its way", "en")
    assert delivered(lab, devices["fr"]) == expected(english[0], english[1].format("Dan", "u-fr"), "en")
    assert delivered(lab, devices[None]) == expected(english[0], english[1].format("Eve", "u-none"), "en")

    # A publish after the edit uses version 2.
    r = await gateway.client.post(
        "/v1/publish",
        json={
            "recipients": [{"type": "device", "device_id": devices["de-AT"]["id"]}],
            "template": {"id": "order_shipped", "data": {"order": "B-2"}},
        },
    )
    await gateway.wait_done(r.json()["publish_id"])
    assert [d["title"] for d in delivered(lab, devices["de-AT"])] == [
        "Bestellung A-17 versandt",
        "GEÄNDERT B-2",
    ]


async def test_sandbox_escapes_and_undefined_variables(gateway: Gateway, lab: Lab) -> None:
    await create_template(gateway, {"id": "escape", "title": "{{ ''.__class__.__mro__ }}"})
    await create_template(
        gateway, {"id": "hello", "title": "Hi {{ device.meta.name }}", "body": "{{ data.what }}"}
    )
    named = await register(
        gateway, provider="fcm", token=fcm_token(), platform="android", meta={"name": "Ann"}
    )
    nameless = await register(gateway, provider="fcm", token=fcm_token(), platform="android")
    web_nameless = await register(gateway, provider="webpush", token=lab.subscription(), platform="web")
    everyone = [{"type": "device", "device_id": d["id"]} for d in (named, nameless, web_nameless)]

    async def publish(template: dict[str, Any]) -> Any:
        return await gateway.client.post("/v1/publish", json={"recipients": everyone, "template": template})

    r = await publish({"id": "escape"})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == (
        "template.title: not allowed by the sandbox: "
        "access to attribute '__class__' of 'str' object is unsafe."
    )
    r = await publish({"id": "hello", "data": {"other": 1}})
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("template.body: data.what is undefined")
    r = await publish({"id": "nope"})
    assert (r.status_code, r.json()["error"]["message"]) == (
        400,
        "template.id: no template 'nope' (GET /v1/templates lists them)",
    )
    # The batch route answers the same per item, and admits the valid ones.
    r = await gateway.client.post(
        "/v1/publish/batch",
        json={"publishes": [{"recipients": everyone, "template": {"id": "escape"}}]},
    )
    assert r.json()["items"][0]["error"]["message"].startswith("template.title: not allowed by the sandbox")

    # Knowable only per device: those without the variable fail alone, with the message.
    r = await publish({"id": "hello", "data": {"what": "news"}})
    assert r.status_code == 202, r.text
    done = await gateway.wait_done(r.json()["publish_id"])
    assert (done["counts"]["sent"], done["counts"]["failed"]) == (1, 2)
    by_device = {d["device_id"]: d for d in await gateway.deliveries(r.json()["publish_id"])}
    assert by_device[named["id"]]["status"] == "sent"
    for d in (nameless, web_nameless):
        failed = by_device[d["id"]]
        assert (failed["status"], failed["error_class"], failed["error_code"], failed["attempts"]) == (
            "failed", "payload", "template_error", 1,
        )  # fmt: skip
        assert failed["error_message"] == (
            "template.title: device.meta.name is undefined (give it, or use '| default(...)')"
        )
    assert delivered(lab, named) == [{"title": "Hi Ann", "body": "news", "data": None}]
    assert delivered(lab, nameless) == [] and delivered(lab, web_nameless) == []


async def test_every_locale_variant_is_size_checked(gateway: Gateway) -> None:
    await create_template(
        gateway,
        {
            "id": "big",
            "title": "Hi",
            "locales": {
                "de": {"data": {"a": "x" * 2500, "b": "x" * 2000}},
                "fr": {"data": {"a": "y" * 2500, "b": "y" * 2500}},
                "it": {"data": {"a": "z" * 10}},
            },
        },
    )
    d = await register(gateway, provider="fcm", token=fcm_token(), platform="android")
    r = await gateway.client.post(
        "/v1/publish",
        json={"recipients": [{"type": "device", "device_id": d["id"]}], "template": {"id": "big"}},
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["details"]["locale"] == "fr"  # the largest variant decides
    assert "(in locale 'fr')" in error["message"]


async def test_inline_localizations_without_a_template(gateway: Gateway, lab: Lab) -> None:
    fr = await register(gateway, provider="fcm", token=fcm_token(), platform="android", locale="fr-CA")
    en = await register(gateway, provider="fcm", token=fcm_token(), platform="android", locale="en-US")
    r = await gateway.client.post(
        "/v1/publish",
        json={
            "recipients": [{"type": "device", "device_id": d["id"]} for d in (fr, en)],
            "notification": {"title": "Hello", "body": "Sale today"},
            "localizations": {"fr": {"title": "Bonjour", "body": "Soldes"}},
        },
    )
    assert r.status_code == 202, r.text
    assert (await gateway.wait_done(r.json()["publish_id"]))["counts"]["sent"] == 2
    assert delivered(lab, fr) == [{"title": "Bonjour", "body": "Soldes", "data": None}]
    assert delivered(lab, en) == [{"title": "Hello", "body": "Sale today", "data": None}]


async def test_template_versions_and_errors(gateway: Gateway) -> None:
    made = await create_template(gateway, {"id": "t1", "title": "v1 {{ data.x }}"})
    assert (made["id"], made["version"], made["title"]) == ("t1", 1, "v1 {{ data.x }}")
    r = await gateway.client.post("/v1/templates", json={"id": "t1", "title": "again"})
    assert r.status_code == 409
    r = await gateway.client.put("/v1/templates/t1", json={"title": "v2"})
    assert (r.json()["version"], r.json()["title"], r.json()["created_at"]) == (2, "v2", made["created_at"])
    assert (await gateway.client.get("/v1/templates/t1")).json()["title"] == "v2"
    assert (await gateway.client.get("/v1/templates/t1", params={"version": 1})).json()[
        "title"
    ] == "v1 {{ data.x }}"
    assert (await gateway.client.get("/v1/templates/t1", params={"version": 3})).status_code == 404
    assert [t["id"] for t in (await gateway.client.get("/v1/templates")).json()["items"]] == ["t1"]
    r = await gateway.client.post(
        "/v1/templates", json={"id": "bad", "locales": {"de": {"body": "{% for %}"}}}
    )
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("locales.de.body: syntax error on line 1")
    r = await gateway.client.post("/v1/templates", json={"id": "bad", "title": "x", "default_locale": "de"})
    assert (r.status_code, r.json()["error"]["message"]) == (
        400,
        "default_locale: 'de' is not one of locales (none given)",
    )
    assert (await gateway.client.delete("/v1/templates/t1")).status_code == 204
    assert (await gateway.client.get("/v1/templates/t1")).status_code == 404
    assert (await gateway.client.put("/v1/templates/t1", json={"title": "x"})).status_code == 404
    assert (await gateway.client.delete("/v1/templates/t1")).status_code == 404
    again = await create_template(gateway, {"id": "t1", "title": "new life"})
    assert again["version"] == 3
    assert (await gateway.client.get("/v1/templates/t1", params={"version": 1})).status_code == 404


async def test_batch_items_and_older_versions(gateway: Gateway, lab: Lab) -> None:
    await create_template(gateway, {"id": "promo", "title": "v1 {{ data.code }}"})
    r = await gateway.client.put("/v1/templates/promo", json={"title": "v2 {{ data.code }}"})
    assert r.json()["version"] == 2
    d = await register(gateway, provider="fcm", token=fcm_token(), platform="android")
    to = [{"type": "device", "device_id": d["id"]}]
    r = await gateway.client.post(
        "/v1/publish/batch",
        json={
            "publishes": [
                {"recipients": to, "template": {"id": "promo", "data": {"code": "A"}}},
                {"recipients": to, "template": {"id": "promo", "data": {}}},
                {"recipients": to, "template": {"id": "promo", "version": 1, "data": {"code": "B"}}},
                {"recipients": to, "template": {"id": "promo", "version": 3, "data": {"code": "C"}}},
            ]
        },
    )
    items = r.json()["items"]
    assert items[1]["error"]["message"].startswith("template.title: data.code is undefined")
    assert (
        items[3]["error"]["message"]
        == "template.id: no version 3 of template 'promo' (GET /v1/templates lists them)"
    )
    for item in (items[0], items[2]):
        await gateway.wait_done(item["publish_id"])
    assert sorted(x["title"] for x in delivered(lab, d)) == ["v1 B", "v2 A"]


# -- docs/templates.md ---------------------------------------------------------------------------

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "templates.md"
#: Answer fields that differ from run to run: compared by kind, not value.
VARYING = ("publish_id", "status", "created_at", "updated_at")


def doc_exchanges() -> list[tuple[str, str, Any, int, Any]]:
    """``(method, path, body, status, answer)`` for each request block and the response after it."""
    blocks = re.findall(r"```http\n(.*?)```", DOC.read_text(), re.S)
    out = []
    for request, response in zip(blocks[::2], blocks[1::2], strict=True):
        head, _, body = request.partition("\n\n")
        method, path = head.split()
        status_line, _, answer = response.partition("\n\n")
        assert status_line.startswith("HTTP/1.1 "), status_line
        parsed = json.loads(answer) if answer.strip() else None
        out.append(
            (method, path, json.loads(body) if body.strip() else None, int(status_line.split()[1]), parsed)
        )
    return out


def steady(answer: Any) -> Any:
    if isinstance(answer, dict):
        return {k: (type(v).__name__ if k in VARYING else steady(v)) for k, v in answer.items()}
    return answer


async def test_the_docs_examples_answer_as_written(gateway: Gateway) -> None:
    exchanges = doc_exchanges()
    assert len(exchanges) >= 8
    for method, path, body, status, answer in exchanges:
        r = await gateway.client.request(method, path, json=body)
        got = r.json() if r.content else None
        assert (r.status_code, steady(got)) == (status, steady(answer)), (method, path, r.text)


async def test_concurrent_writes_each_add_their_own_version(db: Database) -> None:
    store = TemplateStore(db)
    await store.create("app_1", "t", {"title": "v1"})
    written = await asyncio.gather(*(store.replace("app_1", "t", {"title": f"w{i}"}) for i in range(6)))
    assert sorted(t.version for t in written if t is not None) == [2, 3, 4, 5, 6, 7]
    current = await store.get("app_1", "t")
    assert current is not None and current.version == 7
    by_version = {t.version: t.body["title"] for t in written if t is not None}
    for version, title in by_version.items():
        got = await store.get("app_1", "t", version)
        assert got is not None and got.body == {"title": title}
    assert await store.get("app_2", "t") is None  # per app
