"""Centrifugo's official Python HTTP API client (``cent`` on PyPI, unmodified) pointed at
pushgate: every push method it has, the answers it parses, and the errors it raises."""

from __future__ import annotations

import time

import pytest
from cent import AsyncClient
from cent.dto import (
    CancelPushRequest,
    DeviceFilter,
    DeviceListRequest,
    DeviceRegisterRequest,
    DeviceRemoveRequest,
    DeviceTopicListRequest,
    DeviceTopicsUpdate,
    DeviceTopicUpdateRequest,
    DeviceUpdateRequest,
    DeviceUserUpdate,
    FcmPushNotification,
    PushNotification,
    PushRecipient,
    SendPushNotificationRequest,
    UpdatePushStatusRequest,
    UserTopicListRequest,
    UserTopicUpdateRequest,
)
from cent.exceptions import CentApiResponseError, CentUnauthorizedError
from support.api import fcm_token
from support.gateway import Gateway
from support.lab import Lab


async def test_cent_drives_devices_topics_and_sends(gateway: Gateway, lab: Lab) -> None:
    token = fcm_token()
    async with AsyncClient(f"{gateway.url}/api", gateway.key) as cent:
        reg = await cent.device_register(
            DeviceRegisterRequest(
                provider="fcm", token=token, platform="android", user="u1", topics=["news"], meta={"m": "1"}
            )
        )
        dev = reg.id
        await cent.device_update(
            DeviceUpdateRequest(ids=[dev], topics_update=DeviceTopicsUpdate(op="add", topics=["sport"]))
        )
        page = await cent.device_list(
            DeviceListRequest(
                filter=DeviceFilter(users=["u1"]),
                include_topics=True,
                include_meta=True,
                include_total_count=True,
            )
        )
        assert page.total_count == 1 and [d.id for d in page.items] == [dev]
        assert page.items[0].topics == ["news", "sport"] and page.items[0].meta == {"m": "1"}
        assert page.items[0].created_at > 0 and page.items[0].token == token

        await cent.device_topic_update(DeviceTopicUpdateRequest(device_id=dev, op="remove", topics=["news"]))
        topics = await cent.device_topic_list(DeviceTopicListRequest(include_device=True))
        assert [(t.device.id, t.topic) for t in topics.items] == [(dev, "sport")]
        await cent.user_topic_update(UserTopicUpdateRequest(user="u1", op="add", topics=["vip"]))
        users = await cent.user_topic_list(UserTopicListRequest())
        assert [(u.user, u.topic) for u in users.items] == [("u1", "vip")]
        native = (await gateway.client.get(f"/v1/devices/{dev}")).json()["device"]
        assert sorted(native["channels"]) == ["sport", "vip"]  # one registry

        sent = await cent.send_push_notification(
            SendPushNotificationRequest(
                recipient=PushRecipient(filter=DeviceFilter(topics=["vip"])),
                notification=PushNotification(
                    fcm=FcmPushNotification(message={"notification": {"title": "Hi", "body": "from cent"}})
                ),
            )
        )
        status = await gateway.wait_done(sent.uid)
        assert status["counts"]["sent"] == 1
        [item] = lab.ledger("fcm", token=token)["items"]
        assert item["message"]["notification"] == {"title": "Hi", "body": "from cent"}
        await cent.update_push_status(
            UpdatePushStatusRequest(analytics_uid=sent.uid, status="delivered", device_id=dev)
        )

        later = await cent.send_push_notification(
            SendPushNotificationRequest(
                recipient=PushRecipient(fcm_tokens=[token]),
                notification=PushNotification(fcm=FcmPushNotification(message={"data": {"k": "v"}})),
                send_at=int(time.time()) + 3600,
            )
        )
        await cent.cancel_push(CancelPushRequest(uid=later.uid))
        assert (await gateway.client.get(f"/v1/publishes/{later.uid}")).json()["status"] == "cancelled"

        await cent.device_update(DeviceUpdateRequest(ids=[dev], user_update=DeviceUserUpdate(user="u2")))
        await cent.device_remove(DeviceRemoveRequest(users=["u2"]))
        assert (await cent.device_list(DeviceListRequest())).items == []

        with pytest.raises(CentApiResponseError) as err:
            await cent.device_register(DeviceRegisterRequest(provider="fcm", token=token, platform="toaster"))
        assert err.value.code == 107
    async with AsyncClient(f"{gateway.url}/api", "not-the-key-0123456789") as wrong:
        with pytest.raises(CentUnauthorizedError):
            await wrong.device_list(DeviceListRequest())
