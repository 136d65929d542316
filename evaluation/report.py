"""HTML reports a person would rather look at than read: one self-contained file
(plots inlined as SVG), viewable from a laptop or the Vertex UI's HTML artifact."""

from __future__ import annotations

import html
import io
import math

from evaluation.gate import CANDIDATE, CHAMPION, DECISION_THRESHOLD, GATED_METRIC, OVERALL, EvaluationOutcome

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.5em} .verdict{padding:.6em 1em;border-radius:6px;font-weight:600;display:inline-block}
.ok{background:#e6f4ea;color:#137333} .no{background:#fce8e6;color:#a50e0e}
table{border-collapse:collapse;margin:1em 0} td,th{border:1px solid #ddd;padding:.3em .7em;text-align:right}
th{background:#f5f5f5} td:first-child,th:first-child{text-align:left} .plots{display:flex;flex-wrap:wrap;gap:1em}"""


def _svg(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]


def _plots(outcome: EvaluationOutcome) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [CANDIDATE] + ([CHAMPION] if outcome.has_champion else [])
    figures = []
    figure, axis = plt.subplots(figsize=(4.2, 4))
    for model in models:
        auc = outcome.metrics[OVERALL][model].get(GATED_METRIC, float("nan"))
        axis.plot(outcome.roc[model]["fpr"], outcome.roc[model]["tpr"], label=f"{model} (AUC {auc:.3f})")
    axis.plot([0, 1], [0, 1], ":", color="grey")
    axis.set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    axis.legend(loc="lower right")
    figures.append(_svg(figure))

    figure, axis = plt.subplots(figsize=(4.2, 4))
    for model in models:
        axis.plot(outcome.calibration[model]["predicted"], outcome.calibration[model]["observed"], "o-", label=model)
    axis.plot([0, 1], [0, 1], ":", color="grey")
    axis.set(title="Calibration", xlabel="mean predicted probability", ylabel="observed positive rate")
    axis.legend(loc="upper left")
    figures.append(_svg(figure))

    slices = sorted(name for name in outcome.metrics if name != OVERALL)
    figure, axis = plt.subplots(figsize=(6, 0.3 * len(slices) + 1.2))
    for offset, model in ((-0.2, CANDIDATE), (0.2, CHAMPION)):
        if model not in models:
            continue
        values = [outcome.metrics[name].get(model, {}).get(GATED_METRIC, float("nan")) for name in slices]
        axis.barh([index + offset for index in range(len(slices))], values, height=0.4, label=model)
    axis.axvline(outcome.thresholds.min_auc, color="red", linestyle="--", label="floor (overall)")
    axis.set_yticks(range(len(slices)), slices)
    axis.set(title="AUC per slice", xlim=(0, 1))
    axis.legend(loc="lower right", fontsize="small")
    figures.append(_svg(figure))
    return figures


def _format(name: str, value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"  # undefined: e.g. AUC of a one-class slice, precision with no positive prediction
    return f"{value:.0f}" if name == "example_count" else f"{value:.4f}"


def _table(outcome: EvaluationOutcome) -> str:
    """One row per slice; with a champion each cell reads `candidate / champion`."""
    models = [CANDIDATE] + ([CHAMPION] if outcome.has_champion else [])
    names = ["example_count", "auc", "accuracy", "precision", "recall", "calibration"]
    header = "".join(f"<th>{name}</th>" for name in names)
    rows = []
    for slice_name in [OVERALL] + sorted(name for name in outcome.metrics if name != OVERALL):
        cells = "".join("<td>" + " / ".join(_format(name, outcome.metrics[slice_name].get(model, {}).get(name))
                                            for model in models) + "</td>" for name in names)
        rows.append(f"<tr><td>{html.escape(slice_name)}</td>{cells}</tr>")
    legend = f"<p>Cells: {' / '.join(models)}.</p>" if len(models) > 1 else ""
    return f"{legend}<table><tr><th>slice</th>{header}</tr>{''.join(rows)}</table>"


def _thresholds(outcome: EvaluationOutcome) -> str:
    """Every check that applied to this candidate, and where its threshold was set."""
    thresholds = outcome.thresholds
    change = f"at most {thresholds.max_auc_regression} below the champion's {GATED_METRIC}" + (
        "" if outcome.has_champion else " (ignored: no champion yet, this is the first run)")
    checks = [("labelled eval examples", f"at least {thresholds.gate.min_eval_examples}",
               "data set config: gate.min_eval_examples"),
              (f"{GATED_METRIC} (overall)", f"at least {thresholds.min_auc}", "pipeline parameter min_auc"),
              *((f"{metric} (overall)", f"at least {floor}", "data set config: gate.metric_floors")
                for metric, floor in thresholds.gate.metric_floors.items()),
              (f"{GATED_METRIC} against the champion", change, "pipeline parameter max_auc_regression")]
    left = "style='text-align:left'"
    rows = "".join(f"<tr><td>{html.escape(check)}</td><td {left}>{html.escape(required)}</td>"
                   f"<td {left}>{html.escape(source)}</td></tr>" for check, required, source in checks)
    return f"<table><tr><th>check</th><th {left}>required</th><th {left}>set by</th></tr>{rows}</table>"


def evaluation_report(outcome: EvaluationOutcome, title: str, lineage: dict[str, str]) -> str:
    verdict = ("<span class='verdict ok'>BLESSED: registered as challenger</span>" if outcome.blessed else
               "<span class='verdict no'>NOT BLESSED: not registered, gets no traffic</span>")
    failures = "".join(f"<li>{html.escape(failure)}</li>" for failure in outcome.failures) or "<li>none</li>"
    lineage_rows = "".join(f"<tr><td>{html.escape(k)}</td><td style='text-align:left'>{html.escape(str(v))}</td></tr>"
                           for k, v in lineage.items())
    confusion = outcome.confusion
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{verdict}</p>
<h2>Failed checks</h2><ul>{failures}</ul>
<h2>Checks that applied</h2>{_thresholds(outcome)}
<h2>Plots</h2><div class="plots">{''.join(_plots(outcome))}</div>
<h2>Metrics per slice</h2>{_table(outcome)}
<h2>Confusion at threshold {DECISION_THRESHOLD} (candidate)</h2>
<table><tr><th></th><th>predicted positive</th><th>predicted negative</th></tr>
<tr><td>actual positive</td><td>{confusion['tp']}</td><td>{confusion['fn']}</td></tr>
<tr><td>actual negative</td><td>{confusion['fp']}</td><td>{confusion['tn']}</td></tr></table>
<h2>Lineage</h2><table>{lineage_rows}</table>
</body></html>"""
