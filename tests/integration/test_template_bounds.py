"""Templates that would exhaust memory or CPU (review of issue 12, findings 1, 2, 5 and 8), on
both databases, at the lab: refused with a 400 naming the field where admission can know, else
failing only the devices concerned (``payload``/``template_error``) while the others are served.
"""

from __future__ import annotations

from typing import Any

from support.api import fcm_token, register
from support.gateway import Gateway
from support.lab import Lab

#: About 15 s of CPU without a render deadline (the reviewer's measure).
HEAVY = "{% for c in 'x'*512 %}{% if (('y'*8192)|list|sort|sort|sort|length) < 0 %}{% endif %}{% endfor %}"
#: A terabyte of bytes: MemoryError when it was reachable.
BOMB = "{{ (1).to_bytes(2**40, 'big') }}"


async def _template(gateway: Gateway, body: dict[str, Any]) -> None:
    r = await gateway.client.post("/v1/templates", json=body)
    assert r.status_code == 201, r.text


async def _publish(gateway: Gateway, devices: list[dict[str, Any]], **body: Any) -> Any:
    recipients = [{"type": "device", "device_id": d["id"]} for d in devices]
    return await gateway.client.post("/v1/publish", json={"recipients": recipients, **body})


async def test_bombs_and_heavy_templates_fail_only_their_devices(gateway: Gateway, lab: Lab) -> None:
    title = (
        f"{{% if device.meta.x == 'boom' %}}{BOMB}{{% elif device.meta.x == 'slow' %}}{HEAVY}"
        "{% endif %}Hi {{ device.meta.x }}"
    )
    await _template(gateway, {"id": "trap", "title": title})
    devices = {
        x: await register(gateway, provider="fcm", token=fcm_token(), platform="android", meta={"x": x})
        for x in ("boom", "slow", "ok")
    }
    r = await _publish(gateway, list(devices.values()), template={"id": "trap"})
    assert r.status_code == 202, r.text
    done = await gateway.wait_done(r.json()["publish_id"])
    assert (done["status"], done["counts"]["sent"], done["counts"]["failed"]) == ("completed", 1, 2), done
    by_device = {d["device_id"]: d for d in await gateway.deliveries(r.json()["publish_id"])}
    assert by_device[devices["ok"]["id"]]["status"] == "sent"
    for x in ("boom", "slow"):
        failed = by_device[devices[x]["id"]]
        assert (failed["status"], failed["error_class"], failed["error_code"]) == (
            "failed",
            "payload",
            "template_error",
        ), failed
    assert "not allowed by the sandbox" in by_device[devices["boom"]["id"]]["error_message"]
    assert "took longer than" in by_device[devices["slow"]["id"]]["error_message"]
    items = lab.ledger("fcm")["items"]
    assert [i["message"]["notification"]["title"] for i in items] == ["Hi ok"]


async def test_admission_refuses_bombs_heavy_templates_and_deep_data(gateway: Gateway) -> None:
    d = await register(gateway, provider="fcm", token=fcm_token(), platform="android")
    await _template(gateway, {"id": "bomb", "title": BOMB})
    await _template(gateway, {"id": "grow", "title": "{{ ('x'.encode().ljust(10**8)) | length }}"})
    await _template(gateway, {"id": "heavy", "body": HEAVY})
    await _template(gateway, {"id": "plain", "title": "Hi {{ data.a | default('') }}"})
    for template, field in (
        ("bomb", "template.title"),
        ("grow", "template.title"),
        ("heavy", "template.body"),
    ):
        r = await _publish(gateway, [d], template={"id": template})
        assert r.status_code == 400, (template, r.text)
        assert r.json()["error"]["message"].startswith(f"{field}: "), r.text
    r = await _publish(gateway, [d], template={"id": "heavy"})
    assert "took longer than" in r.json()["error"]["message"]

    nested: Any = "leaf"
    for _ in range(800):
        nested = {"a": nested}
    r = await _publish(gateway, [d], template={"id": "plain", "data": {"a": nested}})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"].startswith("template.data: "), r.text
    r = await gateway.client.post(
        "/v1/publish/preview",
        json={
            "recipients": [{"type": "device", "device_id": d["id"]}],
            "template": {"id": "plain", "data": {"a": nested}},
        },
    )
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("template.data: "), r.text


async def test_unknown_inline_localization_keys_are_a_400(gateway: Gateway) -> None:
    d = await register(gateway, provider="fcm", token=fcm_token(), platform="android")
    body = {"notification": {"title": "Hello"}, "localizations": {"de": {"titel": "Hallo"}}}
    r = await _publish(gateway, [d], **body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"].startswith("localizations.de.titel: "), r.text
    recipients = [{"type": "device", "device_id": d["id"]}]
    r = await gateway.client.post("/v1/publish/preview", json={"recipients": recipients, **body})
    assert r.status_code == 400 and "localizations.de.titel" in r.text, r.text
    ok = {"notification": {"title": "Hello"}, "localizations": {"de": {"title": "Hallo"}}}
    assert (await _publish(gateway, [d], **ok)).status_code == 202


async def test_a_template_with_deeply_nested_providers_is_a_400(gateway: Gateway) -> None:
    nested = '{"a":' * 900 + '"leaf"' + "}" * 900  # written by hand: too deep for json.dumps
    body = '{"id": "deep", "title": "Hi", "providers": {"fcm": {"message": ' + nested + "}}}"
    r = await gateway.client.post("/v1/templates", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text[-300:]
    assert r.json()["error"]["message"].startswith("providers: nested "), r.text


async def test_versions_beyond_the_database_integer_are_a_400(gateway: Gateway) -> None:
    """CI's fuzzing found ``?version=<30 digits>`` a 500 (the database refused the number)."""
    await _template(gateway, {"id": "v", "title": "Hi"})
    huge = 2**31
    r = await gateway.client.get(f"/v1/templates/v?version={huge}")
    assert r.status_code == 400, r.text
    r = await gateway.client.get(f"/v1/templates/v?version={huge - 1}")
    assert r.status_code == 404, r.text
    d = await register(gateway, provider="fcm", token=fcm_token(), platform="android")
    r = await _publish(gateway, [d], template={"id": "v", "version": huge})
    assert r.status_code == 400, r.text
    assert "version" in r.text
