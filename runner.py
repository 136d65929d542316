"""The one command-line entry point for both platforms.

    python runner.py --compile                       # compiled/*.json for Vertex AI Pipelines
    python runner.py --run local [--data-uri DIR] [--param NAME=VALUE ...] [--verbose]
                                                     # a pipeline on this machine (kfp.local)
    python runner.py console [--port 8095]           # the local console: runs, models, endpoint, in a browser
    python runner.py --infer-schema                  # first use: infer the data contract to review
    python runner.py --submit ...                    # submit a run to Vertex AI (see triggers/)
    python runner.py endpoint serve|status|split ... # the local prediction endpoint (see serving/)
    python runner.py pipelines serve|list            # a local stand-in for Vertex AI Pipelines' pipelineJobs API
    python runner.py canary replay --data-uri DIR    # labelled traffic for a canary (see deploy/)
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Each concern owns its command line; this file only routes to it.
    if argv[:1] == ["endpoint"]:
        from serving.cli import main as endpoint_main

        return endpoint_main(argv[1:])
    if argv[:1] == ["pipelines"]:
        from pipelines.local_jobs_api import main as pipelines_main

        return pipelines_main(argv[1:])
    if argv[:1] == ["console"]:
        from console.app import main as console_main

        return console_main(argv[1:])
    if argv[:1] == ["canary"]:
        from deploy.cli import main as canary_main

        return canary_main(argv[1:])
    if "--submit" in argv:
        from triggers.cli import main as submit_main

        return submit_main([arg for arg in argv if arg != "--submit"])

    parser = argparse.ArgumentParser(prog="runner.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--compile", action="store_true", help="compile every pipeline into compiled/")
    action.add_argument("--run", choices=["local"], help="run a pipeline on this machine (kfp.local)")
    action.add_argument("--infer-schema", action="store_true", help="infer the schema from the sample data")
    parser.add_argument("--data-uri", default=None,
                        help="partition(s) to train on: a folder or gs:// prefix (default: the whole sample)")
    parser.add_argument("--dataset-config", default=None, help="data set description (YAML)")
    parser.add_argument("--pipeline", default="training", metavar="NAME",
                        help="which pipeline --run runs (default: training)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a pipeline parameter (repeatable), typed and checked by the compiled template; "
                             "overrides the data set config's `parameters:` defaults")
    parser.add_argument("--verbose", action="store_true",
                        help="--run: print everything kfp.local and the steps print, not one line per step")
    parser.add_argument("--output", default=None, help="where compiled templates go (default: compiled/)")
    args = parser.parse_args(argv)

    if args.compile:
        from pipelines.compile import compile_all

        for path, seconds in compile_all(args.output):
            print(f"compiled {path} in {seconds:.2f} s")
        return 0
    if args.infer_schema:
        from dataprep.validation import infer_schema_cli

        return infer_schema_cli(args.data_uri, args.dataset_config)
    from pipelines.local_run import run_local_cli
    from triggers.submission.errors import InvalidRequest
    from triggers.submission.templates import parse_assignments

    try:
        texts = parse_assignments(args.param, "--param")
    except InvalidRequest as error:
        parser.error(str(error))
    return run_local_cli(args.pipeline, texts, args.data_uri, args.dataset_config, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
