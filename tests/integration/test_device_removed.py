"""A device deleted while its publish fans out is not sent to once the delete has returned
(issue 9, item 11). A dispatch job carries copies of its targets, so before each chunk it asks
which of them still exist and are active."""

from __future__ import annotations

import asyncio

import pytest
from support.api import paged, publish, register_fcm_batched
from support.gateway import Gateway
from support.lab import Lab
from support.wait import wait_for


@pytest.mark.timeout(120)
async def test_a_device_deleted_mid_fanout_is_not_sent_to(gateway: Gateway, lab: Lab) -> None:
    """300 devices are one batch of three 100-target chunks, each held 1 s by the lab. Once the
    first chunk has arrived, the device with the highest id (the last chunk: the planner goes by
    device id) is deleted; the lab never receives it, and its record says why."""
    n = 300
    await register_fcm_batched(gateway.client, "all", n)
    devices = await paged(gateway.client, "/v1/devices", channels="all")
    last = max(devices, key=lambda d: d["id"])
    lab.fault(provider="fcm", latency_ms=1000)
    pub_id = await publish(gateway.client, recipients=[{"type": "channel", "channel": "all"}])
    await wait_for(
        lambda: asyncio.to_thread(lambda: lab.ledger("fcm")["total"] >= 100), 30, "the first chunk"
    )
    r = await gateway.client.delete(f"/v1/devices/{last['id']}")
    assert r.status_code == 204, r.text
    assert lab.ledger("fcm")["total"] < 300, "the last chunk went out before the delete: no test"
    done = await gateway.wait_done(pub_id, within=60)
    assert lab.ledger("fcm", token=last["token"])["total"] == 0, "a deleted device was sent to"
    assert lab.ledger("fcm")["total"] == n - 1
    assert done["counts"]["sent"] == n - 1 and done["counts"]["failed"] == 1, done["counts"]
    failed = await gateway.deliveries(pub_id, status="failed")
    assert [(d["recipient_id"], d["error_code"], d["error_class"]) for d in failed] == [
        (last["id"], "device_removed", None)
    ]
