"""``bench e2e --plot FILE.png``: throughput and queue depth over time, from the e2e timeline.

matplotlib with the Agg backend (no display needed); it comes with the ``bench`` extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_plot"]


def write_plot(result: dict[str, Any], path: Path) -> None:
    """Two panels sharing the time axis: pushes/s (with the baseline and raw rates as lines, when
    they ran) above; outstanding deliveries (queue depth), sent and lab-received counts below."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError(
            f"--plot needs the bench extra: pip install 'pushgate[bench]' ({exc.name})"
        ) from None
    timeline = result["timeline"]
    t = [row["t"] for row in timeline]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6.5), constrained_layout=True)
    top.step(
        t,
        [row.get("pushes_per_second", 0.0) for row in timeline],
        where="pre",
        label="pushgate pushes/s (between samples)",
    )
    top.axhline(result["pushes_per_second"], color="C0", linestyle=":", label="pushgate average")
    if result.get("baseline_pushes_per_second"):
        top.axhline(result["baseline_pushes_per_second"], color="C3", linestyle="--", label="--baseline")
    if result.get("raw_requests_per_second"):
        top.axhline(result["raw_requests_per_second"], color="C2", linestyle="--", label="--raw (libcurl)")
    top.set_ylabel("pushes / s")
    top.legend(loc="upper right", fontsize="small")
    top.grid(alpha=0.3)
    top.set_title(
        f"pushgate bench e2e: {result['sent']} pushes to '{result['channel']}' in {result['seconds']} s"
        f" ({result['pushes_per_second']}/s)"
    )
    bottom.plot(t, [row["outstanding"] for row in timeline], label="outstanding (planned, not final)")
    bottom.plot(t, [row["sent"] for row in timeline], label="sent")
    bottom.plot(t, [row["lab_received"] for row in timeline], linestyle="--", label="lab received")
    bottom.set_xlabel("seconds since publish")
    bottom.set_ylabel("deliveries")
    bottom.legend(loc="upper left", fontsize="small")
    bottom.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)
