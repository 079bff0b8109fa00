"""Plots (PNG): latency by percentile, and a soak's windows against time.

The percentile plot is drawn as HdrHistogram's plotters draw it: the x axis
is 1/(1-p) on a log scale, so 90%, 99%, 99.9% and 99.99% are equally spaced
and the tail is as visible as the median.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hdrh.histogram import HdrHistogram

from lowlatency_service.histogram import NS_PER_US

if TYPE_CHECKING:
    from lowlatency_service.soak import Window

_TICKS = ((0.0, "0%"), (90.0, "90%"), (99.0, "99%"), (99.9, "99.9%"), (99.99, "99.99%"))
_POINTS = 200
_LINE_STYLES = ("-", "--", ":", "-.")


def _curve(histogram: HdrHistogram) -> tuple[list[float], list[float]]:
    """(1/(1-p), value in us) at points spread evenly on the log axis up to the count's reach."""
    count = histogram.get_total_count()
    # The highest percentile a run of `count` requests can resolve.
    nines = max(1.0, math.log10(max(count, 10)))
    xs, ys = [], []
    for i in range(_POINTS + 1):
        x = 10 ** (nines * i / _POINTS)
        percentile = 100.0 * (1.0 - 1.0 / x)
        xs.append(x)
        ys.append(histogram.get_value_at_percentile(percentile) / NS_PER_US)
    return xs, ys


def plot_percentiles(curves: Mapping[str, HdrHistogram], path: str, title: str) -> None:
    """Write a PNG with one line per named histogram (empty ones are left out)."""
    import matplotlib  # noqa: PLC0415  # optional extra, only needed when a plot is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(figsize=(9, 5.5), dpi=100)
    colors = plt.get_cmap("tab10").colors
    drawn = 0
    for name, histogram in curves.items():
        if histogram.get_total_count():
            xs, ys = _curve(histogram)
            # Ten distinct colours, then the same colours again with another line style.
            style = _LINE_STYLES[drawn // len(colors) % len(_LINE_STYLES)]
            color = colors[drawn % len(colors)]
            axes.plot(xs, ys, label=name, linewidth=1.5, color=color, linestyle=style)
            drawn += 1
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xticks([1.0 / (1.0 - p / 100.0) for p, _ in _TICKS])
    axes.set_xticklabels([label for _, label in _TICKS])
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency (us)")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)


def windows_path(path: str) -> str:
    """Where the time series goes: next to the percentile plot, run.png -> run-windows.png."""
    root, ext = os.path.splitext(path)
    return f"{root}-windows{ext or '.png'}"


def plot_windows(windows: Sequence[Window], path: str, title: str) -> None:
    """p50, p99, p99.9 of each window and the service's RSS against time (window ends)."""
    import matplotlib  # noqa: PLC0415  # optional extra, only needed when a plot is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, (latency, rss) = plt.subplots(
        2, 1, figsize=(9, 6.5), dpi=100, sharex=True, height_ratios=(2, 1)
    )
    measured = [w for w in windows if w.summary.requests]
    times = [w.end_s for w in measured]
    for name, key in (("p50", "p50_us"), ("p99", "p99_us"), ("p99.9", "p999_us")):
        values = [getattr(w.summary, key) for w in measured]
        latency.plot(times, values, label=name, linewidth=1.5, marker=".")
    latency.set_yscale("log")
    latency.set_ylabel("latency (us)")
    latency.set_title(title)
    latency.grid(True, which="both", alpha=0.3)
    latency.legend(fontsize="small")
    known = [w for w in windows if w.rss_mb is not None]
    rss.plot([w.end_s for w in known], [w.rss_mb for w in known], color="tab:red", marker=".")
    rss.set_ylabel("service RSS (MiB)")
    rss.set_xlabel("time (s, window ends)")
    rss.grid(True, alpha=0.3)
    if not known:
        rss.text(0.5, 0.5, "no process figures", ha="center", va="center", transform=rss.transAxes)
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)
