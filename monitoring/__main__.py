"""Monitoring from the command line.

    python -m monitoring run [--config monitoring/chicago_taxi.yaml] [--request-log DIR | --batch-input URI]
        [--window-end T] [--window-hours N] [--alert-time T] [--sink-topic projects/P/topics/T]
        # the local monitor: drift of the endpoint's request log (default local/endpoint/request_log) or of a
        # batch's input against the champion's training data; writes report.html and result.json; on drift,
        # logs a drift alert entry (local/logging/) that a sink with the config's filter publishes to the topic
        # on the Pub/Sub emulator (PUBSUB_EMULATOR_HOST)
    python -m monitoring apply --config monitoring/chicago_taxi.yaml --project P --location L [--model-version V]
        [--endpoint E] [--request-log-table bq://P.D.T] [--output-uri gs://B/P]
        # creates or updates the Vertex AI ModelMonitor and its schedule (idempotent; Cloud Build calls this with
        # the environment's values from Terraform: `terraform output` platform.monitoring); before the model's
        # first version exists it says so and creates nothing

Exit status: 0 done (drift or not: the result says which; for apply, also nothing to monitor yet),
2 bad input or configuration.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from monitoring.config import DEFAULT_CONFIG, MonitoringConfigError, load_monitoring_config
from pipelines.settings import SETTINGS


def _instant(text: str) -> datetime.datetime:
    try:
        instant = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 time such as 2016-12-31T00:00:00Z") from None
    if instant.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add Z or an offset such as +00:00")
    return instant


def _run(args: argparse.Namespace) -> int:
    from monitoring.local_logging import FilterError, LocalLogging, PubSubSink
    from monitoring.monitor import MonitoringError, monitor_once
    from serving.request_log import REQUEST_LOG_DIR

    config = load_monitoring_config(args.config)
    sinks = []
    if args.sink_topic:
        try:
            sinks.append(PubSubSink(config.sink_filter.format(project=args.project), args.sink_topic))
        except FilterError as error:
            raise MonitoringConfigError(f"{config.source}: anomaly_log.sink_filter: {error}") from None
    logging = LocalLogging(SETTINGS.local_dir / "logging", sinks)
    now = datetime.datetime.now(datetime.UTC)
    output = args.output or SETTINGS.local_dir / "monitoring" / f"{config.model_name}-{now:%Y%m%d-%H%M%S-%f}"
    request_log = None if args.batch_input else (args.request_log or SETTINGS.local_dir / "endpoint" / REQUEST_LOG_DIR)
    try:
        run = monitor_once(config, args.registry, output, request_log_dir=request_log, batch_input_uri=args.batch_input,
                           window_end=args.window_end, window_hours=args.window_hours,
                           window_start=args.window_start, logging=logging,
                           project=args.project, alert_time=args.alert_time)
    except MonitoringError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(run.result.summary())
    print(f"report: {run.report}")
    if run.anomaly_entry:
        print(f"drift alert logged to {run.anomaly_entry['logName']} ({logging.entries_file})"
              + (f"; published to {args.sink_topic}: message {', '.join(run.published)}" if run.published else
                 "; no sink forwarded it" if sinks else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="the local monitor, once")
    apply = commands.add_parser("apply", help="create or update the Vertex AI ModelMonitor and its schedule")
    for command in (run, apply):
        command.add_argument("--config", default=DEFAULT_CONFIG, help=f"monitoring config (default {DEFAULT_CONFIG})")
    run.add_argument("--registry", default=str(SETTINGS.local_dir / "registry"), help="local registry folder")
    source = run.add_mutually_exclusive_group()
    source.add_argument("--request-log", type=Path, help="the endpoint's request log folder "
                                                         "(default: local/endpoint/request_log)")
    source.add_argument("--batch-input", help="a batch prediction's input: JSONL instances or CSV")
    run.add_argument("--window-end", type=_instant, help="end of the request log window (default: now)")
    run.add_argument("--window-start", type=_instant,
                     help="start of the window (default: --window-hours before its end)")
    run.add_argument("--window-hours", type=int,
                     help="length of the window (default: the config's target.window_hours)")
    run.add_argument("--alert-time", type=_instant,
                     help="the time a drift alert reports as its end (default: the window's end); a replay of "
                          "past traffic passes that traffic's time, so retraining covers its partitions")
    run.add_argument("--sink-topic", help="publish drift alert entries matching the config's sink filter to this "
                                          "Pub/Sub topic (projects/P/topics/T, on PUBSUB_EMULATOR_HOST)")
    run.add_argument("--output", type=Path, help="folder for report.html and result.json")
    run.add_argument("--project", default="local-project", help="the project in the drift alert's log name")
    apply.add_argument("--project", required=True)
    apply.add_argument("--location", required=True)
    apply.add_argument("--model-version", default=None,
                       help="Model Registry version to monitor (default: the model's default version)")
    # The environment's own values (Terraform's platform.monitoring output); each replaces the config's.
    apply.add_argument("--endpoint", default="", help="the endpoint whose request-response log is monitored "
                                                      "(projects/P/locations/L/endpoints/ID or its id)")
    apply.add_argument("--request-log-table", default="", help="that log's table, bq://PROJECT.DATASET.TABLE")
    apply.add_argument("--output-uri", default="", help="gs:// folder for Vertex's monitoring results")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        from monitoring.vertex import apply_cli

        return apply_cli(args)
    except MonitoringConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
