"""`pushgate bench` runs against a real gateway and the lab so it cannot silently break
(acceptance 7): seed, e2e, admission, latency and transactional as real subprocesses, JSON
checked."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from support.gateway import MASTER, gateway_settings, running_gateway

from pushgate.bench import procstat
from pushgate.bench.content import device_attributes
from pushgate.bench.transactional import device_token

PUSHGATE = [sys.executable, "-c", "from pushgate.cli import app; app()"]


async def bench(gateway: Any, lab: Any, *args: str, limit: float = 45) -> tuple[int, str]:
    """Run ``pushgate bench ARGS`` as a subprocess without blocking the loop the gateway
    serves from; answers (exit code, combined output)."""
    proc = await asyncio.create_subprocess_exec(
        *PUSHGATE,
        "bench",
        *args,
        "--url",
        gateway.url,
        "--lab-url",
        lab.url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PUSHGATE_KEY": gateway.key, "COLUMNS": "120"},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), limit)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_bench_seed_and_e2e(gateway: Any, lab: Any, tmp_path: Path) -> None:
    seed_json, e2e_json = tmp_path / "seed.json", tmp_path / "e2e.json"
    code, out = await bench(
        gateway, lab, "seed", "--devices", "2000", "--channels", "4", "--providers", "fcm,webpush,apns",
        "--channel", "orders", "--concurrency", "2", "--batch-size", "300", "--json", str(seed_json),
    )  # fmt: skip
    assert code == 0, out
    seed = json.loads(seed_json.read_text())
    assert seed["devices"] == 2000 and seed["errors"] == {}
    assert seed["by_provider"] == {"fcm": 667, "webpush": 667, "apns": 666}
    assert seed["devices_per_second"] > 0 and seed["batch_size"] == 300

    code, out = await bench(
        gateway, lab, "e2e", "--channel", "orders", "--server-pid", str(os.getpid()), "--json", str(e2e_json)
    )
    assert code == 0, out
    e2e = json.loads(e2e_json.read_text())
    for key in ("pushes_per_second", "seconds", "peak_rss_mb", "cpu_seconds"):
        assert key in e2e, key
    assert e2e["status"] == "completed"
    assert e2e["planned"] == e2e["sent"] == 2000 and e2e["failed"] == 0
    assert e2e["lab_received"] == 2000
    assert e2e["pushes_per_second"] > 0 and 0 < e2e["seconds"] < 60
    assert e2e["cpu_seconds"] > 0 and e2e["peak_rss_mb"] > 10
    assert e2e["lab_pid"] and e2e["lab_cpu_seconds"] is not None  # discovered from the lab's port
    assert e2e["timeline"] and e2e["timeline"][-1]["sent"] == 2000
    assert "pushes/s" in out and "peak RSS" in out
    # From the gateway's /metrics over the run: every answer by class, and the latencies.
    assert e2e["error_classes"] == {"sent": 2000}
    assert set(e2e["provider_send"]) == {"fcm", "webpush", "apns"}
    assert sum(h["count"] for h in e2e["provider_send"].values()) >= 2000 // 100
    assert e2e["status_write"]["count"] >= 20 and e2e["status_write"]["mean_ms"] > 0
    assert "error classes" in out and "sent=2000" in out and "status write latency" in out

    # The spread channels hold a quarter each; publishing to one reaches only those devices. The
    # same run then sends them without pushgate: the client libraries (--baseline) and a raw
    # libcurl blast of pre-rendered requests (--raw), each counted by the lab; and draws the plot.
    plot = tmp_path / "e2e.png"
    code, out = await bench(
        gateway, lab, "e2e", "--channel", "bench-1", "--server-pid", str(os.getpid()), "--baseline", "--raw",
        "--lab-credentials", str(lab.creds_dir), "--raw-concurrency", "64", "--plot", str(plot),
        "--json", str(e2e_json), limit=90,
    )  # fmt: skip
    assert code == 0, out
    e2e = json.loads(e2e_json.read_text())
    assert e2e["sent"] == 500
    for name, rate in (("baseline", "baseline_pushes_per_second"), ("raw", "raw_requests_per_second")):
        section = e2e[name]
        assert section["sent"] == section["lab_received"] == 500 and section["errors"] == {}, section
        assert e2e[rate] > 0 and section["seconds"] > 0
    assert e2e["ratio_vs_baseline"] == round(e2e["pushes_per_second"] / e2e["baseline_pushes_per_second"], 3)
    assert e2e["ratio_vs_raw"] == round(e2e["pushes_per_second"] / e2e["raw_requests_per_second"], 3)
    assert "pushgate ÷ this" in out and "comparison" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_bench_admission_and_latency(gateway: Any, lab: Any, tmp_path: Path) -> None:
    out_json = tmp_path / "admission.json"
    code, out = await bench(gateway, lab, "admission", "--concurrency", "4", "--duration", "1",
                            "--json", str(out_json))  # fmt: skip
    assert code == 0, out
    result = json.loads(out_json.read_text())
    assert result["accepted"] > 0 and result["accepted_per_second"] > 0
    assert result["latency"]["p50_ms"] > 0 and result["latency"]["max_ms"] >= result["latency"]["p99_ms"]

    code, out = await bench(gateway, lab, "latency", "--count", "5", "--json", str(out_json))
    assert code == 0, out
    result = json.loads(out_json.read_text())
    assert result["received"] == 5 and result["timeouts"] == 0
    assert 0 < result["latency"]["p50_ms"] <= result["latency"]["p99_ms"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_bench_transactional_single_and_batched(gateway: Any, lab: Any, tmp_path: Path) -> None:
    """200 one-user publishes one request each, then again (same devices) 50 per batch request."""
    out_json = tmp_path / "transactional.json"
    code, out = await bench(gateway, lab, "transactional", "--publishes", "200", "--concurrency", "8",
                            "--server-pid", str(os.getpid()), "--json", str(out_json))  # fmt: skip
    assert code == 0, out
    single = json.loads(out_json.read_text())
    assert single["admitted"] == 200 and single["statuses"] == {"202": 200, "item_errors": 0}
    assert lab.ledger("fcm")["total"] == 200, "each user's device gets exactly its one notification"
    assert single["latency_source"] == "ledger", out  # the test lab keeps arrival times
    assert single["admitted_per_second"] >= single["notifications_per_second"] > 0
    assert 0 < single["latency"]["p50_ms"] <= single["latency"]["p99_ms"] <= single["latency"]["max_ms"]
    assert single["cpu_ms_per_notification"] > 0 and single["peak_rss_mb"] > 10
    assert "notifications/s end to end" in out and "CPU ms per notification" in out

    code, out = await bench(gateway, lab, "transactional", "--publishes", "200", "--batch", "50",
                            "--no-register", "--json", str(out_json))  # fmt: skip
    assert code == 0, out
    batched = json.loads(out_json.read_text())
    assert batched["admitted"] == 200 and batched["statuses"] == {"202": 4, "item_errors": 0}
    assert batched["batch"] == 50 and batched["notifications_per_second"] > 0
    assert batched["latency_source"] == "ledger" and batched["latency"]["p99_ms"] > 0
    assert lab.ledger("fcm")["total"] == 200  # counted afresh: the run reset the lab's ledger
    devices = await gateway.client.get("/v1/devices", params={"limit": 1000})
    assert len(devices.json()["items"]) == 200, "the second run reused the first run's devices"


async def test_bench_baseline_needs_lab_credentials(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *PUSHGATE, "bench", "e2e", "--baseline",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**{k: v for k, v in os.environ.items() if k != "PUSHGATE_LAB_CREDENTIALS"}, "PUSHGATE_KEY": "k"},
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 2 and b"--lab-credentials" in out


async def test_bench_needs_a_key(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *PUSHGATE, "bench", "e2e", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if k != "PUSHGATE_KEY"},
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 2 and b"PUSHGATE_KEY" in out


def test_pid_listening_on_finds_the_listener() -> None:
    # A child process listens; we (the caller) are skipped by design, so use a subprocess.
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    child = subprocess.Popen(
        [sys.executable, "-c",
         f"import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(); "
         "print('ok', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ok"
        assert procstat.pid_listening_on(port) == child.pid
    finally:
        child.kill()
        child.wait()
    assert procstat.pid_listening_on(port) is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_bench_fairness(database_url: str, lab: Any, tmp_path: Path) -> None:
    """``bench fairness`` end to end at a small size: a second app's backlog (seeded, published,
    planned), the measured app's single-device samples, the backlog cancelled afterwards."""
    lab.reset()
    settings = gateway_settings(
        database_url, lab, PUSHGATE_SECRET_KEY=MASTER, PUSHGATE_ENGINE_BATCH_SIZE="50"
    )
    async with running_gateway(settings) as gw:
        _, backlog_key = await gw.app.state.services.apps.create("bench-backlog")
        lab.fault(provider="fcm", latency_ms=100)  # the backlog drains slowly: it is still there
        out_json = tmp_path / "fairness.json"
        code, out = await bench(
            gw, lab, "fairness", "--backlog-key", backlog_key, "--lab-credentials", str(lab.creds_dir),
            "--backlog", "3000", "--backlog-devices", "1000", "--count", "10", "--json", str(out_json),
            limit=90,
        )  # fmt: skip
        assert code == 0, out
        result = json.loads(out_json.read_text())
        assert result["backlog_publishes"] == 3 and result["backlog_planned"] == 3000
        assert result["received"] == 10 and result["timeouts"] == 0
        assert 0 < result["latency"]["p50_ms"] <= result["latency"]["p99_ms"]
        assert result["backlog_outstanding_at_start"] > 0 and result["backlog_cancelled"]
        assert "p99 under 1 s" in out
        async with gw.as_app(backlog_key) as backlog_app:
            listed = (await backlog_app.get("/v1/credentials")).json()["items"]
        assert [i["provider"] for i in listed] == ["fcm"]  # uploaded from the lab's directory


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_bench_plan_window_publish(gateway: Any, lab: Any, tmp_path: Path) -> None:
    """``bench seed --timezones`` then ``bench plan`` end to end (acceptance 7's measurement at a
    small size): every seeded device planned once, held or sent now, the held ones released at
    one time per zone at most, the publish cancelled afterwards."""
    seed_json, plan_json = tmp_path / "seed.json", tmp_path / "plan.json"
    code, out = await bench(
        gateway, lab, "seed", "--devices", "360", "--channels", "0", "--providers", "fcm",
        "--channel", "tz", "--timezones", "6", "--batch-size", "100", "--json", str(seed_json),
    )  # fmt: skip
    assert code == 0, out
    seed = json.loads(seed_json.read_text())
    assert seed["devices"] == 360 and len(seed["by_timezone"]) == 6
    assert set(seed["by_timezone"].values()) == {60}  # round-robin over the zones

    code, out = await bench(
        gateway, lab, "plan", "--channel", "tz", "--timezones", "6", "--server-pid", str(os.getpid()),
        "--json", str(plan_json),
    )  # fmt: skip
    assert code == 0, out
    plan = json.loads(plan_json.read_text())
    assert plan["devices"] == plan["planned"] == 360
    open_now = len(plan["zones_open_now"])
    assert 1 <= open_now <= 2, plan  # the default window: open for a minority of the zones
    assert plan["sent_now"] == 60 * open_now and plan["held"] == 360 - 60 * open_now, plan
    assert plan["held"] + plan["sent_now"] == plan["planned"]
    assert plan["held_sampled"] == plan["held"]
    assert 1 <= plan["distinct_release_at"] <= 6 - open_now
    assert plan["planning_seconds"] > 0 and plan["planned_per_second"] > 0
    assert plan["cancelled"] is True
    assert "devices planned" in out and "distinct release_at" in out
    after = (await gateway.client.get(f"/v1/publishes/{plan['publish_id']}")).json()
    assert after["status"] == "cancelled" and after["counts"]["held"] == 0
    assert after["counts"]["cancelled"] == plan["held"]
    assert lab.ledger("fcm")["total"] == plan["sent_now"]


