"""Latency-by-percentile plots (PNG), drawn as HdrHistogram's plotters draw them.

The x axis is 1/(1-p) on a log scale, so 90%, 99%, 99.9% and 99.99% are
equally spaced and the tail is as visible as the median.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from hdrh.histogram import HdrHistogram

from lowlatency_service.histogram import NS_PER_US

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
