from kfp.dsl import HTML, Artifact, Metrics, Output

from components import project_component


@project_component
def monitor_drift(monitoring_config: str, registry_uri: str, batch_input_uri: str, metrics: Output[Metrics],
                  report: Output[HTML], result: Output[Artifact]) -> bool:
    """The local monitor as a pipeline step, on a batch prediction's input against the champion's training
    data: each feature's drift metric as a KFP metric, the HTML drift report, the result. Returns whether
    any feature drifted (a single output, so a dsl.If can read it)."""
    import shutil
    from pathlib import Path

    from monitoring.config import load_monitoring_config
    from monitoring.monitor import monitor_once

    config = load_monitoring_config(monitoring_config)
    run = monitor_once(config, registry_uri, Path(result.path), batch_input_uri=batch_input_uri)
    for feature in run.result.features:
        if feature.value is not None:
            metrics.log_metric(f"{feature.name}.{feature.metric}", round(feature.value, 6))
    metrics.log_metric("drifted_features", len(run.result.drifted))
    metrics.log_metric("instances", run.result.current_rows)
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run.report, report.path)
    result.metadata.update({"drifted": [feature.name for feature in run.result.drifted]})
    return bool(run.result.drifted)
