"""Job payload Structs: stored JSON stays readable across versions, broken rows are named."""

from __future__ import annotations

import json

from pushgate.domain.jobs import (
    DispatchPayload,
    JobKind,
    PlanPayload,
    PlanStats,
    Unreadable,
    decode_payload,
    dispatch_batches,
    encode_payload,
)


def test_payloads_written_before_the_structs_still_decode() -> None:
    # The exact JSON the dict-based code stored (jobs already in a database at upgrade).
    assert decode_payload("plan", '{"i":0,"cursor":null}') == PlanPayload(0, None, PlanStats())
    assert decode_payload(
        "plan", '{"i":2,"cursor":"dev_x","stats":{"dispatched":5,"no_credentials":1,"planned":6}}'
    ) == PlanPayload(2, "dev_x", PlanStats(5, 1, 6))
    assert decode_payload(
        "dispatch", '{"provider":"fcm","attempt":2,"targets":[["dev_1","t"],["dev_2","u","sandbox"]]}'
    ) == DispatchPayload("fcm", 2, [["dev_1", "t"], ["dev_2", "u", "sandbox"]])
    replay = decode_payload("dispatch", '{"provider":"apns","attempt":1,"replay":true,"targets":[]}')
    assert replay == DispatchPayload("apns", 1, [], replay=True)


def test_encoded_payloads_keep_the_stored_field_names() -> None:
    assert json.loads(encode_payload(DispatchPayload("fcm", 1, [["dev_1", "t"]]))) == {
        "provider": "fcm",
        "attempt": 1,
        "targets": [["dev_1", "t"]],
    }
    assert json.loads(encode_payload(DispatchPayload("fcm", 1, [], replay=True)))["replay"] is True
    assert json.loads(encode_payload(PlanPayload(1, "c"))) == {
        "i": 1,
        "cursor": "c",
        "stats": {"dispatched": 0, "no_credentials": 0, "planned": 0},
        "realtime": None,
    }
    assert PlanPayload.KIND == JobKind.PLAN == "plan"
    assert DispatchPayload.KIND == JobKind.DISPATCH == "dispatch"


def test_unknown_fields_are_ignored_and_broken_rows_are_unreadable() -> None:
    newer = decode_payload("dispatch", '{"provider":"fcm","attempt":1,"targets":[],"priority":5}')
    assert newer == DispatchPayload("fcm", 1, [])
    unknown = decode_payload("sweep", "{}")
    assert isinstance(unknown, Unreadable) and "unknown job kind 'sweep'" in unknown.error
    missing = decode_payload("dispatch", '{"attempt":1,"targets":[]}')
    assert isinstance(missing, Unreadable) and "provider" in missing.error
    garbage = decode_payload("plan", "{not json")
    assert isinstance(garbage, Unreadable) and "not JSON" in garbage.error


def test_retrying_recipients_are_those_of_retries_and_replays() -> None:
    assert not DispatchPayload("fcm", 1, []).was_retrying
    assert DispatchPayload("fcm", 2, []).was_retrying
    assert DispatchPayload("fcm", 1, [], replay=True).was_retrying


def test_dispatch_batches_cut_targets_in_order() -> None:
    targets = [[f"dev_{n}", "t"] for n in range(7)]
    batches = dispatch_batches("wns", targets, size=3, attempt=2, replay=True)
    assert [len(b.targets) for b in batches] == [3, 3, 1]
    assert [t for b in batches for t in b.targets] == targets
    assert {(b.provider, b.attempt, b.replay) for b in batches} == {("wns", 2, True)}
    assert [len(b.targets) for b in dispatch_batches("fcm", targets)] == [7]
    assert dispatch_batches("fcm", []) == []
