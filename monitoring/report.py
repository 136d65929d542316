"""The drift report: per feature, baseline and current histograms, the metric, its threshold and the verdict.

One self-contained HTML file, plots inlined as SVG the way the evaluation report draws
them (evaluation/report.py): the baseline in matplotlib's first colour, the current
data in its second, in every plot.
"""

from __future__ import annotations

import html

from evaluation.report import _STYLE, _svg
from monitoring.drift import FeatureDrift
from monitoring.monitor import MonitoringResult, rfc3339

# At most this many categories drawn per plot (the largest baseline shares first); the metric uses all.
_MAX_BARS = 25


def _plot(feature: FeatureDrift) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = feature.labels[:_MAX_BARS]
    positions = range(len(labels))
    figure, axis = plt.subplots(figsize=(max(4.2, 0.32 * len(labels) + 1.5), 3.4))
    axis.bar([p - 0.2 for p in positions], feature.baseline[:len(labels)], width=0.4, label="baseline (training)")
    axis.bar([p + 0.2 for p in positions], feature.current[:len(labels)], width=0.4, label="current")
    axis.set_xticks(list(positions), labels, rotation=60, ha="right", fontsize="x-small")
    verdict = "DRIFT" if feature.drifted else "ok"
    axis.set(title=f"{feature.name}: {feature.metric} {feature.value:.4f} "
                   f"(threshold {feature.threshold}) {verdict}", ylabel="share")
    axis.title.set_fontsize("small")
    axis.legend(fontsize="x-small")
    return _svg(figure)


def drift_report(result: MonitoringResult, title: str) -> str:
    drifted = result.drifted
    if result.empty:
        verdict = "<span class='verdict ok'>NO DATA in the window: nothing compared, no alert</span>"
    elif drifted:
        verdict = (f"<span class='verdict no'>DRIFT in {len(drifted)} feature(s): "
                   f"{html.escape(', '.join(feature.name for feature in drifted))}</span>")
    else:
        verdict = "<span class='verdict ok'>NO DRIFT: every feature within its threshold</span>"
    rows = []
    for feature in result.features:
        value = "–" if feature.value is None else f"{feature.value:.4f}"
        state = "DRIFT" if feature.drifted else ("not compared" if feature.value is None else "ok")
        rows.append(f"<tr><td>{html.escape(feature.name)}</td><td>{feature.kind}</td><td>{feature.metric}</td>"
                    f"<td>{value}</td><td>{feature.threshold}</td><td>{state}</td>"
                    f"<td style='text-align:left'>{html.escape(feature.note)}</td></tr>")
    plots = [_plot(feature) for feature in result.features if feature.value is not None]
    facts = {"model": result.model_name, "champion version": result.champion_version,
             "baseline": f"{result.baseline_uri} ({result.baseline_rows} rows)",
             "current": f"{result.target}: {result.current_rows} instance(s)"
                        + (f" in {result.requests} request(s)" if result.requests else "")
                        + (f", {result.skipped} unreadable row(s) skipped" if result.skipped else ""),
             "window": f"{rfc3339(result.window_start)} .. {rfc3339(result.window_end)}"}
    fact_rows = "".join(f"<tr><td>{html.escape(k)}</td><td style='text-align:left'>{html.escape(v)}</td></tr>"
                        for k, v in facts.items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{verdict}</p>
<table>{fact_rows}</table>
<h2>Features</h2>
<table><tr><th>feature</th><th>kind</th><th>metric</th><th>value</th><th>threshold</th><th>verdict</th><th>note</th></tr>
{''.join(rows)}</table>
<h2>Baseline and current, per feature</h2><div class="plots">{''.join(plots)}</div>
</body></html>"""
