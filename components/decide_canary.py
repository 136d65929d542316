from kfp.dsl import HTML, Metrics, Output

from components import project_component


@project_component
def decide_canary(model_name: str, endpoint_display_name: str, registry_uri: str, project: str, location: str,
                  request_log_table: str, feedback_table: str, step_weights: list, min_bake_minutes: float,
                  min_requests: int, failure_threshold: int, max_error_rate_increase: float,
                  max_p99_increase_ms: float, min_labelled: int, max_brier_increase: float, min_positives: int,
                  max_auc_drop: float, max_js_divergence: float, alpha: float,
                  metrics: Output[Metrics], report: Output[HTML]) -> str:
    """One analysis of the canary against the champion (step evidence, and the request-response log joined
    with the feedback table), then advance, promote, hold or roll back, under the endpoint's lock. The
    rollout and thresholds are checked before the endpoint is touched. Returns the action."""
    from pathlib import Path

    from deploy import open_backend
    from deploy.decision import Thresholds, decide_canary
    from deploy.evidence import CanaryTables
    from deploy.report import decision_report
    from deploy.rollout import Rollout

    # KFP hands a list parameter's numbers over as floats (JSON numbers): whole ones are the percents.
    weights = tuple(int(weight) if isinstance(weight, float) and weight.is_integer() else weight
                    for weight in step_weights)
    rollout = Rollout(step_weights=weights, min_bake_minutes=min_bake_minutes, min_requests=min_requests,
                      failure_threshold=failure_threshold)
    thresholds = Thresholds(max_error_rate_increase=max_error_rate_increase, max_p99_increase_ms=max_p99_increase_ms,
                            min_labelled=min_labelled, max_brier_increase=max_brier_increase,
                            min_positives=min_positives, max_auc_drop=max_auc_drop,
                            max_js_divergence=max_js_divergence, alpha=alpha)
    tables = CanaryTables(request_log_table, feedback_table) if request_log_table or feedback_table else None
    backend = open_backend(registry_uri, model_name, endpoint_display_name, project, location)
    decision = decide_canary(backend, thresholds, rollout, tables)
    for name, value in decision.metrics().items():
        metrics.log_metric(name, value)
    report.uri += ".html"  # browsers and the Vertex UI go by the file name
    Path(report.path).write_text(decision_report(decision, f"Canary decision for {model_name} on {backend.where}"))
    print(f"{decision.action.upper()}: {'; '.join(decision.reasons)}")
    return decision.action
