"""What ``--baseline`` and ``--raw`` send, and with which lab credentials.

Both comparisons must send *the same notifications to the same devices at the same lab* as the
pushgate run, so they read the channel's devices back from the gateway (over its HTTP API, as
an application would read them from its own database) and use the credentials the lab wrote
with ``pushgate lab --write-credentials DIR``.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pushgate.bench.http import BenchClient

__all__ = ["NOTIFICATION", "LabCredentials", "Target", "channel_targets", "load_lab_credentials"]

#: The notification every mode sends: what ``bench e2e`` publishes (``_notification(0)``).
NOTIFICATION: dict[str, Any] = {"title": "pushgate bench", "body": "message 0", "data": {"seq": "0"}}


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    #: The stored token; for Web Push the subscription as a JSON string.
    token: str


@dataclass(frozen=True, slots=True)
class LabCredentials:
    fcm_service_account: dict[str, Any]
    fcm_base_url: str
    apns_key_pem: str
    apns_key_id: str
    apns_team_id: str
    apns_topic: str
    apns_url: str
    apns_ca_file: Path
    vapid_private_key: str
    vapid_subject: str


def load_lab_credentials(directory: Path) -> LabCredentials:
    """Read what ``pushgate lab --write-credentials DIRECTORY`` wrote."""
    try:
        account = json.loads((directory / "fcm-service-account.json").read_text())
        apns = json.loads((directory / "apns.json").read_text())
        toml = tomllib.loads((directory / "pushgate-lab.toml").read_text())
        key_pem = (directory / "apns-key.p8").read_text()
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"--lab-credentials {directory}: not written by `pushgate lab --write-credentials` ({exc})"
        ) from None
    return LabCredentials(
        fcm_service_account=account,
        fcm_base_url=str(account.get("base_url") or "https://fcm.googleapis.com").rstrip("/"),
        apns_key_pem=key_pem,
        apns_key_id=apns["key_id"],
        apns_team_id=apns["team_id"],
        apns_topic=apns["bundle_id"],
        apns_url=apns["tls_url"],
        apns_ca_file=directory / "apns-ca.pem",
        vapid_private_key=toml["webpush"]["vapid_private_key"],
        vapid_subject=toml["webpush"]["vapid_subject"],
    )


async def channel_targets(api: BenchClient, channel: str) -> list[Target]:
    """Every active device of ``channel``, read through ``GET /v1/devices`` (ordered by id)."""
    targets: list[Target] = []
    cursor: str | None = None
    while True:
        query = f"/v1/devices?channels={quote(channel, safe='')}&status=active&limit=1000"
        page = await api.json("GET", query + (f"&cursor={cursor}" if cursor else ""))
        targets += [Target(d["provider"], d["token"]) for d in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            return targets
