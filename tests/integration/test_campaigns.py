"""Campaigns, labels, failure reasons, client-chosen publish ids and dry runs (issue 12's
acceptance 4-6), through the real gateway, queue and provider lab, on both databases."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from support.api import deliveries, fcm_token, publish, publish_status, register, wait_final
from support.gateway import Gateway, gateway_settings, running_gateway
from support.lab import Lab

from pushgate.store.apps import AppStore
from pushgate.store.db import Database
from pushgate.store.publishes import PublishStore
from pushgate.store.publishes.campaigns import campaign_totals
from pushgate.store.publishes.model import PublishTags

NOTE = {"title": "Hello", "body": "World"}
COUNTERS = (
    *("planned", "sent", "failed", "invalid_token", "retrying", "expired", "cancelled"),
    *("suppressed", "skipped", "held", "dry_run"),
    # Receipts (docs/receipts.md).
    *("delivered", "opened", "dismissed", "clicked"),
)


async def _fcm(gw: Gateway, channel: str, **extra: Any) -> dict[str, Any]:
    return await register(
        gw, provider="fcm", token=fcm_token(), platform="android", channels=[channel], **extra
    )


def _served(lab: Lab, devices: list[dict[str, Any]]) -> int:
    return sum(int(lab.ledger("fcm", token=d["token"])["total"]) for d in devices)


async def _dry(client: httpx.AsyncClient, **body: Any) -> str:
    """``POST /v1/publish`` with ``dry_run``: 200 with the finished dry run, or 202 if it took
    longer than the route waits; returns its id."""
    body.setdefault("notification", NOTE)
    r = await client.post("/v1/publish", json={**body, "dry_run": True})
    assert r.status_code in (200, 202), r.text
    return str(r.json()["id"] if r.status_code == 200 else r.json()["publish_id"])


def _error(r: httpx.Response, field: str) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"].startswith(f"{field}:"), r.text


# ---- acceptance 6: client-chosen publish ids ---------------------------------------------------


async def test_a_client_publish_id_is_one_publish_per_app(gateway: Gateway, lab: Lab) -> None:
    device = await _fcm(gateway, "orders")
    body = {"recipients": [{"type": "device", "device_id": device["id"]}], "notification": NOTE}
    first = await gateway.client.post("/v1/publish", json={**body, "publish_id": "order-1.shipped"})
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers, first.text
    assert first.json()["publish_id"] == "order-1.shipped"
    again = await gateway.client.post("/v1/publish", json={**body, "publish_id": "order-1.shipped"})
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true", again.text
    assert again.json()["publish_id"] == "order-1.shipped"
    done = await wait_final(gateway.client, "order-1.shipped", 20)
    assert done["id"] == "order-1.shipped" and done["server_id"].startswith("pub_")
    assert done["counts"]["sent"] == 1 and done["reasons"] == []
    assert _served(lab, [device]) == 1  # one publish, one push
    # Every route with a publish id takes the client's, and the server's names the same publish.
    assert (await publish_status(gateway.client, done["server_id"]))["id"] == "order-1.shipped"
    [record] = await deliveries(gateway.client, "order-1.shipped")
    assert record["device_id"] == device["id"] and record["status"] == "sent"
    listed = (await gateway.client.get("/v1/publishes")).json()["items"]
    assert [p["id"] for p in listed] == ["order-1.shipped"]
    for path in ("/v1/publishes/nope", "/v1/publishes/nope/deliveries"):
        assert (await gateway.client.get(path)).status_code == 404
    assert (await gateway.client.post("/v1/publishes/nope/cancel")).status_code == 404

    # Concurrently, twice: one publish, the other answer replays it.
    answers = await asyncio.gather(
        *(gateway.client.post("/v1/publish", json={**body, "publish_id": "order-2"}) for _ in range(2))
    )
    assert [r.status_code for r in answers] == [202, 202]
    assert sorted(r.headers.get("Idempotent-Replayed", "") for r in answers) == ["", "true"]
    await wait_final(gateway.client, "order-2", 20)
    listed = (await gateway.client.get("/v1/publishes")).json()["items"]
    assert sorted(p["id"] for p in listed) == ["order-1.shipped", "order-2"]

    # Another app: the same id is its own publish.
    _, key = await gateway.app.state.services.apps.create("other")
    async with gateway.as_app(key) as other:
        mine = await other.post(
            "/v1/publish",
            json={
                "recipients": [{"type": "user", "user": "nobody"}],
                "notification": NOTE,
                "publish_id": "order-2",
            },
        )
        assert mine.status_code == 202 and "Idempotent-Replayed" not in mine.headers, mine.text
        theirs = await publish_status(other, "order-2")
        assert theirs["server_id"] != (await publish_status(gateway.client, "order-2"))["server_id"]
        assert theirs["counts"]["planned"] == 0


async def test_cancel_and_retime_by_client_id(gateway: Gateway) -> None:
    await _fcm(gateway, "later")
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    body = {"recipients": [{"type": "channel", "channel": "later"}], "notification": NOTE, "send_at": later}
    r = await gateway.client.post("/v1/publish", json={**body, "publish_id": "digest-7"})
    assert r.status_code == 202 and r.json() == {"publish_id": "digest-7", "status": "scheduled"}, r.text
    later2 = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    r = await gateway.client.patch("/v1/publishes/digest-7", json={"send_at": later2})
    assert r.status_code == 200 and r.json()["id"] == "digest-7", r.text
    r = await gateway.client.post("/v1/publishes/digest-7/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["id"] == "digest-7"


async def test_idempotency_key_and_publish_id_together(gateway: Gateway) -> None:
    body = {"recipients": [{"type": "user", "user": "nobody"}], "notification": NOTE}
    r = await gateway.client.post("/v1/publish", json={**body, "idempotency_key": "k1", "publish_id": "p1"})
    assert r.status_code == 202 and r.json()["publish_id"] == "p1", r.text
    # The same pair again, or either one alone: the same publish.
    for extra in (
        {"idempotency_key": "k1", "publish_id": "p1"},
        {"idempotency_key": "k1"},
        {"publish_id": "p1"},
    ):
        r = await gateway.client.post("/v1/publish", json={**body, **extra})
        assert (r.status_code, r.json()["publish_id"], r.headers.get("Idempotent-Replayed")) == (
            202,
            "p1",
            "true",
        )
    # The key of one publish with another publish_id: contradictory.
    r = await gateway.client.post("/v1/publish", json={**body, "idempotency_key": "k1", "publish_id": "p2"})
    _error(r, "idempotency_key")
    # In a batch: the item's error; a publish_id repeated in the batch is one publish.
    items = [
        {**body, "publish_id": "b1"},
        {**body, "publish_id": "b1"},
        {**body, "idempotency_key": "k1", "publish_id": "p3"},
        {**body, "publish_id": "pub_mine"},
    ]
    r = await gateway.client.post("/v1/publish/batch", json={"publishes": items})
    assert r.status_code == 202, r.text
    out = r.json()
    assert [i.get("publish_id") for i in out["items"]] == ["b1", "b1", None, None]
    assert [i.get("replayed", False) for i in out["items"][:2]] == [False, True]
    assert out["items"][2]["error"]["message"].startswith("idempotency_key:")
    assert out["items"][3]["error"]["message"].startswith("publish_id:")
    assert (out["admitted"], out["rejected"]) == (2, 2)
    listed = (await gateway.client.get("/v1/publishes")).json()["items"]
    assert sorted(p["id"] for p in listed) == ["b1", "p1"]


async def test_bad_campaign_fields_are_400s(gateway: Gateway) -> None:
    body = {"recipients": [{"type": "user", "user": "u"}], "notification": NOTE}
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"publish_id": "pub_0123"}, "publish_id"),
        ({"publish_id": "a/b"}, "publish_id"),
        ({"publish_id": "-lead"}, "publish_id"),
        ({"publish_id": "x" * 201}, "publish_id"),
        ({"campaign": "a/b"}, "campaign"),
        ({"campaign": ""}, "campaign"),
        ({"campaign": "x" * 201}, "campaign"),
        ({"labels": {f"k{i}": "v" for i in range(17)}}, "labels"),
        ({"labels": {"bad key": "v"}}, "labels"),
        ({"labels": {"k": "v" * 201}}, "labels[...]"),
        ({"labels": {"k" * 65: "v"}}, "labels"),
        ({"labels": {"": "v"}}, "labels"),
        ({"dry_run": "yes"}, "dry_run"),
        ({"dry_run": True, "send_at": ahead}, "send_at"),
    ]
    for extra, field in cases:
        _error(await gateway.client.post("/v1/publish", json={**body, **extra}), field)
    assert (await gateway.client.get("/v1/publishes")).json()["items"] == []
    r = await gateway.client.get("/v1/publishes", params={"campaign": "x" * 201})
    assert r.status_code == 400, r.text


async def test_dead_letters_filter_and_reasons_by_client_id(database_url: str, lab: Lab) -> None:
    """Retryable failures that exhaust their attempts: dead letters found by the client id (and
    replayed by it), and the publish's reasons say why."""
    settings = gateway_settings(database_url, lab, PUSHGATE_RETRY_MAX_ATTEMPTS="2")
    async with running_gateway(settings) as gw:
        down = [await _fcm(gw, "dl"), await _fcm(gw, "dl")]
        await _fcm(gw, "dl")
        lab.fault(provider="fcm", tokens=[d["token"] for d in down], error="503")
        pid = await publish(gw.client, recipients=[{"type": "channel", "channel": "dl"}], publish_id="dl-1")
        done = await gw.wait_done(pid, within=20)
        assert pid == "dl-1" and done["counts"]["failed"] == 2 and done["counts"]["sent"] == 1
        assert done["reasons"] == [{"error_class": "provider_transient", "code": "UNAVAILABLE", "count": 2}]
        dead = (await gw.client.get("/v1/dead-letters", params={"publish_id": "dl-1"})).json()["items"]
        assert sorted(d["device_id"] for d in dead) == sorted(d["id"] for d in down)
        assert {d["publish_id"] for d in dead} == {done["server_id"]}
        assert (await gw.client.get("/v1/dead-letters", params={"publish_id": "dl-2"})).json()["items"] == []
        # By ids, naming the publish by its client id (review finding 7); an unknown one matches none.
        ids = [{"publish_id": "dl-1", "recipient_id": dead[0]["recipient_id"]}]
        ids.append({"publish_id": "dl-2", "recipient_id": dead[1]["recipient_id"]})
        r = await gw.client.post("/v1/dead-letters/replay", json={"ids": ids})
        assert r.status_code == 200 and (r.json()["replayed"], r.json()["skipped"]) == (1, 0), r.text
        r = await gw.client.post("/v1/dead-letters/replay", json={"filter": {"publish_id": "dl-1"}})
        assert r.status_code == 200 and r.json()["replayed"] == 1, r.text


