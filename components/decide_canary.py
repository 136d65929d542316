from kfp.dsl import HTML, Metrics, Output

from components import project_component


@project_component
def decide_canary(model_name: str, endpoint_display_name: str, registry_uri: str, project: str, location: str,
                  window_minutes: float, min_requests: int, max_error_rate_increase: float,
                  max_p99_increase_ms: float, min_labelled: int, max_accuracy_drop: float,
                  metrics: Output[Metrics], report: Output[HTML]) -> str:
    """Evidence for the canary against the champion over the window, then promote, roll back or wait
    (under the endpoint's lock: two decisions never both act). Returns the action."""
    from pathlib import Path

    from deploy import open_backend
    from deploy.decision import Thresholds, decide_canary
    from deploy.report import decision_report

    thresholds = Thresholds(min_requests=min_requests, max_error_rate_increase=max_error_rate_increase,
                            max_p99_increase_ms=max_p99_increase_ms, min_labelled=min_labelled,
                            max_accuracy_drop=max_accuracy_drop)
    backend = open_backend(registry_uri, model_name, endpoint_display_name, project, location)
    decision = decide_canary(backend, thresholds, window_seconds=window_minutes * 60.0)
    for name, value in decision.metrics().items():
        metrics.log_metric(name, value)
    report.uri += ".html"  # browsers and the Vertex UI go by the file name
    Path(report.path).write_text(decision_report(decision, f"Canary decision for {model_name} on {backend.where}"))
    print(f"{decision.action.upper()}: {'; '.join(decision.reasons)}")
    return decision.action
