from typing import NamedTuple

from components import project_component


@project_component
def deploy_model(model_name: str, version: str, endpoint_display_name: str, canary_percent: int, machine_type: str,
                 min_replica_count: int, max_replica_count: int, registry_uri: str, project: str, location: str,
                 request_log_table: str, request_log_sampling_rate: float
                 ) -> NamedTuple("Deployment", transition=str, version=str, deployed_model_id=str, traffic_split=str,
                                 smoke_test=str):
    """Gets or creates the endpoint, reads its live state, and puts the version (or alias) on it: at 100% as
    champion on an empty endpoint, else beside the champion at canary_percent; nothing if it is already
    deployed. Then the smoke test; a version that fails it is rolled back and this step fails. On Vertex the
    endpoint logs requests and responses to `request_log_table` at `request_log_sampling_rate` (created so, or
    brought to it): Model Monitoring reads the endpoint's traffic from that log."""
    import json
    from collections import namedtuple

    from deploy import deploy_version, open_backend
    from deploy.vertex import RequestLogging

    backend = open_backend(registry_uri, model_name, endpoint_display_name, project, location,
                           machine_type=machine_type, min_replica_count=min_replica_count,
                           max_replica_count=max_replica_count,
                           request_logging=RequestLogging(request_log_table, request_log_sampling_rate))
    outcome = deploy_version(backend, version, canary_percent)
    print(f"{outcome.transition}: version {outcome.version} is deployed model {outcome.deployed_model_id} on "
          f"{backend.where}; split {outcome.split}")
    return namedtuple("Deployment", ["transition", "version", "deployed_model_id", "traffic_split", "smoke_test"])(
        outcome.transition, outcome.version, outcome.deployed_model_id, json.dumps(outcome.split, sort_keys=True),
        outcome.smoke_test)
