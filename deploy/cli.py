"""`python runner.py canary replay ...`: traffic and feedback for a canary on the local endpoint.

    python runner.py canary replay --data-uri data/processed/2015/01/01/0000 --rate 50 [--count 2000]

Sends the partition's labelled rows through the running endpoint (`python runner.py endpoint serve`),
one per request at the given rate, and records each answer with its label in the endpoint's
`feedback.jsonl`, which the canary decision reads as labelled evidence. The decision itself is a
pipeline: `python runner.py --run local --pipeline canary_decision`.
"""

from __future__ import annotations

import argparse
import sys

from contract.dataset import DatasetConfigError, load_dataset_config
from contract.paths import DEFAULT_DATASET_CONFIG
from deploy.local import LocalBackend, local_endpoint_dir
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
    replay_command.add_argument("--registry-uri", default=str(SETTINGS.local_dir / "registry"))
    replay_command.add_argument("--endpoint-display-name", default="",
                                help="a named local endpoint (default: the one beside the registry)")
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error(f"--count must be >= 0, got {args.count}")
    try:
        model_name = load_dataset_config(args.dataset_config).model_name
        backend = LocalBackend(local_endpoint_dir(args.registry_uri, args.endpoint_display_name), args.registry_uri,
                               model_name)
        summary = replay(backend, args.data_uri, args.dataset_config, args.rate, args.count,
                         print_every=max(1, (args.count or 1000) // 5))
    except (DatasetConfigError, EndpointError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"replayed {summary.requests} requests in {summary.seconds:.1f} s: {summary.errors} errors; answered by "
          f"deployed model {summary.by_model}; feedback in {backend.state_dir / 'feedback.jsonl'}")
    return 0
