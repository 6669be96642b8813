"""Review findings on issue 12 (6, 10): failure reasons read within a bound, and the edges of
client publish ids (dry runs, a key given after the id), on both databases."""

from __future__ import annotations

import time

import sqlalchemy as sa
from support.gateway import Gateway

from pushgate.store.apps import AppStore
from pushgate.store.db import Database
from pushgate.store.publishes import PublishStore
from pushgate.store.publishes.campaigns import campaign_totals, failure_reasons
from pushgate.store.publishes.model import PublishTags
from pushgate.store.schema import deliveries, publish_stats

NOTE = {"title": "Hello", "body": "World"}
GONE = ("device_terminal", "UNREGISTERED")


async def test_failure_reasons_are_bounded_and_left_out_of_lists(db: Database) -> None:
    """A publish's reasons come from at most ``max_rows`` of its failed records (``truncated``
    beyond), campaign stats likewise; a page of publishes reads none."""
    app, _ = await AppStore(db).create("default")
    store = PublishStore(db)
    request = {"recipients": [{"type": "user", "user": "nobody"}], "notification": NOTE}
    pub, _ = await store.admit(
        app.id,
        request,
        idempotency_key=None,
        expire_at=None,
        window_seconds=60,
        tags=PublishTags(campaign="r", client_id="r-1"),
    )
    now = time.time()
    rows = [
        {"publish_id": pub.id, "recipient_id": f"dev_{n}", "provider": "fcm", "status": "invalid_token",
         "error_class": GONE[0], "error_code": GONE[1], "updated_at": now}
        for n in range(3)
    ]  # fmt: skip
    async with db.write() as conn:
        await conn.execute(sa.insert(deliveries), rows)
        await conn.execute(
            sa.insert(publish_stats),
            [{"publish_id": pub.id, "provider": "fcm", "planned": 3, "invalid_token": 3}],
        )
    one = await store.get(app.id, "r-1")
    assert one is not None
    assert (one.failures, one.failures_truncated) == ([(*GONE, 3)], False)
    async with db.read() as conn:
        assert await failure_reasons(conn, pub.id, 3, max_rows=2) == ([(*GONE, 2)], True)
        assert await failure_reasons(conn, pub.id, 3, max_rows=3) == ([(*GONE, 3)], False)
        assert await failure_reasons(conn, pub.id, 0) == ([], False)  # counters say none: no read
    [listed], _ = await store.list_publishes(app.id, cursor=None, limit=10)
    assert listed.id == pub.id and listed.failures is None and listed.counts["invalid_token"] == 3
    whole = await campaign_totals(db, app.id, "r")
    assert (whole.reasons, whole.reasons_truncated) == ([(*GONE, 3)], False)
    some = await campaign_totals(db, app.id, "r", max_reason_rows=2)
    assert (some.reasons, some.reasons_truncated) == ([(*GONE, 2)], True)


async def test_a_dry_run_takes_no_publish_id_or_idempotency_key(gateway: Gateway) -> None:
    """A dry run with either id is a 400 (it would use the id up: the real send would replay
    the dry run); in a batch, that item's error."""
    body = {"recipients": [{"type": "user", "user": "nobody"}], "notification": NOTE, "dry_run": True}
    for field, value in (("publish_id", "launch-1"), ("idempotency_key", "k-launch")):
        r = await gateway.client.post("/v1/publish", json={**body, field: value})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["message"].startswith(f"{field}: a dry run"), r.text
    r = await gateway.client.post(
        "/v1/publish/batch", json={"publishes": [{**body, "publish_id": "launch-1"}]}
    )
    assert r.status_code == 202 and r.json()["rejected"] == 1, r.text
    # The real send then takes the id as new.
    real = {k: v for k, v in body.items() if k != "dry_run"}
    r = await gateway.client.post("/v1/publish", json={**real, "publish_id": "launch-1"})
    assert r.status_code == 202 and "Idempotent-Replayed" not in r.headers, r.text


async def test_a_key_given_after_the_publish_id_is_stored(gateway: Gateway) -> None:
    """``publish_id`` alone, then with a key: the key is stored, so the key alone later answers
    the same publish (single and batch)."""
    body = {"recipients": [{"type": "user", "user": "nobody"}], "notification": NOTE}
    r = await gateway.client.post("/v1/publish", json={**body, "publish_id": "solo-1"})
    assert r.status_code == 202, r.text
    for extra in ({"publish_id": "solo-1", "idempotency_key": "k-solo"}, {"idempotency_key": "k-solo"}):
        r = await gateway.client.post("/v1/publish", json={**body, **extra})
        assert (r.status_code, r.json()["publish_id"], r.headers.get("Idempotent-Replayed")) == (
            202,
            "solo-1",
            "true",
        ), r.text
    r = await gateway.client.post("/v1/publish", json={**body, "publish_id": "solo-2"})
    items = [
        {**body, "publish_id": "solo-2", "idempotency_key": "k-two"},
        {**body, "idempotency_key": "k-two"},
    ]
    r = await gateway.client.post("/v1/publish/batch", json={"publishes": items})
    assert [(i["publish_id"], i.get("replayed")) for i in r.json()["items"]] == [
        ("solo-2", True),
        ("solo-2", True),
    ], r.text
    r = await gateway.client.post("/v1/publish", json={**body, "idempotency_key": "k-two"})
    assert r.json()["publish_id"] == "solo-2" and r.headers.get("Idempotent-Replayed") == "true"
    listed = (await gateway.client.get("/v1/publishes")).json()["items"]
    assert sorted(p["id"] for p in listed) == ["solo-1", "solo-2"]
