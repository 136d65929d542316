"""Canary decision pipeline: promote, roll back or wait, on the evidence of a window.

Steps, in the order they run:
1. Decide: under the endpoint's lock (two decisions never both act; a transition a crash interrupted is
   finished first), find the canary beside the champion and gather, over the last `window_minutes`,
   requests, errors, latency p50/p99, the prediction distribution per deployed model and accuracy on
   labelled feedback where it exists (locally the local endpoint's stats and replayed rows; on Vertex
   Cloud Monitoring's online prediction metrics by deployed_model_id). Then:
   - fewer than `min_requests` canary requests: wait, nothing changes;
   - error rate or p99 latency over the champion's by more than the thresholds, or accuracy below it:
     roll back (champion 100%, canary undeployed, alias `rejected`);
   - otherwise promote (canary 100%, old champion undeployed; aliases `champion`, `previous`).
   Writes KFP Metrics and an HTML report of the evidence.
"""

from kfp import dsl

from components.decide_canary import decide_canary
from contract.dataset import load_dataset_config
from contract.paths import DEFAULT_DATASET_CONFIG
from deploy.decision import Thresholds
from registry.model_registry import VERTEX

PIPELINE_NAME = "canary-decision-pipeline"


def build_canary_decision_pipeline():
    default_model_name = load_dataset_config(DEFAULT_DATASET_CONFIG).model_name
    defaults = Thresholds()

    @dsl.pipeline(name=PIPELINE_NAME, description="Promote, roll back or wait: the canary against the champion.")
    def canary_decision_pipeline(
        model_name: str = default_model_name,
        endpoint_display_name: str = "",
        registry_uri: str = VERTEX,
        project: str = "",
        location: str = "us-central1",
        window_minutes: float = 60.0,
        min_requests: int = defaults.min_requests,
        max_error_rate_increase: float = defaults.max_error_rate_increase,
        max_p99_increase_ms: float = defaults.max_p99_increase_ms,
        min_labelled: int = defaults.min_labelled,
        max_accuracy_drop: float = defaults.max_accuracy_drop,
    ):
        decide_canary(model_name=model_name, endpoint_display_name=endpoint_display_name, registry_uri=registry_uri,
                      project=project, location=location, window_minutes=window_minutes, min_requests=min_requests,
                      max_error_rate_increase=max_error_rate_increase, max_p99_increase_ms=max_p99_increase_ms,
                      min_labelled=min_labelled, max_accuracy_drop=max_accuracy_drop,
                      ).set_display_name("1. Decide: promote, roll back or wait").set_caching_options(False)

    return canary_decision_pipeline
