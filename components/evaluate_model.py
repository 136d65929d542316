from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components import project_component


@project_component
def evaluate_model(model: Input[Model], examples: Input[Dataset], dataset_config: str, model_name: str,
                   champion_uri: str, champion_version: str, min_auc: float, max_auc_regression: float,
                   data_uri: str, metrics: Output[Metrics], classification_metrics: Output[ClassificationMetrics],
                   report: Output[HTML], evaluation: Output[Artifact], beam_runner: str = "DirectRunner",
                   beam_pipeline_args: list = []) -> bool:  # noqa: B006 (KFP reads the default)
    """TFMA against the champion, on Beam (`beam_runner`, `beam_pipeline_args`: dataprep.beam_options).
    Returns the blessing, which decides whether the model is registered (a single output: kfp.local
    resolves only `Output` in a dsl.If condition, not a named output)."""
    from pathlib import Path

    from contract.artifacts import OUTCOME_FILE
    from contract.dataset import load_dataset_config
    from contract.model_inputs import InputSpec
    from dataprep.ingest import load_manifest
    from evaluation.gate import OVERALL, Thresholds, evaluate_examples
    from evaluation.report import evaluation_report
    from registry.model_registry import CHAMPION, require_same_inputs

    config = load_dataset_config(dataset_config)
    if champion_uri:  # a champion trained on other inputs is no baseline: refuse to compare
        require_same_inputs(model_name, champion_version, champion_uri, InputSpec.load(model.path), (CHAMPION,))
    outcome = evaluate_examples(examples.path, model.path, champion_uri, config,
                                Thresholds(min_auc=min_auc, max_auc_regression=max_auc_regression, gate=config.gate),
                                evaluation.path, beam_runner, beam_pipeline_args)
    (Path(evaluation.path) / OUTCOME_FILE).write_text(outcome.to_json())
    evaluation.metadata.update({"blessed": outcome.blessed, "failures": outcome.failures})

    for name, value in outcome.defined_metrics().items():  # e.g. precision is undefined with no positive prediction
        metrics.log_metric(name, round(value, 4))
    metrics.log_metric("blessed", outcome.blessed)
    roc = outcome.roc["candidate"]
    classification_metrics.log_roc_curve(roc["fpr"], roc["tpr"], [i / (len(roc["fpr"]) - 1 or 1)
                                                                  for i in range(len(roc["fpr"]))])
    c = outcome.confusion
    classification_metrics.log_confusion_matrix(["no", "yes"], [[c["tn"], c["fp"]], [c["fn"], c["tp"]]])

    lineage = {"data_uri": data_uri, "model": model.uri, "champion": champion_uri or "(none: first run)",
               "schema": config.schema_uri, "eval rows": str(load_manifest(examples.path).eval_rows)}
    # Browsers and the Vertex UI go by the file name: the recorded URI (kfp.local and Vertex both take it
    # from this executor's output) ends in .html, and the file is written there.
    report.uri += ".html"
    Path(report.path).write_text(evaluation_report(outcome, f"Evaluation of {model_name}", lineage))
    verdict = "BLESSED" if outcome.blessed else "NOT BLESSED: " + "; ".join(outcome.failures)
    print(f"{verdict} (AUC {outcome.metrics[OVERALL]['candidate']['auc']:.4f})")
    return outcome.blessed