# ---- acceptance 4: dry runs ---------------------------------------------------------------------


async def test_a_dry_run_counts_what_the_real_publish_then_does(gateway: Gateway, lab: Lab) -> None:
    """Preferences (suppressed), ``no_timezone: skip`` (skipped), devices of three locales: the dry
    run's counts are the real publish's, its ``dry_run`` count is the real ``sent``, and the lab
    receives nothing from the dry run."""
    r = await gateway.client.post("/v1/categories", json={"id": "news", "default_opt_in": True})
    assert r.status_code == 201, r.text
    zone = {"timezone": "UTC"}
    devices = [
        await _fcm(gateway, "dry", user="ann", locale="de", **zone),
        await _fcm(gateway, "dry", user="ann", locale="fr", **zone),
        await _fcm(gateway, "dry", user="bob", **zone),
        await _fcm(gateway, "dry", user="out", locale="de", **zone),  # opted out: suppressed
        await _fcm(gateway, "dry", user="cat"),  # no time zone: skipped
    ]
    r = await gateway.client.put("/v1/users/out/preferences/news", json={"opted_in": False})
    assert r.status_code == 200, r.text
    body = {
        "recipients": [{"type": "channel", "channel": "dry"}],
        "notification": {"title": "Sale", "body": "Today"},
        "category": "news",
        # The whole day: every device with a time zone goes now.
        "deliver_between": {"start": "00:00", "end": "23:59:59"},
        "no_timezone": "skip",
        "campaign": "spring",
        "labels": {"variant": "a"},
    }
    r = await gateway.client.post("/v1/publish", json={**body, "dry_run": True})
    assert r.status_code in (200, 202), r.text
    dry_id = r.json()["id"] if r.status_code == 200 else r.json()["publish_id"]
    dry = await wait_final(gateway.client, dry_id, 20)
    if r.status_code == 200:  # answered with the finished dry run
        assert r.json() == dry
    assert dry["dry_run"] is True and dry["status"] == "completed"
    assert (dry["campaign"], dry["labels"]) == ("spring", {"variant": "a"})
    assert dry["counts"]["sent"] == 0 and dry["counts"]["dry_run"] == 3
    assert (dry["suppressed_by_reason"], dry["skipped_by_reason"]) == ({"preference": 1}, {"no_timezone": 1})
    assert set(dry["samples"]) == {"fcm"} and set(dry["samples"]["fcm"]) == {"de", "fr", "default"}
    sample = dry["samples"]["fcm"]["de"]
    assert sample["body"]["message"]["notification"] == {"title": "Sale", "body": "Today"}
    assert sample["body"]["message"]["token"] == "<device token>"  # a placeholder, never a token
    statuses = Counter(d["status"] for d in await deliveries(gateway.client, dry_id))
    assert statuses == {"dry_run": 3, "suppressed": 1, "skipped": 1}
    assert _served(lab, devices) == 0

    real = await publish(gateway.client, **body)
    done = await wait_final(gateway.client, real, 20)
    assert done["counts"]["sent"] == dry["counts"]["dry_run"] == 3
    for c in ("planned", "suppressed", "skipped", "failed", "invalid_token", "expired"):
        assert done["counts"][c] == dry["counts"][c], c
    assert done["counts"]["dry_run"] == 0 and "samples" not in done and "dry_run" not in done
    assert _served(lab, devices) == 3  # the ledger does see real pushes
    listed = {p["id"]: p for p in (await gateway.client.get("/v1/publishes?campaign=spring")).json()["items"]}
    assert set(listed) == {dry_id, real} and listed[dry_id]["dry_run"] is True
    assert "samples" not in listed[dry_id]  # shown on one publish only


