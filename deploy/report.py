"""The canary decision as an HTML page: the verdict and why, the evidence per model, and plots of traffic
per model over the window, error rate, latency and the two prediction distributions side by side.
Self-contained (plots inlined as SVG), in the same style as the evaluation report."""

from __future__ import annotations

import datetime
import html

from deploy.decision import Decision, ModelEvidence
from evaluation.report import _STYLE, _svg

_VERDICTS = {"promote": ("ok", "PROMOTE: the canary takes 100% and becomes champion"),
             "rollback": ("no", "ROLL BACK: the champion takes 100%, the canary is undeployed (alias rejected)"),
             "wait": ("wait", "WAIT: not enough evidence yet, nothing changes"),
             "none": ("wait", "NOTHING TO DECIDE: no canary on the endpoint")}


def _models(decision: Decision) -> list[tuple[str, ModelEvidence]]:
    return [(f"{role} v{evidence.version}", evidence) for role, evidence in
            (("champion", decision.champion), ("canary", decision.canary)) if evidence is not None]


def _plots(decision: Decision) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = _models(decision)
    figures = []
    figure, axis = plt.subplots(figsize=(5, 3.4))
    start = min((int(key) for _, evidence in models for key in evidence.requests_per_bucket), default=0)
    for name, evidence in models:
        buckets = sorted((int(key) - start, count) for key, count in evidence.requests_per_bucket.items())
        axis.plot([offset for offset, _ in buckets], [count for _, count in buckets], "o-", markersize=4, label=name)
    axis.set(title="Traffic per model over the window", ylabel="requests per bucket", ylim=(0, None),
             xlabel=f"seconds since {datetime.datetime.fromtimestamp(start, datetime.UTC):%H:%M:%S} UTC")
    axis.legend(fontsize="small")
    figures.append(_svg(figure))

    figure, (errors, latency) = plt.subplots(1, 2, figsize=(6.5, 3.4))
    names = [name for name, _ in models]
    errors.bar(names, [100 * evidence.error_rate for _, evidence in models], color=["C0", "C1"][:len(models)])
    errors.set(title="Error rate", ylabel="% of requests",
               ylim=(0, max(1.0, *(110 * evidence.error_rate for _, evidence in models))))
    for offset, percentile in ((-0.2, "p50"), (0.2, "p99")):
        values = [getattr(evidence, f"{percentile}_ms") or 0.0 for _, evidence in models]
        latency.bar([index + offset for index in range(len(models))], values, width=0.4, label=percentile)
    latency.set_xticks(range(len(models)), names)
    latency.set(title="Latency", ylabel="ms")
    latency.legend(fontsize="small", loc="lower right")
    figures.append(_svg(figure))

    figure, axis = plt.subplots(figsize=(5, 3.4))
    for offset, (name, evidence) in zip((-0.012, 0.012), models, strict=False):
        counts = list(evidence.prediction_histogram)
        total = sum(counts) or 1
        bins = len(counts) or 1
        axis.bar([(index + 0.5) / bins + offset for index in range(len(counts))], [c / total for c in counts],
                 width=0.45 / bins, label=f"{name} ({sum(counts)} predictions)")
    axis.set(title="Predicted probability, side by side", xlabel="probability", ylabel="share", xlim=(0, 1))
    axis.legend(fontsize="small")
    figures.append(_svg(figure))
    return figures


def _number(value: float | None, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


def decision_report(decision: Decision, title: str) -> str:
    css, verdict = _VERDICTS[decision.action]
    reasons = "".join(f"<li>{html.escape(reason)}</li>" for reason in decision.reasons)
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{evidence.deployed_id}</td><td>{evidence.percent}%</td>"
        f"<td>{evidence.requests}</td><td>{evidence.errors}</td><td>{evidence.error_rate:.2%}</td>"
        f"<td>{_number(evidence.p50_ms, '{:.1f}')}</td><td>{_number(evidence.p99_ms, '{:.1f}')}</td>"
        f"<td>{evidence.labelled}</td><td>{_number(evidence.accuracy, '{:.3f}')}</td></tr>"
        for name, evidence in _models(decision))
    thresholds = "".join(f"<tr><td>{html.escape(name)}</td><td>{value}</td></tr>"
                         for name, value in vars(decision.thresholds).items())
    window = (f"{datetime.datetime.fromtimestamp(decision.window_start, datetime.UTC):%Y-%m-%d %H:%M:%S} to "
              f"{datetime.datetime.fromtimestamp(decision.window_end, datetime.UTC):%H:%M:%S} UTC"
              if decision.window_end else "no window: nothing to decide")
    plots = "".join(_plots(decision)) if decision.canary else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE} .wait{{background:#fef7e0;color:#8a5a00}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p><span class='verdict {css}'>{html.escape(verdict)}</span></p>
<h2>Why</h2><ul>{reasons}</ul>
<p>Window: {window}</p>
<h2>Evidence per deployed model</h2>
<table><tr><th>model</th><th>id</th><th>traffic</th><th>requests</th><th>errors</th><th>error rate</th>
<th>p50 ms</th><th>p99 ms</th><th>labelled</th><th>accuracy</th></tr>{rows}</table>
<h2>Plots</h2><div class="plots">{plots}</div>
<h2>Thresholds (pipeline parameters)</h2><table><tr><th>threshold</th><th>value</th></tr>{thresholds}</table>
</body></html>"""
