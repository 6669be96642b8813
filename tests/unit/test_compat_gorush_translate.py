"""gorush notification → native publish (``pushgate/api/compat/gorush/translate.py``): the
fields the lab tests do not reach (HMS-only, Live Activities, ``to``, per-platform ignores)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from pushgate.api.compat.gorush.schema import GorushNotification
from pushgate.api.compat.gorush.translate import check, to_publish
from pushgate.api.errors import ApiError


def _publish(**fields: Any) -> dict[str, Any]:
    n = msgspec.convert(fields, GorushNotification)
    check(0, n)
    out: dict[str, Any] = msgspec.to_builtins(to_publish(0, n))
    return out


def test_huawei_fields_become_the_hms_override() -> None:
    p = _publish(
        platform=3,
        tokens=["t1"],
        to="t2",
        title="T",
        message="M",
        huawei_notification={"click_action": {"type": 3}},
        huawei_data='{"a":1}',
        huawei_ttl="3600s",
        huawei_collapse_key=5,
        bi_tag="b",
        fast_app_target=2,
        collapse_key="fcm-only",
        android={"priority": "high"},
        condition="'a' in topics",
    )
    assert [r.get("token") or r.get("condition") for r in p["recipients"]] == ["t1", "t2", "'a' in topics"]
    assert p["recipients"][2]["type"] == "hms_condition"
    assert p["notification"] == {"title": "T", "body": "M"}  # FCM's collapse_key is not HMS's
    assert p["providers"] == {
        "hms": {
            "message": {
                "android": {
                    "notification": {"click_action": {"type": 3}},
                    "ttl": "3600s",
                    "collapse_key": 5,
                    "bi_tag": "b",
                    "fast_app_target": 2,
                },
                "data": '{"a":1}',
            }
        }
    }


def test_ios_live_activity_and_sound_fields_go_to_aps() -> None:
    p = _publish(
        platform=1,
        tokens=["ab" * 32],
        push_type="liveactivity",
        expiration=1700000000,
        event="update",
        timestamp=1700000000,
        **{"content-state": {"score": 3}, "stale-date": 1700000600, "relevance-score": 0.5},
        name="ping.aiff",
        volume=0.5,
        **{"url-args": ["a", "b"]},
        data={"s": "x", "n": 1},
        android={"ignored": True},
    )
    apns = p["providers"]["apns"]
    assert apns["headers"] == {"apns-push-type": "liveactivity", "apns-expiration": "1700000000"}
    assert apns["payload"]["aps"] == {
        "sound": {"name": "ping.aiff", "volume": 0.5},
        "url-args": ["a", "b"],
        "event": "update",
        "timestamp": 1700000000,
        "content-state": {"score": 3},
        "stale-date": 1700000600,
        "relevance-score": 0.5,
    }
    assert apns["payload"]["n"] == 1 and "s" not in apns["payload"]
    assert p["notification"]["data"] == {"s": "x", "n": "1"}
    assert "fcm" not in p["providers"]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"platform": 1, "tokens": ["a"], "topic": "x"}, None),
        ({"platform": 1, "topic": "com.app"}, "tokens must not be nil"),
        ({"platform": 2, "topic": "news"}, None),
        ({"platform": 0, "tokens": ["a"]}, "platform"),
        ({"platform": 2, "tokens": ["a", ""]}, "must not be empty"),
        ({"platform": 3, "tokens": ["a"], "app_secret": "s"}, "app_id/app_secret"),
        ({"platform": 2, "tokens": ["a"], "priority": "low"}, "priority"),
    ],
)
def test_check(fields: dict[str, Any], words: str | None) -> None:
    n = msgspec.convert(fields, GorushNotification)
    if words is None:
        check(0, n)
        return
    with pytest.raises(ApiError) as err:
        check(0, n)
    assert err.value.status == 400 and words in err.value.message