async def test_a_dry_run_waits_for_no_policy_hold_and_takes_no_cap(gateway: Gateway, lab: Lab) -> None:
    """A window closed now: the real publish would hold the devices; the dry run records them
    ``dry_run`` with the rule and release time, at once. A cap of one per device: two dry runs
    take nothing of it, the real publish after them is sent."""
    now = datetime.now(UTC)
    start = (now + timedelta(hours=2)).strftime("%H:%M")
    end = (now + timedelta(hours=3)).strftime("%H:%M")
    device = await _fcm(gateway, "held", timezone="UTC")
    body = {
        "recipients": [{"type": "channel", "channel": "held"}],
        "notification": NOTE,
        "deliver_between": {"start": start, "end": end},
    }
    dry = await _dry(gateway.client, **body)
    done = await wait_final(gateway.client, dry, 20)
    assert done["counts"]["dry_run"] == 1 and done["counts"]["held"] == 0
    [record] = await deliveries(gateway.client, dry)
    assert record["status"] == "dry_run" and record["reason"] == "delivery_window"
    assert record["release_at"] is not None and record["release_at"][11:16] == start
    cap = {"limit": 1, "window_seconds": 3600, "per": "device", "action": "drop"}
    capped = {"recipients": [{"type": "device", "device_id": device["id"]}], "notification": NOTE}
    for _ in range(2):
        d = await _dry(gateway.client, **capped, frequency_caps=[cap])
        assert (await wait_final(gateway.client, d, 20))["counts"]["dry_run"] == 1
    real = await publish(gateway.client, **capped, frequency_caps=[cap])
    assert (await wait_final(gateway.client, real, 20))["counts"]["sent"] == 1
    assert _served(lab, [device]) == 1


