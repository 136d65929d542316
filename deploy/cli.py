"""`python runner.py canary ...`: traffic and feedback for a canary on the local endpoint.

    python runner.py canary replay --data-uri data/processed/2015 --rate 250 --count 1000 [--start 1000]
    python runner.py canary feedback labels.jsonl

`replay` sends the partition's labelled rows through the running endpoint (`python runner.py endpoint
serve`), one per request at the given rate, each instance with an `instance_id`, and writes each answered
row's label to the feedback table (default bq://local-mlops.canary.feedback in the local BigQuery stand-in),
which the canary decision joins with the endpoint's request log. `feedback` appends labels that arrived
later, one JSON object per line ({"instance_id": "...", "label": 0 or 1, "feedback_time": optional epoch
seconds or ISO 8601}); a row whose instance_id matches no logged request refuses the file, and nothing is
written. The decision itself is a pipeline: `python runner.py --run local --pipeline canary_decision`.
"""

from __future__ import annotations

import argparse
import sys
import time

from batch_prediction.local_bigquery import BigQueryUriError
from contract.dataset import DatasetConfigError, load_dataset_config
from contract.paths import DEFAULT_DATASET_CONFIG
from deploy.evidence import CanaryTables, EvidenceError
from deploy.local import LocalBackend, local_endpoint_dir
from deploy.local_evidence import DEFAULT_TABLES, FeedbackError, read_feedback_file, write_feedback
from deploy.replay import replay
from pipelines.settings import SETTINGS
from serving.endpoint import EndpointError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="runner.py canary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    replay_command = commands.add_parser("replay", help="replay labelled rows through the local endpoint")
    replay_command.add_argument("--data-uri", required=True, help="a partition (folder or gs:// prefix) of batches")
    replay_command.add_argument("--dataset-config", default=DEFAULT_DATASET_CONFIG)
    replay_command.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    replay_command.add_argument("--count", type=int, default=0, help="requests to send (default: each row once)")
    replay_command.add_argument("--start", type=int, default=0, help="the first row to send (default 0)")
    feedback_command = commands.add_parser("feedback", help="append labels (JSON lines) to the feedback table")
    feedback_command.add_argument("file", help="JSON lines: {\"instance_id\": ..., \"label\": 0 or 1}")
    for command in (replay_command, feedback_command):
        command.add_argument("--registry-uri", default=str(SETTINGS.local_dir / "registry"))
        command.add_argument("--endpoint-display-name", default="",
                             help="a named local endpoint (default: the one beside the registry)")
        command.add_argument("--feedback-table", default=DEFAULT_TABLES.feedback,
                             help=f"bq://PROJECT.DATASET.TABLE in the local stand-in (default "
                                  f"{DEFAULT_TABLES.feedback})")
    args = parser.parse_args(argv)
    if args.command == "replay" and (args.count < 0 or args.start < 0):
        parser.error(f"--count and --start must be >= 0, got {args.count} and {args.start}")
    try:
        tables = CanaryTables(DEFAULT_TABLES.request_log, args.feedback_table)
        model_name = load_dataset_config(DEFAULT_DATASET_CONFIG if args.command == "feedback"
                                         else args.dataset_config).model_name
        backend = LocalBackend(local_endpoint_dir(args.registry_uri, args.endpoint_display_name), args.registry_uri,
                               model_name)
        if args.command == "feedback":
            written = write_feedback(backend.query_runner(tables), read_feedback_file(args.file), time.time())
            print(f"{written} feedback row(s) written to {tables.feedback}")
            return 0
        summary = replay(backend, args.data_uri, args.dataset_config, args.rate, args.count,
                         print_every=max(1, (args.count or 1000) // 5), start=args.start, tables=tables)
    except (DatasetConfigError, EndpointError, EvidenceError, FeedbackError, BigQueryUriError, ValueError,
            FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"replayed {summary.requests} requests in {summary.seconds:.1f} s: {summary.errors} errors; answered by "
          f"deployed model {summary.by_model}; {summary.labelled} labels written to {tables.feedback}")
    return 0
