"""``bench e2e --baseline``: the same notifications sent the way an application would without pushgate.

The libraries django-push-notifications uses, in one asyncio loop: firebase-admin
``messaging.send_each_async`` (FCM), aioapns (APNs over HTTP/2 + TLS, token auth) and pywebpush
``webpush_async`` (Web Push, VAPID + aes128gcm). Each provider's devices go in chunks of 500
(firebase-admin's most per ``send_each_async`` call), every chunk sent concurrently and the
chunks one after another; the three providers run side by side. That is a fair reading of "an
app's send loop": concurrent, but with no queue, no retries beyond the libraries' own, and no
outcome bookkeeping.

Needs the ``bench`` extra (``pip install 'pushgate[bench]'``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import ssl
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pushgate.bench.targets import NOTIFICATION, LabCredentials, Target

__all__ = ["CHUNK", "run_baseline_sends"]

#: firebase-admin's ``send_each_async`` takes at most 500 messages per call.
CHUNK = 500

Sender = Callable[[Sequence[Target]], Awaitable[Counter[str]]]


def _missing(exc: ImportError) -> RuntimeError:
    return RuntimeError(
        f"--baseline needs the bench extra: pip install 'pushgate[bench]' ({exc.name} is missing)"
    )


async def _fcm_sender(creds: LabCredentials) -> tuple[Sender, Callable[[], Awaitable[None]]]:
    try:
        import firebase_admin
        from firebase_admin import credentials, messaging
        from google.oauth2 import service_account
    except ImportError as exc:
        raise _missing(exc) from None
    account = creds.fcm_service_account
    # What credentials.Certificate(account) builds, plus one documented google-auth option:
    # google-auth always signs its OAuth assertion for Google's own token endpoint
    # (aud = https://oauth2.googleapis.com/token), while the lab checks aud against the
    # account's token_uri (its /token); additional_claims sets aud to that token_uri.
    google_credential = service_account.Credentials.from_service_account_info(
        account,
        scopes=["https://www.googleapis.com/auth/firebase.messaging"],
        additional_claims={"aud": account["token_uri"]},
    )

    class LabCertificate(credentials.Base):  # firebase-admin's documented credential interface
        def get_credential(self) -> Any:
            return google_credential

    app = firebase_admin.initialize_app(
        LabCertificate(),
        options={"projectId": account["project_id"]},
        name=f"pushgate-bench-{secrets.token_hex(4)}",
    )
    # firebase-admin has no setting for the FCM endpoint (it is a class constant,
    # _MessagingService.FCM_URL = https://fcm.googleapis.com/v1/projects/{0}/messages:send), so
    # the smallest override is this one attribute of the app's messaging service: the lab's URL
    # with the same path. Everything else (OAuth, httpx HTTP/2 client, retries) is the library's.
    service = messaging._get_messaging_service(app)
    service._fcm_url = f"{creds.fcm_base_url}/v1/projects/{account['project_id']}/messages:send"

    async def send(targets: Sequence[Target]) -> Counter[str]:
        messages = [
            messaging.Message(
                token=t.token,
                notification=messaging.Notification(title=NOTIFICATION["title"], body=NOTIFICATION["body"]),
                data=NOTIFICATION["data"],
            )
            for t in targets
        ]
        batch = await messaging.send_each_async(messages, app=app)
        out: Counter[str] = Counter(sent=batch.success_count)
        for r in batch.responses:
            if not r.success:
                out[f"fcm:{type(r.exception).__name__}"] += 1
        return out

    async def close() -> None:
        # Not firebase_admin.delete_app(): it closes this client with asyncio.run(), which fails
        # inside a running loop. The app stays registered under its unique name until exit.
        await service._async_client.aclose()

    return send, close


async def _apns_sender(creds: LabCredentials) -> tuple[Sender, Callable[[], Awaitable[None]]]:
    try:
        from aioapns import APNs, NotificationRequest
        from aioapns.connection import APNsProductionClientProtocol
    except ImportError as exc:
        raise _missing(exc) from None
    # aioapns warns "Pool is completely busy…" each time all its connections' streams are taken
    # and it polls every 10 ms for a free one: its normal way of queueing, but hundreds of lines.
    logging.getLogger("aioapns").setLevel(logging.ERROR)
    context = ssl.create_default_context(cafile=str(creds.apns_ca_file))  # the lab's CA
    context.set_alpn_protocols(["h2"])
    client = APNs(
        key=creds.apns_key_pem,
        key_id=creds.apns_key_id,
        team_id=creds.apns_team_id,
        topic=creds.apns_topic,
        use_sandbox=False,
        ssl_context=context,
    )
    # aioapns connects to its protocol class's APNS_SERVER:APNS_PORT (api.push.apple.com:443) and
    # has no URL setting; the smallest override is a subclass with the lab's host and port.
    url = urlsplit(creds.apns_url)
    client.pool.protocol_class = type(
        "LabAPNsProtocol",
        (APNsProductionClientProtocol,),
        {"APNS_SERVER": url.hostname, "APNS_PORT": url.port or 443},
    )
    alert = {"title": NOTIFICATION["title"], "body": NOTIFICATION["body"]}

    async def one(t: Target) -> str:
        request = NotificationRequest(
            device_token=t.token, message={"aps": {"alert": alert}, **NOTIFICATION["data"]}
        )
        result = await client.send_notification(request)
        return "sent" if result.is_successful else f"apns:{result.description}"

    async def send(targets: Sequence[Target]) -> Counter[str]:
        return Counter(await asyncio.gather(*(one(t) for t in targets)))

    async def close() -> None:
        for connection in list(client.pool.connections):
            connection.close()

    return send, close


async def _webpush_sender(creds: LabCredentials) -> tuple[Sender, Callable[[], Awaitable[None]]]:
    try:
        import aiohttp
        from pywebpush import WebPushException, webpush_async
    except ImportError as exc:
        raise _missing(exc) from None
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
    payload = json.dumps(NOTIFICATION)

    async def one(t: Target) -> str:
        try:
            await webpush_async(
                subscription_info=json.loads(t.token),
                data=payload,
                vapid_private_key=creds.vapid_private_key,
                vapid_claims={"sub": creds.vapid_subject},
                ttl=2419200,
                aiohttp_session=session,
            )
        except WebPushException as exc:
            status = exc.response.status if exc.response is not None else "error"
            return f"webpush:{status}"
        return "sent"

    async def send(targets: Sequence[Target]) -> Counter[str]:
        return Counter(await asyncio.gather(*(one(t) for t in targets)))

    async def close() -> None:
        await session.close()

    return send, close


_SENDERS = {"fcm": _fcm_sender, "apns": _apns_sender, "webpush": _webpush_sender}


def _trust_lab_ca(ca_file: Path) -> None:
    """Make the client libraries trust the lab's CA (its simulators speak TLS, as the real ones).

    Not all of them take a CA argument (google-auth's token refresh through requests,
    firebase-admin's httpx client), but all honour the documented environment variables, so
    these point at certifi's roots plus the lab's CA. This is the bench's own process.
    """
    import certifi

    bundle = Path(tempfile.mkdtemp(prefix="pushgate-bench-ca-")) / "ca-bundle.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + ca_file.read_bytes())
    os.environ["REQUESTS_CA_BUNDLE"] = os.environ["SSL_CERT_FILE"] = str(bundle)


async def run_baseline_sends(creds: LabCredentials, targets: Sequence[Target]) -> dict[str, Any]:
    """Send one notification to each target with the providers' own client libraries.

    Answers ``sent``, ``errors`` (by class), ``seconds`` (wall, sending only) and
    ``cpu_seconds`` (this process, which did all the work) and ``skipped`` (devices of
    providers no library here covers).
    """
    by_provider: dict[str, list[Target]] = {}
    for t in targets:
        by_provider.setdefault(t.provider, []).append(t)
    skipped = {p: len(ts) for p, ts in by_provider.items() if p not in _SENDERS}
    if creds.fcm_base_url.startswith("https://"):
        _trust_lab_ca(creds.apns_ca_file)
    senders = {p: await _SENDERS[p](creds) for p in by_provider if p in _SENDERS}
    totals: Counter[str] = Counter()
    provider_seconds: dict[str, float] = {}

    async def provider_loop(provider: str) -> None:
        send = senders[provider][0]
        todo = by_provider[provider]
        started = time.perf_counter()
        for k in range(0, len(todo), CHUNK):
            totals.update(await send(todo[k : k + CHUNK]))
        provider_seconds[provider] = round(time.perf_counter() - started, 3)

    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(provider_loop(p) for p in senders))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        for _send, close in senders.values():
            await close()
    sent = totals.pop("sent", 0)
    return {
        "sent": sent,
        "errors": dict(totals),
        "skipped": skipped,
        "seconds_by_provider": provider_seconds,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "pushes_per_second": round(sent / seconds, 1) if seconds > 0 else 0.0,
    }