# ---- acceptance 5: campaign stats ------------------------------------------------------------


def _add(total: dict[tuple[Any, Any], int], reasons: list[dict[str, Any]]) -> None:
    for r in reasons:
        key = (r["error_class"], r["code"])
        total[key] = total.get(key, 0) + r["count"]


async def test_campaign_stats_add_up_across_publishes_with_faults(gateway: Gateway, lab: Lab) -> None:
    """Three publishes of one campaign, each with its own faults at the lab (FCM's three ways to
    refuse a token); a fourth publish of another campaign stays out."""
    tag = secrets.token_hex(3)
    plans = [{"unregistered": 1}, {"unregistered": 2, "invalid": 1}, {"sender_mismatch": 2}]
    pubs: list[str] = []
    for n, faults in enumerate(plans):
        channel = f"camp-{tag}-{n}"
        devices = [await _fcm(gateway, channel) for _ in range(3 + sum(faults.values()))]
        k = 0
        for error, count in faults.items():
            lab.fault(provider="fcm", tokens=[d["token"] for d in devices[k : k + count]], error=error)
            k += count
        pubs.append(
            await publish(
                gateway.client,
                recipients=[{"type": "channel", "channel": channel}],
                campaign=f"launch-{tag}",
                labels={"wave": str(n)},
            )
        )
    other = await publish(
        gateway.client, recipients=[{"type": "channel", "channel": f"camp-{tag}-0"}], campaign="other"
    )
    done = [await wait_final(gateway.client, p, 30) for p in pubs]
    await wait_final(gateway.client, other, 30)
    stats = (await gateway.client.get(f"/v1/campaigns/launch-{tag}/stats")).json()
    assert stats["publishes"] == 3 and stats["by_status"] == {"completed": 3}
    assert stats["counts"] == {c: sum(d["counts"][c] for d in done) for c in COUNTERS}
    assert stats["by_provider"] == {"fcm": stats["counts"]}
    assert stats["counts"]["invalid_token"] == 6 and stats["counts"]["sent"] == 9
    assert "truncated" not in stats
    total: dict[tuple[Any, Any], int] = {}
    for d in done:
        _add(total, d["reasons"])
    summed: dict[tuple[Any, Any], int] = {}
    _add(summed, stats["reasons"])
    assert summed == total
    assert summed == {
        ("device_terminal", "UNREGISTERED"): 3,
        ("device_terminal", "INVALID_ARGUMENT"): 1,
        ("device_terminal", "SENDER_ID_MISMATCH"): 2,
    }
    assert [r["count"] for r in stats["reasons"]] == [3, 2, 1]  # the most frequent first
    assert [d["labels"] for d in done] == [{"wave": "0"}, {"wave": "1"}, {"wave": "2"}]
    listed = (await gateway.client.get("/v1/publishes", params={"campaign": f"launch-{tag}"})).json()
    assert sorted(p["id"] for p in listed["items"]) == sorted(pubs)
    # Lists leave reasons out (finding 6: a page reads no delivery records); one publish has them.
    assert all(p["campaign"] == f"launch-{tag}" and "reasons" not in p for p in listed["items"])
    empty = (await gateway.client.get("/v1/campaigns/none/stats")).json()
    assert empty["publishes"] == 0 and empty["reasons"] == [] and empty["counts"]["planned"] == 0


async def test_campaign_stats_are_bounded_to_the_newest_publishes(db: Database) -> None:
    """Over ``max_publishes`` the newest are summed and the answer says ``truncated``."""
    app, _ = await AppStore(db).create("default")
    store = PublishStore(db)
    request = {"recipients": [{"type": "user", "user": "nobody"}], "notification": NOTE}
    for n in range(3):
        await store.admit(
            app.id,
            request,
            idempotency_key=None,
            expire_at=None,
            window_seconds=60,
            tags=PublishTags(campaign="c", client_id=f"c-{n}"),
        )
    await store.admit(app.id, request, idempotency_key=None, expire_at=None, window_seconds=60)
    whole = await campaign_totals(db, app.id, "c")
    assert (whole.publishes, whole.truncated, whole.by_status) == (3, False, {"accepted": 3})
    some = await campaign_totals(db, app.id, "c", max_publishes=2)
    assert (some.publishes, some.truncated) == (2, True)
    assert (await campaign_totals(db, app.id, "none")).publishes == 0
    pubs, _ = await store.list_publishes(app.id, cursor=None, limit=10, campaign="c")
    assert [p.client_id for p in pubs] == ["c-2", "c-1", "c-0"]
