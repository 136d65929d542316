"""The console's plots, drawn as the reports draw theirs (matplotlib to inline SVG, evaluation/report.py)."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping

from evaluation.report import _svg


def endpoint_over_time(rows: Iterable[Mapping], labels: Mapping[str, str]) -> str:
    """Requests, errors and latency p50/p99 per deployed model per interval, one panel each, on one time
    axis. `labels`: deployed model id -> what the legend calls it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[datetime.datetime, Mapping]]] = {}
    for row in rows:
        try:
            start = datetime.datetime.fromisoformat(str(row["start"])).astimezone()
        except (KeyError, ValueError):
            continue
        series.setdefault(str(row.get("deployed_model_id")), []).append((start, row))
    figure, (requests, errors, latency) = plt.subplots(3, 1, figsize=(7.5, 6.2), sharex=True)
    for colour, (deployed_id, points) in enumerate(sorted(series.items())):
        points = _with_gaps(sorted(points, key=lambda point: point[0]))
        times = [moment for moment, _ in points]
        name = labels.get(deployed_id, f"deployed model {deployed_id}")
        style = {"color": f"C{colour}", "marker": "o", "markersize": 3}
        requests.plot(times, [row.get("requests", 0) for _, row in points], label=name, **style)
        errors.plot(times, [row.get("errors", 0) for _, row in points], label=name, **style)
        for percentile, line in (("p50", "-"), ("p99", "--")):
            values = [(row.get("latency_ms") or {}).get(percentile) for _, row in points]  # None: none answered
            latency.plot(times, [float("nan") if value is None else value for value in values], line,
                         label=f"{name} {percentile}", **style)
    seconds = next((row.get("seconds") for points in series.values() for _, row in points), None)
    requests.set(title="Requests", ylabel=f"per {seconds} s" if seconds else "per interval", ylim=(0, None))
    errors.set(title="Errors (5xx, failed connections)", ylabel="per interval", ylim=(0, None))
    latency.set(title="Latency of answered requests", ylabel="ms", ylim=(0, None))
    for axis in (requests, errors, latency):
        axis.grid(alpha=0.3)
        if series:
            axis.legend(fontsize="small", loc="upper left")
    latency.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    figure.autofmt_xdate()
    figure.tight_layout()
    return _svg(figure)


def _with_gaps(points: list[tuple[datetime.datetime, Mapping]]) -> list[tuple[datetime.datetime, Mapping]]:
    """An empty point between intervals that are not adjacent: no line across a time without requests."""
    spaced: list[tuple[datetime.datetime, Mapping]] = []
    for moment, row in points:
        if spaced and (moment - spaced[-1][0]).total_seconds() > float(row.get("seconds") or 0):
            spaced.append((spaced[-1][0] + datetime.timedelta(seconds=float(row.get("seconds") or 0)), _GAP))
        spaced.append((moment, row))
    return spaced


_GAP = {"requests": float("nan"), "errors": float("nan"), "latency_ms": {}}
