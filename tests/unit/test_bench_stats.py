"""The benchmark's own measurements (process statistics, latency percentiles), without a gateway.

The benchmark runs themselves are in ``test_bench.py``.
"""

from __future__ import annotations

import os

from pushgate.bench import procstat
from pushgate.bench.runner import percentiles
from pushgate.bench.transactional import _LabWatch


def test_procstat_reads_this_process() -> None:
    sum(i * i for i in range(200_000))  # burn a little CPU
    cpu = procstat.cpu_seconds(os.getpid())
    assert cpu is not None and cpu > 0
    peak = procstat.peak_rss_mb(os.getpid())
    assert peak is not None and peak > 1
    assert procstat.cpu_seconds(2**22 + 12345) is None  # no such pid


def test_percentiles() -> None:
    p = percentiles([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert p["p50_ms"] == 50 and p["p95_ms"] == 95 and p["p99_ms"] == 99 and p["max_ms"] == 100
    assert percentiles([])["p99_ms"] == 0


def test_a_lean_labs_counter_steps_give_the_kth_arrival() -> None:
    """A lean lab only counts: the k-th arrival is the first poll that saw a total of k or more."""
    watch = _LabWatch(lab=None)  # type: ignore[arg-type]  # arrivals() needs no lab
    watch.steps = [(0.0, 0), (1.0, 2), (1.5, 3), (3.0, 6)]
    assert watch.arrivals(6) == [1.0, 1.0, 1.5, 3.0, 3.0, 3.0]
    assert watch.arrivals(2) == [1.0, 1.0]
