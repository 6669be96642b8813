"""``pushgate bench``: the load generator's command line (seed, admission, e2e, latency,
fairness, transactional, plan, audience).

Long because: each mode's options, with their help texts, are declared here; the work itself
is in runner.py, fairness.py, transactional.py, planning.py and audience.py.
"""

from __future__ import annotations

import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from pushgate.bench.content import FILTERS, resolve_filter
from pushgate.bench.http import BenchHttpError
from pushgate.bench.planning import ZONES
from pushgate.bench.runner import Endpoints, run_admission, run_e2e, run_latency, run_seed
from pushgate.bench.transactional import run_transactional

bench_cli = typer.Typer(
    help="Load generator: seed devices, measure admission, end-to-end fan-out and latency "
    "against a running gateway and the provider lab (`pushgate lab --lean --plain`).",
    no_args_is_help=True,
)

console = Console()
err = Console(stderr=True)

UrlOpt = Annotated[str, typer.Option("--url", envvar="PUSHGATE_URL", help="Gateway URL ($PUSHGATE_URL).")]
KeyOpt = Annotated[str, typer.Option("--key", envvar="PUSHGATE_KEY", help="App API key ($PUSHGATE_KEY).")]
LabOpt = Annotated[str, typer.Option("--lab-url", help="Provider lab URL.")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write the results as JSON to this file.")]

DEFAULT_URL = "http://127.0.0.1:8686"
DEFAULT_LAB = "http://127.0.0.1:8687"


def _endpoints(url: str, key: str, lab_url: str) -> Endpoints:
    if not key:
        err.print("[red]error:[/red] give the app key with --key or PUSHGATE_KEY")
        raise typer.Exit(2)
    return Endpoints(url=url, key=key, lab_url=lab_url)


def _run(coro: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    import uvloop

    try:
        return uvloop.run(coro)
    except (BenchHttpError, TimeoutError, ValueError, RuntimeError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def _write_json(path: Path | None, result: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(result, indent=2) + "\n")
        err.print(f"results written to {path}")


def _table(title: str, rows: list[tuple[str, Any]]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for name, value in rows:
        table.add_row(name, "—" if value is None else str(value))
    console.print(table)


@bench_cli.command()
def seed(
    devices: Annotated[int, typer.Option(min=1, help="How many devices to register.")] = 10_000,
    channels: Annotated[int, typer.Option(min=0, help="Spread devices over CHANNEL_PREFIX-0…(C-1).")] = 10,
    providers: Annotated[
        str, typer.Option(help="Comma-separated providers, round-robin.")
    ] = "fcm,apns,webpush",
    channel_prefix: Annotated[str, typer.Option(help="Prefix of the spread channels.")] = "bench",
    channel: Annotated[
        str, typer.Option(help="Every device also joins this channel ('' for none).")
    ] = "orders",
    concurrency: Annotated[int, typer.Option(min=1, help="Batch requests in flight.")] = 4,
    batch_size: Annotated[
        int, typer.Option(min=1, max=1000, help="Devices per POST /v1/devices/batch.")
    ] = 1000,
    timezones: Annotated[
        int,
        typer.Option(
            min=0,
            max=len(ZONES),
            help="Give devices, round-robin, one of this many real IANA zones spread over the "
            "offsets, DST ones included (for `bench plan`); 0: no timezone.",
        ),
    ] = 0,
    attributes: Annotated[
        bool,
        typer.Option(
            "--attributes",
            help="Also give each device a user, locale, app version, tags and meta (for `bench "
            "audience`, `plan --filter` and the --template runs).",
        ),
    ] = False,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = "",
    lab_url: LabOpt = DEFAULT_LAB,
    json_out: JsonOpt = None,
) -> None:
    """Register devices with lab-minted tokens, in POST /v1/devices/batch requests."""
    ep = _endpoints(url, key, lab_url)
    names = [p.strip() for p in providers.split(",") if p.strip()]
    with Progress(
        TextColumn("seeding"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
    ) as bar:
        task = bar.add_task("seed", total=devices)
        result = _run(
            run_seed(
                ep,
                devices=devices,
                channels=channels,
                providers=names,
                channel_prefix=channel_prefix,
                channel=channel or None,
                concurrency=concurrency,
                batch_size=batch_size,
                timezones=timezones,
                attributes=attributes,
                progress=lambda n: bar.advance(task, n),
            )
        )
    _table(
        "pushgate bench seed",
        [
            ("devices registered", result["devices"]),
            ("by provider", ", ".join(f"{k}={v}" for k, v in result["by_provider"].items())),
            ("time zones", len(result["by_timezone"]) or "none"),
            ("errors", result["errors"] or "none"),
            ("seconds", result["seconds"]),
            ("devices/s", result["devices_per_second"]),
        ],
    )
    _write_json(json_out, result)
    if result["errors"]:
        raise typer.Exit(1)


@bench_cli.command()
def admission(
    concurrency: Annotated[int, typer.Option(min=1, help="Publishes in flight.")] = 32,
    duration: Annotated[float, typer.Option(min=0.1, help="Seconds to run.")] = 10.0,
    channel: Annotated[
        str,
        typer.Option(help="Channel to publish to (default: an empty one, so only admission is measured)."),
    ] = "bench-admission",
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = "",
    lab_url: LabOpt = DEFAULT_LAB,
    json_out: JsonOpt = None,
) -> None:
    """Publish as fast as allowed for DURATION seconds: accepted/s, errors, latency percentiles."""
    ep = _endpoints(url, key, lab_url)
    result = _run(run_admission(ep, concurrency=concurrency, duration=duration, channel=channel))
    lat = result["latency"]
    _table(
        "pushgate bench admission",
        [
            ("concurrency", concurrency),
            ("seconds", result["seconds"]),
            ("accepted", result["accepted"]),
            ("accepted/s", result["accepted_per_second"]),
            ("errors by status", result["errors"] or "none"),
            (
                "latency p50 / p95 / p99 / max (ms)",
                f"{lat['p50_ms']} / {lat['p95_ms']} / {lat['p99_ms']} / {lat['max_ms']}",
            ),
        ],
    )
    _write_json(json_out, result)


@bench_cli.command()
def e2e(
    channel: Annotated[str, typer.Option(help="Channel to publish one notification to.")] = "orders",
    server_pid: Annotated[
        int | None, typer.Option(help="pushgate's pid (default: whoever listens on --url's port).")
    ] = None,
    lab_pid: Annotated[
        int | None, typer.Option(help="The lab's pid (default: whoever listens on --lab-url's port).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 3600.0,
    baseline: Annotated[
        bool,
        typer.Option(
            "--baseline",
            help="Then send the same notifications with firebase-admin, aioapns and pywebpush "
            "(no pushgate) and report the ratio. Needs --lab-credentials and the bench extra.",
        ),
    ] = False,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="Then blast the same requests, pre-rendered, with libcurl (pycurl) and report the "
            "ratio. Needs --lab-credentials and the bench extra.",
        ),
    ] = False,
    lab_credentials: Annotated[
        Path | None,
        typer.Option(
            envvar="PUSHGATE_LAB_CREDENTIALS",
            help="The directory given to `pushgate lab --write-credentials` (for --baseline/--raw).",
        ),
    ] = None,
    raw_concurrency: Annotated[int, typer.Option(min=1, help="--raw: requests in flight.")] = 256,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Draw throughput and queue depth over time to this PNG.")
    ] = None,
    template: Annotated[
        bool,
        typer.Option(
            "--template",
            help="Publish with the bench template (created or updated first), rendered per device "
            "from device.meta.* and its locale (devices from `bench seed --attributes`).",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="A dry run of the publish: planned and recorded, nothing sent.")
    ] = False,
    reset_peak_rss: Annotated[
        bool,
        typer.Option(
            "--reset-peak-rss",
            help="Reset pushgate's VmHWM at the publish, so the peak RSS is this run's, not the "
            "process's whole life (needs /proc/PID/clear_refs: your own process, or root).",
        ),
    ] = False,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = "",
    lab_url: LabOpt = DEFAULT_LAB,
    json_out: JsonOpt = None,
) -> None:
    """One publish to a big channel, followed to the end: pushes/s, CPU seconds, peak RSS; with
    --baseline/--raw, the same sends without pushgate in the same run, and the ratios."""
    ep = _endpoints(url, key, lab_url)
    if dry_run and (baseline or raw):
        err.print("[red]error:[/red] --dry-run sends nothing: no --baseline/--raw to compare with")
        raise typer.Exit(2)
    if (baseline or raw) and lab_credentials is None:
        err.print(
            "[red]error:[/red] --baseline and --raw need --lab-credentials DIR "
            "(the directory given to `pushgate lab --write-credentials DIR`)"
        )
        raise typer.Exit(2)

    async def everything() -> dict[str, Any]:
        result = await run_e2e(
            ep, channel=channel, server_pid=server_pid, lab_pid=lab_pid, give_up_after=timeout,
            template=template, dry_run=dry_run, reset_peak=reset_peak_rss,
        )  # fmt: skip
        if (baseline or raw) and lab_credentials is not None:
            from pushgate.bench.compare import run_comparisons

            result = await run_comparisons(
                ep, result, baseline=baseline, raw=raw, lab_credentials=lab_credentials,
                raw_concurrency=raw_concurrency,
            )  # fmt: skip
        return result

    result = _run(everything())
    timeline = result["timeline"]
    if len(timeline) > 2:
        tl = Table(
            "t (s)", "planned", "sent", "outstanding", "lab received", "pushes/s", "RSS MB", title="timeline"
        )
        step = max(1, len(timeline) // 20)
        for row in timeline[::step] + ([timeline[-1]] if (len(timeline) - 1) % step else []):
            tl.add_row(
                str(row["t"]),
                str(row["planned"]),
                str(row["sent"]),
                str(row["outstanding"]),
                str(row["lab_received"]),
                str(row.get("pushes_per_second", "")),
                str(row["rss_mb"] or ""),
            )
        console.print(tl)
    _table(
        "pushgate bench e2e",
        [
            ("status", result["status"] + (" (dry run)" if dry_run else "")),
            ("template", f"{result['template']} v{result['template_version']}" if template else "none"),
            (
                "planned / sent / failed / invalid",
                f"{result['planned']} / {result['sent']} / {result['failed']} / {result['invalid_token']}",
            ),
            ("lab received", result["lab_received"]),
            ("time to last delivery (s)", result["seconds"]),
            ("pushes/s", result["pushes_per_second"]),
            (
                "dry-run records / records per s",
                f"{result['dry_run_recorded']} / {result['recorded_per_second']}",
            ),
            ("pushgate pid", result["server_pid"]),
            ("pushgate CPU seconds", result["cpu_seconds"]),
            ("pushgate CPU-s per 10,000 pushes", result["cpu_seconds_per_10k"]),
            ("pushgate peak RSS (MB, VmHWM)", result["peak_rss_mb"]),
            (
                "pushgate RSS before / peak of this run (MB)",
                f"{result['rss_before_mb']} / {result['peak_rss_mb']}" if result["peak_rss_reset"] else None,
            ),
            ("lab pid", result["lab_pid"]),
            ("lab CPU seconds", result["lab_cpu_seconds"]),
            ("error classes", _classes(result.get("error_classes") or {})),
            *(
                (f"{provider} request latency (chunk)", _hist(h))
                for provider, h in sorted((result.get("provider_send") or {}).items())
            ),
            ("status write latency", _hist(result.get("status_write"))),
        ],
    )
    failed = _comparisons(result)
    _write_json(json_out, result)
    if plot is not None:
        from pushgate.bench.plot import write_plot

        try:
            write_plot(result, plot)
        except RuntimeError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
        err.print(f"plot written to {plot}")
    if result["status"] != "completed" or failed:
        raise typer.Exit(1)


def _classes(classes: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(classes.items(), key=lambda kv: -kv[1])) or "—"


def _hist(h: dict[str, Any] | None) -> str:
    """``mean 12.3 ms, p50 ≤ 10 ms, p99 ≤ 50 ms (n=200)`` from the /metrics histogram of the run."""
    if not h:
        return "—"
    p50 = "—" if h["p50_le_ms"] is None else f"≤ {h['p50_le_ms']:g} ms"
    p99 = "—" if h["p99_le_ms"] is None else f"≤ {h['p99_le_ms']:g} ms"
    return f"mean {h['mean_ms']:g} ms, p50 {p50}, p99 {p99} (n={h['count']})"


def _comparisons(result: dict[str, Any]) -> bool:
    """Print pushgate beside --baseline/--raw; True if one of them did not deliver everything."""
    columns = [(name, result[name]) for name in ("baseline", "raw") if name in result]
    if not columns:
        return False
    table = Table("same devices, same lab", "pushgate", *(name for name, _ in columns), title="comparison")
    rates = {"baseline": "pushes_per_second", "raw": "requests_per_second"}
    ratios = {"baseline": "ratio_vs_baseline", "raw": "ratio_vs_raw"}
    rows: list[tuple[str, Any, list[Any]]] = [
        ("sent / lab received", f"{result['sent']} / {result['lab_received']}",
         [f"{c['sent']} / {c['lab_received']}" for _, c in columns]),
        ("errors", result["failed"] + result["invalid_token"] or "none",
         [", ".join(f"{k}={v}" for k, v in c["errors"].items()) or "none" for _, c in columns]),
        ("seconds", result["seconds"], [c["seconds"] for _, c in columns]),
        ("pushes/s", result["pushes_per_second"], [c[rates[n]] for n, c in columns]),
        ("sender CPU s", result["cpu_seconds"], [c["cpu_seconds"] for _, c in columns]),
        ("lab CPU s", result["lab_cpu_seconds"], [c["lab_cpu_seconds"] for _, c in columns]),
        ("pushgate ÷ this", 1, [result[ratios[n]] for n, _ in columns]),
    ]  # fmt: skip
    for name, ours, theirs in rows:
        table.add_row(name, *("—" if v is None else str(v) for v in (ours, *theirs)))
    console.print(table)
    console.print(
        "baseline: firebase-admin send_each_async, aioapns, pywebpush in one asyncio loop; "
        "raw: the same requests pre-rendered, sent through libcurl's multi interface. "
        "'sender CPU s' is pushgate's process for pushgate, the bench process for the others."
    )
    return any(c["errors"] or c["sent"] != result["sent"] for _, c in columns)


@bench_cli.command()
def latency(
    device_id: Annotated[
        str | None, typer.Option(help="Device to publish to (default: register one FCM device).")
    ] = None,
    count: Annotated[int, typer.Option(min=1, help="Samples, one publish at a time.")] = 200,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = "",
    lab_url: LabOpt = DEFAULT_LAB,
    json_out: JsonOpt = None,
) -> None:
    """Single-device latency: publish → the lab's ledger counter moves; p50/p99."""
    ep = _endpoints(url, key, lab_url)
    result = _run(run_latency(ep, device_id=device_id, count=count))
    lat = result["latency"]
    _table(
        "pushgate bench latency",
        [
            ("device", result["device_id"]),
            ("samples received", f"{result['received']} / {result['count']}"),
            (
                "p50 / p95 / p99 / max (ms)",
                f"{lat['p50_ms']} / {lat['p95_ms']} / {lat['p99_ms']} / {lat['max_ms']}",
            ),
        ],
    )
    _write_json(json_out, result)
    if result["timeouts"]:
        raise typer.Exit(1)


@bench_cli.command()
def fairness(
    backlog_key: Annotated[
        str,
        typer.Option(
            "--backlog-key", envvar="PUSHGATE_BACKLOG_KEY", help="API key of the app holding the backlog."
        ),
    ],
    backlog: Annotated[int, typer.Option(min=1, help="Deliveries queued for the backlog app.")] = 200_000,
    backlog_devices: Annotated[
        int,
        typer.Option(
            min=1, help="FCM devices in the backlog app's channel (it publishes BACKLOG/this times)."
        ),
    ] = 20_000,
    backlog_channel: Annotated[str, typer.Option(help="The backlog app's channel.")] = "fairness-backlog",
    seed: Annotated[
        bool,
        typer.Option(
            "--seed/--no-seed", help="Register the backlog devices first (--no-seed: already there)."
        ),
    ] = True,
    count: Annotated[int, typer.Option(min=1, help="Single-device publishes of the measured app.")] = 100,
    keep_backlog: Annotated[
        bool,
        typer.Option("--keep-backlog", help="Leave the backlog to drain (default: cancel it at the end)."),
    ] = False,
    lab_credentials: Annotated[
        Path | None,
        typer.Option(
            envvar="PUSHGATE_LAB_CREDENTIALS",
            help="The directory of `pushgate lab --write-credentials`: its FCM service account is "
            "uploaded for the backlog app if that app has no FCM credentials.",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Give up queueing the backlog after this many seconds.")
    ] = 600.0,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = "",
    lab_url: LabOpt = DEFAULT_LAB,
    json_out: JsonOpt = None,
) -> None:
    """Two tenants: the backlog app queues BACKLOG deliveries, then the measured app (--key)
    publishes to one MiPush device COUNT times; its publish → lab latency p50/p99 (target p99 < 1 s)."""
    from pushgate.bench.fairness import run_fairness

    ep = _endpoints(url, key, lab_url)
    result = _run(
        run_fairness(
            ep, backlog_key=backlog_key, backlog=backlog, backlog_devices=backlog_devices,
            backlog_channel=backlog_channel, seed=seed, count=count, lab_credentials=lab_credentials,
            give_up_after=timeout, keep_backlog=keep_backlog,
        )
    )  # fmt: skip
    lat, r = result["latency"], result
    _table(
        "pushgate bench fairness",
        [
            (
                "backlog app: deliveries planned",
                f"{r['backlog_planned']} in {r['backlog_publishes']} publishes",
            ),
            (
                "backlog unsent at start / end",
                f"{r['backlog_outstanding_at_start']} / {r['backlog_outstanding_at_end']}",
            ),
            ("measured app: samples received", f"{r['received']} / {r['count']} in {r['seconds']} s"),
            (
                "p50 / p95 / p99 / max (ms)",
                f"{lat['p50_ms']} / {lat['p95_ms']} / {lat['p99_ms']} / {lat['max_ms']}",
            ),
            ("p99 under 1 s", "yes" if r["p99_under_1s"] else "no"),
        ],
    )
    _write_json(json_out, result)
    if result["timeouts"] or not result["received"]:
        raise typer.Exit(1)


@bench_cli.command()
def transactional(
    publishes: Annotated[
        int, typer.Option(min=1, help="Users (one device each) and publishes, one per user.")
    ] = 3000,
    concurrency: Annotated[int, typer.Option(min=1, help="Publish requests in flight.")] = 32,
    batch: Annotated[
        int,
        typer.Option(
            min=0, max=1000, help="Publishes per POST /v1/publish/batch (0: one POST /v1/publish each)."
        ),
    ] = 0,
    provider: Annotated[str, typer.Option(help="The devices' provider.")] = "fcm",
    prefix: Annotated[
        str, typer.Option(help="Users are PREFIX-0…; the same prefix reuses a previous run's devices.")
    ] = "tx",
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="Register (or refresh) the devices first.")
    ] = True,
    server_pid: Annotated[
        int | None, typer.Option(help="pushgate's pid (default: whoever listens on --url's port).")
    ] = None,
    lab_pid: Annotated[
        int | None, typer.Option(help="The lab's pid (default: whoever listens on --lab-url's port).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 600.0,
    template: Annotated[
        bool,
        typer.Option(
            "--template",
            help="Register the devices with locales and meta, and publish with the bench template "
            "(3 locale variants, device and user variables) instead of a notification.",
        ),
    ] = False,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = "",
    lab_url: LabOpt = DEFAULT_LAB,
    json_out: JsonOpt = None,
) -> None:
    """One publish to each of PUBLISHES one-device users: admitted/s, notifications/s end to end
    (until the lab counted them all), pushgate CPU per notification, publish → lab latency."""
    ep = _endpoints(url, key, lab_url)
    result = _run(
        run_transactional(
            ep,
            publishes=publishes,
            concurrency=concurrency,
            batch=batch,
            provider=provider,
            prefix=prefix,
            register=register,
            server_pid=server_pid,
            lab_pid=lab_pid,
            give_up_after=timeout,
            template=template,
            progress=lambda line: err.print(line),
        )
    )
    lat = result["latency"]
    _table(
        "pushgate bench transactional",
        [
            ("publishes / concurrency / batch", f"{publishes} / {concurrency} / {batch or 'single'}"),
            ("template", f"{result['template']} v{result['template_version']}" if template else "none"),
            ("admitted", result["admitted"]),
            ("request statuses", ", ".join(f"{k}={v}" for k, v in sorted(result["statuses"].items()))),
            ("admitted/s", result["admitted_per_second"]),
            ("time until the lab counted all (s)", result["seconds"]),
            ("notifications/s end to end", result["notifications_per_second"]),
            ("pushgate CPU seconds", result["cpu_seconds"]),
            ("pushgate CPU ms per notification", result["cpu_ms_per_notification"]),
            ("pushgate peak RSS (MB, VmHWM)", result["peak_rss_mb"]),
            ("lab CPU seconds", result["lab_cpu_seconds"]),
            (
                f"publish → lab p50 / p95 / p99 / max (ms, {result['latency_source']})",
                f"{lat['p50_ms']} / {lat['p95_ms']} / {lat['p99_ms']} / {lat['max_ms']}",
            ),
            ("status write latency", _hist(result.get("status_write"))),
        ],
    )
    _write_json(json_out, result)


def _window(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    start, sep, end = value.partition("-")
    if not sep or not start or not end:
        err.print("[red]error:[/red] --window: START-END, e.g. 09:00-21:00")
        raise typer.Exit(2)
    return start, end


@bench_cli.command()
def plan(
    channel: Annotated[str, typer.Option(help="Channel to publish one notification to.")] = "orders",
    local_time: Annotated[
        str | None, typer.Option("--local-time", help="HH:MM: send at this device-local time.")
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="START-END device-local window (e.g. 09:00-21:00). Default: a 4-hour window open "
            "right now for a minority of the seeded zones.",
        ),
    ] = None,
    timezones: Annotated[
        int, typer.Option(min=0, max=len(ZONES), help="The --timezones the channel was seeded with.")
    ] = 20,
    baseline: Annotated[
        bool,
        typer.Option(
            "--baseline", help="Then the same publish without a window (all sent now), for the ratio."
        ),
    ] = False,
    keep: Annotated[
        bool, typer.Option("--keep", help="Leave the publish held (default: cancel it at the end).")
    ] = False,
    sample: Annotated[
        int, typer.Option(min=1, help="Held deliveries to read for the distinct release times.")
    ] = 5000,
    server_pid: Annotated[
        int | None, typer.Option(help="pushgate's pid (default: whoever listens on --url's port).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 3600.0,
    filter_: Annotated[
        str | None,
        typer.Option(
            "--filter",
            help=f"Publish to this audience filter instead of --channel: {', '.join(FILTERS)} "
            "(for `bench seed --attributes` devices) or a filter as JSON.",
        ),
    ] = None,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = "",
    lab_url: LabOpt = DEFAULT_LAB,
    json_out: JsonOpt = None,
) -> None:
    """One device-local-window publish to a big channel, followed until planned: planned/s, held
    vs sent now, distinct release times, pushgate CPU seconds and peak RSS while planning."""
    from pushgate.bench.planning import run_plan

    ep = _endpoints(url, key, lab_url)
    flt = _filters([filter_])[0][1] if filter_ else None
    result = _run(
        run_plan(
            ep, channel=channel, timezones=timezones, local_time=local_time, window=_window(window),
            baseline=baseline, keep=keep, server_pid=server_pid, sample=sample, give_up_after=timeout,
            audience_filter=flt,
        )
    )  # fmt: skip
    r, w = result, result["window"]
    rows: list[tuple[str, Any]] = [
        ("recipient", f"filter {filter_}" if filter_ else f"channel {channel}"),
        ("rule", f"local_time {r['local_time']}" if r["local_time"] else f"window {w['start']}-{w['end']}"),
        ("zones open now", f"{len(r['zones_open_now'])} of {len(r['timezones'])}"),
        ("devices planned", f"{r['planned']} of {r['devices']}"),
        ("held / sent now / other", f"{r['held']} / {r['sent_now']} / {r['not_sent_now']}"),
        ("distinct release_at (held sample)", f"{r['distinct_release_at']} in {r['held_sampled']}"),
        ("planning seconds (created → all planned)", r["planning_seconds"]),
        ("planned/s", r["planned_per_second"]),
        ("µs per device", r["us_per_device"]),
        ("pushgate CPU seconds (planning)", r["cpu_seconds"]),
        ("pushgate RSS before / peak (MB)", f"{r['rss_before_mb']} / {r['peak_rss_mb']}"),
        ("publish cancelled", "yes" if r["cancelled"] else "no (--keep)" if keep else "no"),
    ]
    if "baseline" in r:
        b = r["baseline"]
        rows += [
            ("baseline (no window): planning seconds", b["planning_seconds"]),
            ("baseline: planned/s", b["planned_per_second"]),
            ("window ÷ baseline planning time", r["ratio_vs_baseline"]),
        ]
    _table("pushgate bench plan", rows)
    _write_json(json_out, result)
    if r["planned"] != r["devices"]:
        raise typer.Exit(1)


def _filters(values: list[str]) -> list[tuple[str, dict[str, Any]]]:
    try:
        return [resolve_filter(v) for v in values]
    except ValueError as exc:
        err.print(f"[red]error:[/red] --filter: {exc}")
        raise typer.Exit(2) from None


@bench_cli.command()
def audience(
    filter_: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            help=f"A filter to count (repeatable): {', '.join(FILTERS)} (for `bench seed "
            "--attributes` devices) or a filter as JSON. Default: selective and broad.",
        ),
    ] = None,
    calls: Annotated[int, typer.Option(min=1, help="Timed calls per filter, one at a time.")] = 200,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed calls per filter first.")] = 5,
    server_pid: Annotated[
        int | None, typer.Option(help="pushgate's pid (default: whoever listens on --url's port).")
    ] = None,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = "",
    lab_url: LabOpt = DEFAULT_LAB,
    json_out: JsonOpt = None,
) -> None:
    """POST /v1/audience/count, CALLS times per filter, one at a time: devices and users
    reached, latency p50/p95/p99/max, pushgate CPU per call."""
    from pushgate.bench.audience import run_audience

    ep = _endpoints(url, key, lab_url)
    named = _filters(filter_ or ["selective", "broad"])
    result = _run(run_audience(ep, filters=named, calls=calls, warmup=warmup, server_pid=server_pid))
    table = Table(
        "filter", "devices", "users", "calls", "p50 ms", "p95 ms", "p99 ms", "max ms", "CPU ms/call",
        title="pushgate bench audience (POST /v1/audience/count)",
    )  # fmt: skip
    for f in result["filters"]:
        lat = f["latency"]
        table.add_row(
            f["name"], str(f["devices"]), str(f["users"]), str(f["calls"]), str(lat["p50_ms"]),
            str(lat["p95_ms"]), str(lat["p99_ms"]), str(lat["max_ms"]), str(f["cpu_ms_per_call"] or "—"),
        )  # fmt: skip
    console.print(table)
    _write_json(json_out, result)


@bench_cli.command()
def realtime(
    sessions: Annotated[int, typer.Option(min=1, max=20_000, help="socket.io sessions to open.")] = 2000,
    rounds: Annotated[int, typer.Option(min=1, help="Channel publishes, one after another.")] = 5,
    connect_concurrency: Annotated[int, typer.Option(min=1, help="Sessions connecting at once.")] = 50,
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for every session, per round.")
    ] = 60.0,
    server_pid: Annotated[
        int | None, typer.Option(help="pushgate's pid (default: whoever listens on --url's port).")
    ] = None,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = "",
    lab_url: LabOpt = DEFAULT_LAB,
    json_out: JsonOpt = None,
) -> None:
    """Open SESSIONS socket.io clients on one channel and publish to it with realtime "only":
    time to the first and last session's event per round, and the gateway's memory."""
    from pushgate.bench.realtime import run_realtime

    ep = _endpoints(url, key, lab_url)
    with Progress(
        TextColumn("connecting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    ) as bar:
        task = bar.add_task("connect", total=sessions)
        result = _run(
            run_realtime(
                ep,
                sessions=sessions,
                rounds=rounds,
                connect_concurrency=connect_concurrency,
                wait=timeout,
                server_pid=server_pid,
                progress=lambda n: bar.advance(task, n),
            )
        )
    rss = result["rss_mb"]
    _table(
        "pushgate bench realtime (sessions)",
        [
            ("sessions connected", f"{result['connected']} of {result['sessions']}"),
            ("connect seconds", result["connect_seconds"]),
            ("gateway RSS MiB before", rss["before"]),
            ("gateway RSS MiB, sessions open", rss["sessions_open"]),
            ("gateway RSS MiB after the rounds", rss["after_rounds"]),
        ],
    )  # fmt: skip
    table = Table(
        "round", "received", "first ms", "p50 ms", "p99 ms", "last ms", "sent", "delivered",
        title="pushgate bench realtime (one channel publish per round)",
    )  # fmt: skip
    for n, r in enumerate(result["rounds"]):
        lat = r["latency"]
        table.add_row(
            str(n), str(r["received"]), str(r["first_ms"]), str(lat["p50_ms"]), str(lat["p99_ms"]),
            str(r["last_ms"]), str(r["sent"]), str(r["delivered"]),
        )  # fmt: skip
    console.print(table)
    _write_json(json_out, result)
    if any(r["received"] < result["sessions"] for r in result["rounds"]):
        err.print("error: some sessions did not receive a round's notification (see 'received')")
        raise typer.Exit(1)