def test_plan_default_window_is_open_for_a_minority_at_any_hour() -> None:
    """Whenever ``bench plan`` runs, its default window holds most zones and serves some now."""
    from datetime import UTC, datetime, timedelta

    from pushgate.bench.planning import default_window, open_zones, zones_for

    zones = zones_for(20)
    assert len(set(zones)) == 20 and "Pacific/Honolulu" in zones and "Australia/Sydney" in zones
    for quarter in range(4 * 24 * 2):  # every 15 minutes of two days, one in each DST season
        now = datetime(2026, 7 if quarter < 96 else 12, 7, tzinfo=UTC) + timedelta(
            minutes=15 * (quarter % 96)
        )
        start, end = default_window(zones, now)
        assert 1 <= len(open_zones(zones, start, end, now)) <= 20 // 3, (now, start, end)


def _brute_broad(n: int) -> bool:
    """The ``broad`` filter of ``bench audience``, evaluated in Python on device ``n``'s
    attributes: a German or Portuguese locale, or app version 3.6.0 or later."""
    a = device_attributes(n)
    language = (a.get("locale") or "").split("-")[0].lower()
    version = tuple(int(p) for p in a["app_version"].split("."))
    return language in ("de", "pt") or version >= (3, 6, 0)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_bench_issue12_templates_filters_dry_run(gateway: Any, lab: Any, tmp_path: Path) -> None:
    """Issue 12's workloads at a small size: ``seed --attributes``, ``audience`` (counts equal a
    brute-force evaluation), ``plan --filter``, ``e2e --template`` (each device got its locale's
    text with its own name), ``e2e --dry-run`` (nothing sent) and ``transactional --template``."""
    out = tmp_path / "out.json"
    code, text = await bench(
        gateway, lab, "seed", "--devices", "240", "--channels", "0", "--providers", "fcm,apns",
        "--channel", "fan", "--attributes", "--batch-size", "100", "--json", str(out),
    )  # fmt: skip
    assert code == 0, text
    assert json.loads(out.read_text())["attributes"] is True

    code, text = await bench(gateway, lab, "audience", "--filter", "broad", "--filter", '{"user": "present"}',
                             "--calls", "3", "--warmup", "1", "--json", str(out))  # fmt: skip
    assert code == 0, text
    broad, everyone = json.loads(out.read_text())["filters"]
    matching = [n for n in range(240) if _brute_broad(n)]
    assert 0 < broad["devices"] == len(matching) < 240, broad
    assert broad["users"] == len({n // 2 for n in matching})  # two devices per user
    assert (everyone["name"], everyone["devices"], everyone["users"]) == ("json", 240, 120)
    assert broad["calls"] == 3 and 0 < broad["latency"]["p50_ms"] <= broad["latency"]["max_ms"]
    assert "audience/count" in text

    code, text = await bench(gateway, lab, "plan", "--filter", "broad", "--local-time", "09:00",
                             "--timezones", "0", "--json", str(out))  # fmt: skip
    assert code == 0, text
    plan = json.loads(out.read_text())
    assert plan["devices"] == plan["planned"] == plan["held"] == len(matching) and plan["cancelled"]
    assert plan["filter"] == {"any": [{"language": {"in": ["de", "pt"]}}, {"app_version": {"gte": "3.6.0"}}]}

    code, text = await bench(gateway, lab, "e2e", "--channel", "fan", "--template", "--reset-peak-rss",
                             "--server-pid", str(os.getpid()), "--json", str(out))  # fmt: skip
    assert code == 0, text
    e2e = json.loads(out.read_text())
    assert (e2e["template"], e2e["sent"], e2e["lab_received"]) == ("bench_fanout", 240, 240)
    assert e2e["peak_rss_reset"] is True and e2e["peak_rss_mb"] >= e2e["rss_before_mb"] > 10
    hello = {"de": "Hallo", "pt": "Olá"}
    items = lab.ledger("fcm")["items"]
    assert len(items) == 120
    for item in items:
        n = int(item["token"].rsplit("-", 1)[1])
        language = (device_attributes(n).get("locale") or "en").split("-")[0]
        assert item["message"]["notification"]["title"] == f"{hello.get(language, 'Hello')}, User {n}", item

    code, text = await bench(gateway, lab, "e2e", "--channel", "fan", "--dry-run", "--json", str(out))
    assert code == 0, text
    dry = json.loads(out.read_text())
    assert dry["dry_run"] is True and dry["status"] == "completed"
    assert (dry["dry_run_recorded"], dry["sent"], dry["lab_received"]) == (240, 0, 0)
    assert dry["recorded_per_second"] > 0 and "dry run" in text

    code, text = await bench(gateway, lab, "transactional", "--publishes", "40", "--template",
                             "--prefix", "ttx", "--concurrency", "4", "--json", str(out))  # fmt: skip
    assert code == 0, text
    tx = json.loads(out.read_text())
    assert (tx["template"], tx["admitted"], tx["statuses"]) == ("bench_tx", 40, {"202": 40, "item_errors": 0})
    [de_at] = lab.ledger("fcm", token=device_token("ttx", 1))["items"]  # device 1: locale de-AT
    assert de_at["message"]["notification"] == {"title": "Dein Code, User 1", "body": "Code 000001 für ttx-1"}
    assert de_at["message"]["data"]["seq"] == "1"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_bench_realtime_sessions_on_one_channel(gateway: Any, lab: Any, tmp_path: Path) -> None:
    out_json = tmp_path / "realtime.json"
    code, out = await bench(gateway, lab, "realtime", "--sessions", "20", "--rounds", "2",
                            "--json", str(out_json))  # fmt: skip
    assert code == 0, out
    result = json.loads(out_json.read_text())
    assert result["connected"] == result["sessions"] == 20
    for r in result["rounds"]:
        assert r["received"] == 20 and r["sent"] == 20 and r["delivered"] == 20, r
        assert 0 < r["first_ms"] <= r["latency"]["p50_ms"] <= r["last_ms"], r
    assert "one channel publish per round" in out
