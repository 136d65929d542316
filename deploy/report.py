"""The canary decision as an HTML page: the verdict and why; plots of each version's share of traffic over the
rollout (observed in the request log, with the configured step of each analysis), each check per analysis
with its interval and threshold, the two predicted-probability distributions, and the step's error rate
and latency; then the checks, the evidence and the history as tables. Self-contained (plots inlined as
SVG), in the evaluation report's style. The canary is drawn in matplotlib's first colour, the champion in
its second."""

from __future__ import annotations

import datetime
import html
import math
from typing import Any

from deploy.decision import Check, Decision, ModelEvidence
from evaluation.report import _STYLE, _svg

_VERDICTS = {"advance": ("ok", "ADVANCE: the canary goes to its next step"),
             "promote": ("ok", "PROMOTE: the canary takes 100% and becomes champion"),
             "hold": ("wait", "HOLD: nothing changes until the evidence says more"),
             "rollback": ("no", "ROLL BACK: the champion takes 100%, the canary is undeployed (alias rejected)"),
             "none": ("wait", "NOTHING TO DECIDE: no canary on the endpoint")}
CANARY, CHAMPION = "C0", "C1"
_STATUS_COLOURS = {"pass": "#137333", "fail": "#c5221f", "inconclusive": "#9aa0a6", "skipped": "#dadce0"}
# The checks drawn per analysis: those with a number to compare with a threshold.
_PLOTTED = ("Brier score", "AUC", "prediction parity", "error rate", "p99 latency")


def _clock(seconds: float) -> str:
    return f"{datetime.datetime.fromtimestamp(seconds, datetime.UTC):%Y-%m-%d %H:%M:%S} UTC"


def _models(decision: Decision) -> list[tuple[str, ModelEvidence, str]]:
    return [(f"{role} v{evidence.version}", evidence, colour) for role, evidence, colour in
            (("canary", decision.canary, CANARY), ("champion", decision.champion, CHAMPION)) if evidence is not None]


def _traffic_plot(decision: Decision, plt) -> str:
    figure, axis = plt.subplots(figsize=(6.5, 3.4))
    models = _models(decision)
    buckets = sorted({bucket for _, evidence, _ in models for bucket in evidence.logged.traffic})
    start = decision.window_start
    totals = {bucket: sum(evidence.logged.traffic.get(bucket, 0) for _, evidence, _ in models) for bucket in buckets}
    for name, evidence, colour in models:
        shares = [100.0 * evidence.logged.traffic.get(bucket, 0) / totals[bucket] for bucket in buckets]
        axis.plot([max(0.0, bucket - start) / 60 for bucket in buckets], shares, "o-", color=colour, markersize=3,
                  label=f"{name}: logged share")
    configured = [((row["decided_at"] - start) / 60, row["canary_percent"], row["next_percent"])
                  for row in decision.history]
    if configured:
        times = [0.0] + [point for at, _, _ in configured for point in (at, at)]
        weights = [configured[0][1]] + [weight for _, before, after in configured for weight in (before, after)]
        axis.plot(times, weights, "--", color=CANARY, linewidth=1.5, label="canary: configured weight")
    axis.set(title="Traffic per version over the rollout", ylabel="% of traffic", ylim=(0, 105),
             xlabel=f"minutes since the canary went live ({_clock(start)})")
    axis.legend(fontsize="small")
    return _svg(figure)


def _checks_plot(decision: Decision, plt) -> str:
    rows = decision.history or ({"canary_percent": decision.percent, "checks": [c.to_dict() for c in decision.checks]},)
    figure, axes = plt.subplots(1, len(_PLOTTED), figsize=(12, 3.2))
    for axis, name in zip(axes, _PLOTTED, strict=True):
        threshold = None
        for index, row in enumerate(rows, start=1):
            check = next((c for c in row["checks"] if c["name"] == name), None)
            if check is None:
                continue
            threshold = check["threshold"] if check["threshold"] is not None else threshold
            if check["value"] is None or not math.isfinite(check["value"]):
                axis.plot(index, 0, "x", color=_STATUS_COLOURS[check["status"]])
                continue
            low = check["value"] - check["lower"] if check["lower"] is not None else 0.0
            high = check["upper"] - check["value"] if check["upper"] is not None else 0.0
            axis.errorbar(index, check["value"], yerr=[[low], [high]], fmt="o", capsize=3,
                          color=_STATUS_COLOURS[check["status"]])
        if threshold is not None:
            axis.axhline(threshold, linestyle="--", color=CHAMPION, linewidth=1.2, label="threshold")
        axis.set_xticks(range(1, len(rows) + 1), [f"#{i}\n{row['canary_percent']}%" for i, row in
                                                  enumerate(rows, start=1)], fontsize="x-small")
        axis.set_title(name, fontsize="small")
        axis.set_xlim(0.5, len(rows) + 0.5)
    axes[0].set_ylabel("canary against champion")
    figure.suptitle("Each check per analysis (step): estimate, interval, threshold; "
                    "green pass, red fail, grey inconclusive", fontsize="small")
    return _svg(figure)


def _distribution_plot(decision: Decision, plt) -> str:
    figure, axis = plt.subplots(figsize=(5, 3.4))
    for offset, (name, evidence, colour) in zip((-0.012, 0.012), _models(decision), strict=False):
        counts = list(evidence.logged.histogram)
        total = sum(counts) or 1
        bins = len(counts) or 1
        axis.bar([(index + 0.5) / bins + offset for index in range(len(counts))], [c / total for c in counts],
                 width=0.45 / bins, color=colour, label=f"{name} ({sum(counts)} predictions)")
    axis.set(title="Predicted probability over the rollout", xlabel="probability", ylabel="share", xlim=(0, 1))
    axis.legend(fontsize="small")
    return _svg(figure)


