"""The canary's evidence on Vertex AI: BigQuery for the log, Cloud Monitoring for the step's health.

- The endpoint's request-response log (a BigQuery table with Vertex's documented columns; the endpoint
  logs to it when created with request-response logging) joined with the feedback table: the SQL of
  deploy/evidence.py, run by the real google-cloud-bigquery client as query jobs (`Client.query`: REST
  `jobs.insert`, then `jobs.getQueryResults` and its pages, `jobs.get` while it waits). No location is
  given: BigQuery runs a job where the tables it reads live (a `US` dataset from a `us-central1`
  pipeline included). The analyses history is written there too (one `CREATE TABLE IF NOT EXISTS` and
  one `INSERT` per decision).
- Requests, errors and latency per deployed model over the step: Cloud Monitoring (deploy/monitoring.py).

With BIGQUERY_EMULATOR_HOST set (a test's stand-in, tests/bigquery_stand_in.py), the client goes there
without credentials, as google-cloud-storage does with STORAGE_EMULATOR_HOST. What the calls need (IAM):
`bigquery.jobs.create` on the project; `bigquery.tables.getData` on the log and feedback tables;
`bigquery.tables.create`, `bigquery.tables.updateData` and `bigquery.tables.getData` on the analyses
table's dataset; `monitoring.timeSeries.list` on the project.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from deploy.evidence import CanaryTables, EvidenceError, QueryParameter
from deploy.monitoring import step_stats_from_monitoring

__all__ = ["BigQueryRunner", "step_stats_from_monitoring"]


class BigQueryRunner:
    """deploy/evidence.py's SQL through google-cloud-bigquery, jobs billed to `project`."""

    def __init__(self, tables: CanaryTables | None, project: str) -> None:
        if tables is None:
            raise EvidenceError("on Vertex AI the canary's evidence is the endpoint's request-response log in "
                                "BigQuery: pass request_log_table=bq://PROJECT.DATASET.TABLE (the table the endpoint "
                                "logs to) and feedback_table=bq://PROJECT.DATASET.feedback")
        self.tables = tables
        self.project = project
        self.where = f"BigQuery ({tables.request_log}, {tables.feedback})"
        self._client = None

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        if self._client is None:
            credentials = AnonymousCredentials() if os.environ.get("BIGQUERY_EMULATOR_HOST") else None
            self._client = bigquery.Client(project=self.project, credentials=credentials)
        return self._client

    def run(self, sql: str, parameters: Sequence[QueryParameter] = ()) -> list[dict[str, Any]]:
        from google.api_core import exceptions
        from google.cloud import bigquery

        typed = [bigquery.ScalarQueryParameter(parameter.name, parameter.type, parameter.value)
                 for parameter in parameters]
        try:
            job = self.client().query(sql, job_config=bigquery.QueryJobConfig(query_parameters=typed))
            return [dict(row.items()) for row in job.result()]
        except exceptions.GoogleAPICallError as error:
            raise EvidenceError(f"BigQuery refused the canary's evidence query on {self.where}: "
                                f"{error.message}") from None
