"""The local Logging sink's filter: the comparisons sinks here use, and a clear refusal of anything else."""

from __future__ import annotations

import pytest

from monitoring.config import load_monitoring_config
from monitoring.local_logging import FilterError, LocalLogging, LogFilter

ENTRY = {"logName": "projects/p/logs/aiplatform.googleapis.com%2Fmodel_monitoring_anomaly", "severity": "WARNING",
         "jsonPayload": {"@type": "vertex-mlops.drift-alert.v1", "model": "m"}}


def test_the_configured_filter_matches_the_drift_alerts_only() -> None:
    """Our own drift alerts in any log, and Vertex Model Monitoring's anomaly log; nothing else."""
    log_filter = LogFilter(load_monitoring_config().sink_filter.format(project="p"))
    assert log_filter.matches(ENTRY)
    assert log_filter.matches(ENTRY | {"logName": "projects/p/logs/mlops-drift-alerts"})
    vertex = {"logName": "projects/p/logs/aiplatform.googleapis.com%2Fmodel_monitoring_anomaly", "jsonPayload": {}}
    assert log_filter.matches(vertex)
    assert not log_filter.matches(vertex | {"logName": "projects/other/logs/aiplatform.googleapis.com%2Fmodel_"
                                                        "monitoring_anomaly"})
    assert not log_filter.matches({"logName": "projects/p/logs/x", "jsonPayload": {"@type": "other"}})


@pytest.mark.parametrize(("text", "matches"), [
    ('jsonPayload."@type"="vertex-mlops.drift-alert.v1"', True),
    ('severity=WARNING AND jsonPayload.model="m"', True),
    ('severity=ERROR OR jsonPayload.model="m"', True),
    ('severity=ERROR OR jsonPayload.model="other"', False),
    ('jsonPayload.missing.deeper="x"', False),
])
def test_comparisons_joined_by_and_or(text: str, matches: bool) -> None:
    assert LogFilter(text).matches(ENTRY) is matches


@pytest.mark.parametrize("text", ['severity>=WARNING', 'NOT severity=INFO', 'logName:"model_monitoring"', ''])
def test_other_filter_syntax_is_refused_with_what_is_understood(text: str) -> None:
    with pytest.raises(FilterError, match='FIELD="VALUE"'):
        LogFilter(text)


def test_entries_are_stored_and_unmatched_ones_not_published(tmp_path) -> None:
    class Sink:
        filter = LogFilter('severity="ERROR"')

        def publish(self, entry: dict) -> str:
            raise AssertionError("an entry the filter does not match was published")

    logging = LocalLogging(tmp_path, [Sink()])
    assert logging.write(ENTRY) == []
    assert logging.entries() == [ENTRY]