def _step_plot(decision: Decision, plt) -> str:
    models = _models(decision)
    figure, (errors, latency) = plt.subplots(1, 2, figsize=(6.5, 3.4))
    names = [name for name, _, _ in models]
    colours = [colour for _, _, colour in models]
    errors.bar(names, [100 * evidence.step.error_rate for _, evidence, _ in models], color=colours)
    errors.set(title="Error rate at this step", ylabel="% of requests",
               ylim=(0, max(1.0, *(110 * evidence.step.error_rate for _, evidence, _ in models))))
    for offset, percentile, hatch in ((-0.2, "p50", ""), (0.2, "p99", "//")):
        values = [getattr(evidence.step, f"{percentile}_ms") or 0.0 for _, evidence, _ in models]
        latency.bar([index + offset for index in range(len(models))], values, width=0.4, color=colours, hatch=hatch,
                    label=percentile)
    latency.set_xticks(range(len(models)), names)
    latency.set(title="Latency at this step", ylabel="ms")
    latency.legend(fontsize="small", loc="lower right")
    return _svg(figure)


def _plots(decision: Decision) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return [_traffic_plot(decision, plt), _checks_plot(decision, plt), _distribution_plot(decision, plt),
            _step_plot(decision, plt)]


def _number(value: float | None, pattern: str) -> str:
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else pattern.format(value)


def _check_row(check: Check | dict[str, Any]) -> str:
    data = check.to_dict() if isinstance(check, Check) else check
    interval = ("–" if data["lower"] is None else
                f"[{_number(data['lower'], '{:+.4f}')}, {_number(data['upper'], '{:+.4f}')}]")
    return (f"<tr><td>{html.escape(data['name'])}</td><td class='{data['status']}'>{data['status']}"
            f"{' (hard)' if data['hard'] else ''}</td><td>{_number(data['value'], '{:+.4f}')}</td><td>{interval}</td>"
            f"<td>{_number(data['threshold'], '{:g}')}</td><td>{html.escape(data['detail'])}</td></tr>")


def decision_report(decision: Decision, title: str) -> str:
    css, verdict = _VERDICTS[decision.action]
    if decision.action in ("advance", "hold"):
        verdict += f" ({decision.percent}% -> {decision.next_percent}%)"
    reasons = "".join(f"<li>{html.escape(reason)}</li>" for reason in decision.reasons)
    checks = "".join(_check_row(check) for check in decision.checks)
    evidence = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{model.deployed_id}</td><td>{model.percent}%</td>"
        f"<td>{model.step.requests}</td><td>{model.step.errors}</td><td>{model.step.error_rate:.2%}</td>"
        f"<td>{_number(model.step.p50_ms, '{:.1f}')}</td><td>{_number(model.step.p99_ms, '{:.1f}')}</td>"
        f"<td>{model.logged.predictions}</td><td>{model.logged.labelled}</td><td>{_number(model.brier, '{:.4f}')}</td>"
        f"<td>{_number(model.log_loss, '{:.4f}')}</td></tr>" for name, model, _ in _models(decision))
    history = "".join(
        f"<tr><td>{index}</td><td>{_clock(row['decided_at'])}</td><td>{row['canary_percent']}%</td>"
        f"<td>{html.escape(row['action'])}</td><td>{row['next_percent']}%</td>"
        f"<td>{html.escape('; '.join(c['name'] + ' ' + c['status'] for c in row['checks'] if c['status'] != 'pass'))}"
        f"</td></tr>" for index, row in enumerate(decision.history, start=1))
    settings = "".join(f"<tr><td>{html.escape(name)}</td><td>{html.escape(str(value))}</td></tr>"
                       for name, value in (vars(decision.rollout) | vars(decision.thresholds)).items())
    window = (f"rollout since {_clock(decision.window_start)}, this step since {_clock(decision.step_start)}, "
              f"decided {_clock(decision.window_end)}" if decision.window_end else "no rollout: nothing to decide")
    plots = "".join(_plots(decision)) if decision.canary else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE} .wait{{background:#fef7e0;color:#8a5a00}} td.pass{{color:#137333}} td.fail{{color:#c5221f}}
td.inconclusive,td.skipped{{color:#5f6368}} td:last-child{{text-align:left}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p><span class='verdict {css}'>{html.escape(verdict)}</span></p>
<h2>Why</h2><ul>{reasons}</ul>
<p>{window}; {html.escape(decision.rollout.describe(decision.percent)) if decision.canary else ''}</p>
<h2>Plots</h2><div class="plots">{plots}</div>
<h2>Checks</h2><table><tr><th>check</th><th>status</th><th>estimate</th><th>interval</th><th>threshold</th>
<th>detail</th></tr>{checks}</table>
<h2>Evidence per deployed model</h2>
<table><tr><th>model</th><th>id</th><th>traffic</th><th>requests (step)</th><th>errors</th><th>error rate</th>
<th>p50 ms</th><th>p99 ms</th><th>logged predictions</th><th>labelled</th><th>Brier</th><th>log loss</th></tr>
{evidence}</table>
<h2>Analyses of this canary</h2><table><tr><th>#</th><th>decided</th><th>canary at</th><th>action</th>
<th>then</th><th>checks not passed</th></tr>{history}</table>
<h2>Rollout and thresholds (pipeline parameters)</h2><table><tr><th>parameter</th><th>value</th></tr>{settings}</table>
</body></html>"""
