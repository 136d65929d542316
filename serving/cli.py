"""`python runner.py endpoint ...`: the local endpoint from the command line.

    python runner.py endpoint serve [--port 8090]                 # run it (Ctrl-C stops; state is kept)
    python runner.py endpoint deploy MODEL_URI [--display-name NAME] [--split 0=10 1=90]
    python runner.py endpoint split 1=90 2=10                     # the whole split at once
    python runner.py endpoint undeploy ID [--split 2=100]
    python runner.py endpoint status [--json]                     # models, split, requests, errors, latency

In a split, keys are deployed model ids and "0" is the model being deployed.
While `serve` runs, the other commands go through it (a deploy returns once the
new model answers its health check); otherwise they edit the state directory,
and `serve` starts what it holds. Code calls the same API: serving.client.LocalEndpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from serving.client import LocalEndpoint
from serving.endpoint import EndpointError, default_state_dir


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="runner.py endpoint", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    state_dir_help = f"the endpoint's state directory (default: {default_state_dir()}, from $MLOPS_LOCAL_DIR)"
    parser.add_argument("--state-dir", type=Path, default=default_state_dir(), help=state_dir_help)
    # Also accepted after the command; SUPPRESS keeps the value given before it.
    state_dir_after = argparse.ArgumentParser(add_help=False)
    state_dir_after.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS, help=state_dir_help)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, parents=[state_dir_after])

    serve = command("serve", "run the endpoint: a router and one server per deployed model")
    serve.add_argument("--port", type=int, default=8090, help="router port on 127.0.0.1 (default: 8090)")
    serve.add_argument("--seed", type=int, default=None, help="seed the traffic split's draws (tests, demos)")

    deploy = command("deploy", "deploy a model; with --split, set the whole split at once")
    deploy.add_argument("model_uri", help="exported model directory or gs:// prefix")
    deploy.add_argument("--display-name", default="")
    deploy.add_argument("--split", nargs="+", metavar="ID=PERCENT",
                        help='the new split; "0" is this model (default: 100 on an empty endpoint, else 0)')

    split = command("split", "set the whole traffic split, e.g. 1=90 2=10")
    split.add_argument("assignments", nargs="+", metavar="ID=PERCENT")

    undeploy = command("undeploy", "undeploy a model (refused while it has traffic)")
    undeploy.add_argument("deployed_model_id")
    undeploy.add_argument("--split", nargs="+", metavar="ID=PERCENT",
                          help="move its traffic in the same step")

    status = command("status", "deployed models, split, and per-model request stats")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    args = parser.parse_args(argv)
    endpoint = LocalEndpoint(args.state_dir)
    try:
        if args.command == "serve":
            return _serve(args.state_dir, args.port, args.seed)
        if args.command == "status":
            return _status(endpoint, args.json)
        live = "" if endpoint.router_url() else " (the endpoint is not serving: `endpoint serve` applies it)"
        if args.command == "deploy":
            new_id = endpoint.deploy(args.model_uri, args.display_name,
                                     parse_split(args.split) if args.split else None)
            print(f"deployed model {new_id} ({args.model_uri}); split {endpoint.describe()['trafficSplit']}{live}")
        elif args.command == "split":
            print(f"traffic split is now {endpoint.update_split(parse_split(args.assignments))}{live}")
        else:
            remaining = endpoint.undeploy(args.deployed_model_id, parse_split(args.split) if args.split else None)
            print(f"undeployed {args.deployed_model_id}; split {remaining}{live}")
        return 0
    except EndpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def parse_split(tokens: list[str]) -> dict[str, int]:
    """["1=90", "2=10"] or ["1=90,2=10"] -> {"1": 90, "2": 10}."""
    split: dict[str, int] = {}
    for entry in (part for token in tokens for part in token.split(",") if part):
        deployed_id, equals, percent = entry.partition("=")
        if not equals or not deployed_id or not percent.strip().isdigit():
            raise EndpointError(f"split entry {entry!r}: expected ID=PERCENT with a whole percent, e.g. 1=90")
        if deployed_id in split:
            raise EndpointError(f"split entry {entry!r}: deployed model {deployed_id} is named twice")
        split[deployed_id.strip()] = int(percent)
    return split


def _serve(state_dir: Path, port: int, seed: int | None) -> int:
    from serving.router import Router, RouterConfig, run_router  # aiohttp: only for this command

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def announce(router: Router) -> None:
        print(f"endpoint {router.state.endpoint_id!r} serving on {router.url} (state in {state_dir}); "
              "Ctrl-C stops")
        print(f"  predict: POST {router.url}/v1/endpoints/{router.state.endpoint_id}:predict")
        _print_table(router.describe(), router.stats_snapshot()["deployedModels"])

    return asyncio.run(run_router(RouterConfig(state_dir=state_dir, port=port, seed=seed), on_ready=announce))


def _status(endpoint: LocalEndpoint, as_json: bool) -> int:
    described, stats = endpoint.describe(), endpoint.stats()
    if as_json:
        print(json.dumps({"endpoint": described, "stats": stats}, indent=2))
        return 0
    where = f"serving on {described['url']}" if described["url"] else "not serving (python runner.py endpoint serve)"
    print(f"endpoint {described['name']!r} in {endpoint.state_dir}: {where}")
    _print_table(described, stats)
    return 0


def _print_table(described: dict[str, Any], stats: dict[str, Any]) -> None:
    models = described["deployedModels"]
    if not models:
        print("  no deployed models: python runner.py endpoint deploy MODEL_URI")
        return
    rows = [("id", "traffic", "state", "requests", "errors", "p50 ms", "p99 ms", "name", "model")]
    for model in models:
        model_stats = stats.get(model["id"], {})
        latency = model_stats.get("latencyMs", {})
        rows.append((model["id"], f"{described['trafficSplit'].get(model['id'], 0)}%", model["state"],
                     str(model_stats.get("requests", "-")), str(model_stats.get("errors", "-")),
                     _number(latency.get("p50")), _number(latency.get("p99")), model["displayName"],
                     model["model"]))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
