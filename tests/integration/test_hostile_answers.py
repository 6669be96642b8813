"""A push service that answers with a hostile body hurts only its own subscriber (issue 9, item 3).

Both reproductions go through the real gateway and the provider lab: one subscription's endpoint
answers 100,000 nested ``[`` (which used to crash the whole batch, so the job was re-claimed and
every other subscriber got the push again), or a body that never ends (which used to be read
into memory whole).
"""

from __future__ import annotations

from typing import Any

from support.api import endpoint, publish, register
from support.gateway import gateway_settings, running_gateway
from support.lab import Lab

#: A hostile answer body is read up to the cap (64 KiB) plus what the sockets and the client's
#: read buffer hold; whatever is written beyond that is what a full read would have taken.
WRITTEN_BOUND = 16 * 1024 * 1024
ENDLESS_BYTES = 64 * 1024 * 1024


async def _subscribers(
    gw: Any, lab: Lab, channel: str, n: int, *, listener: str = "h2"
) -> list[dict[str, Any]]:
    return [
        await register(
            gw, provider="webpush", token=lab.subscription(listener), platform="web", channels=[channel]
        )
        for _ in range(n)
    ]


def _fault(lab: Lab, token: str) -> dict[str, Any]:
    [fault] = [f for f in lab.faults() if f["tokens"] == [token]]
    return fault


async def test_deep_json_answer_is_its_targets_outcome_only(database_url: str, lab: Lab) -> None:
    # A cap above the 100,000-byte body, so the answer reaches the JSON decoder.
    settings = gateway_settings(
        database_url, lab, PUSHGATE_RETRY_MAX_ATTEMPTS="2", PUSHGATE_ENGINE_MAX_RESPONSE_BYTES="262144"
    )
    async with running_gateway(settings) as gw:
        good = await _subscribers(gw, lab, "deep", 20)
        [hostile] = await _subscribers(gw, lab, "deep", 1)
        lab.fault(provider="webpush", tokens=[endpoint(hostile)], hostile="deep_json", status=500)

        pub_id = await publish(gw.client, recipients=[{"type": "channel", "channel": "deep"}])
        done = await gw.wait_done(pub_id, within=30)

        copies = {endpoint(d): lab.ledger("webpush", endpoint(d))["total"] for d in good}
        assert copies == {endpoint(d): 1 for d in good}
        records = {r["device_id"]: r for r in await gw.deliveries(pub_id)}
        assert {records[d["id"]]["status"] for d in good} == {"sent"}
        bad = records[hostile["id"]]
        assert (bad["status"], bad["error_class"], bad["error_code"]) == (
            "failed",
            "provider_transient",
            "http_500",
        )
        assert done["counts"]["sent"] == 20 and done["counts"]["failed"] == 1
        # Both attempts reached the hostile endpoint and were answered; nothing crashed.
        assert len(_fault(lab, endpoint(hostile))["hits"][endpoint(hostile)]) == 2


async def test_endless_answer_is_cut_at_the_cap(database_url: str, lab: Lab) -> None:
    settings = gateway_settings(database_url, lab, PUSHGATE_RETRY_MAX_ATTEMPTS="1")
    async with running_gateway(settings) as gw:
        good = await _subscribers(gw, lab, "endless", 3)
        # The lab's HTTP/1.1 listener streams a body as it is produced (its HTTP/2 bridge does not).
        [hostile] = await _subscribers(gw, lab, "endless", 1, listener="http1")
        lab.fault(
            provider="webpush",
            tokens=[endpoint(hostile)],
            hostile="endless",
            status=201,
            body_bytes=ENDLESS_BYTES,
        )

        pub_id = await publish(gw.client, recipients=[{"type": "channel", "channel": "endless"}])
        await gw.wait_done(pub_id, within=30)

        records = {r["device_id"]: r for r in await gw.deliveries(pub_id)}
        assert {records[d["id"]]["status"] for d in good} == {"sent"}
        bad = records[hostile["id"]]
        assert (bad["status"], bad["error_class"], bad["error_code"]) == (
            "failed",
            "provider_transient",
            "response_too_large",
        )
        assert "65,536-byte cap (engine.max_response_bytes)" in bad["error_message"]
        written = _fault(lab, endpoint(hostile))["written"]
        assert 65_536 < written < WRITTEN_BOUND, written


async def test_endless_wns_answer_is_cut_at_the_cap(database_url: str, lab: Lab) -> None:
    """The cap is the transport's, so it holds for every provider (WNS reads no body at all)."""
    settings = gateway_settings(database_url, lab, PUSHGATE_RETRY_MAX_ATTEMPTS="1")
    async with running_gateway(settings) as gw:
        with lab.client() as c:
            uris = [c.post("/wns/channels").raise_for_status().json()["channel_uri"] for _ in range(2)]
        devs = [
            await register(gw, provider="wns", token=uri, platform="windows", channels=["wns-endless"])
            for uri in uris
        ]
        lab.fault(provider="wns", tokens=[uris[1]], hostile="endless", body_bytes=ENDLESS_BYTES)

        pub_id = await publish(gw.client, recipients=[{"type": "channel", "channel": "wns-endless"}])
        await gw.wait_done(pub_id, within=30)

        records = {r["device_id"]: r for r in await gw.deliveries(pub_id)}
        assert records[devs[0]["id"]]["status"] == "sent"
        bad = records[devs[1]["id"]]
        assert (bad["status"], bad["error_code"]) == ("failed", "response_too_large")
        assert _fault(lab, uris[1])["written"] < WRITTEN_BOUND
