"""Canary decision pipeline: advance, promote, hold or roll back the canary, on statistical evidence.

Steps, in the order they run:
1. Decide: the rollout and thresholds are checked first (bad ones change nothing). Then, under the
   endpoint's lock (two decisions never both act; a transition a crash interrupted is finished first),
   find the canary beside the champion and analyse it (deploy/decision.py):
   - at its current step: requests, error rate and p99 latency against the champion's (locally the local
     endpoint's router, on Vertex Cloud Monitoring by deployed_model_id);
   - since it went live: the endpoint's request-response log (`request_log_table`, on Vertex the BigQuery
     table the endpoint logs to) joined with the feedback table of labels (`feedback_table`): Brier score
     against the champion's with a confidence sequence (repeated looks keep false alarms at `alpha`), AUC
     where both classes are frequent enough, JS divergence of the predicted-probability distributions.
   Then: a hard failure (every canary request failing) rolls back at once; `failure_threshold` failed
   analyses in a row roll back (fewer hold); too little evidence (`min_requests`, `min_bake_minutes` at
   the step) holds; otherwise the canary advances to its next `step_weights` share, or, from the last
   step, is promoted to 100% only once every check passed. Writes KFP Metrics, the analysis to the
   `canary_analyses` table beside the feedback table, and an HTML report (traffic over time per version,
   each check per step with its interval and threshold, why).
"""

from kfp import dsl

from components.decide_canary import decide_canary
from contract.dataset import load_dataset_config
from contract.paths import DEFAULT_DATASET_CONFIG
from deploy.decision import Thresholds
from deploy.rollout import Rollout
from registry.model_registry import VERTEX

PIPELINE_NAME = "canary-decision-pipeline"


def build_canary_decision_pipeline():
    default_model_name = load_dataset_config(DEFAULT_DATASET_CONFIG).model_name
    rollout, thresholds = Rollout(), Thresholds()

    @dsl.pipeline(name=PIPELINE_NAME, description="Advance, promote, hold or roll back the canary.")
    def canary_decision_pipeline(
        model_name: str = default_model_name,
        endpoint_display_name: str = "",
        registry_uri: str = VERTEX,
        project: str = "",
        location: str = "us-central1",
        request_log_table: str = "",  # bq://PROJECT.DATASET.TABLE; "" locally: the local endpoint's log
        feedback_table: str = "",  # bq://PROJECT.DATASET.TABLE; "" locally: bq://local-mlops.canary.feedback
        step_weights: list = list(rollout.step_weights),  # noqa: B006 (KFP reads the default; never mutated)
        min_bake_minutes: float = rollout.min_bake_minutes,
        min_requests: int = rollout.min_requests,
        failure_threshold: int = rollout.failure_threshold,
        max_error_rate_increase: float = thresholds.max_error_rate_increase,
        max_p99_increase_ms: float = thresholds.max_p99_increase_ms,
        min_labelled: int = thresholds.min_labelled,
        max_brier_increase: float = thresholds.max_brier_increase,
        min_positives: int = thresholds.min_positives,
        max_auc_drop: float = thresholds.max_auc_drop,
        max_js_divergence: float = thresholds.max_js_divergence,
        alpha: float = thresholds.alpha,
    ):
        decide_canary(model_name=model_name, endpoint_display_name=endpoint_display_name, registry_uri=registry_uri,
                      project=project, location=location, request_log_table=request_log_table,
                      feedback_table=feedback_table, step_weights=step_weights, min_bake_minutes=min_bake_minutes,
                      min_requests=min_requests, failure_threshold=failure_threshold,
                      max_error_rate_increase=max_error_rate_increase, max_p99_increase_ms=max_p99_increase_ms,
                      min_labelled=min_labelled, max_brier_increase=max_brier_increase, min_positives=min_positives,
                      max_auc_drop=max_auc_drop, max_js_divergence=max_js_divergence, alpha=alpha,
                      ).set_display_name("1. Decide: advance, promote, hold or roll back").set_caching_options(False)

    return canary_decision_pipeline
