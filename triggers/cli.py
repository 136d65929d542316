"""`python runner.py --submit ...`: submit one run of a compiled template to Vertex AI Pipelines.

    python runner.py --submit --template gs://my-project-templates/compiled/training_pipeline.json \\
        --param data_uri=gs://my-data/data/processed/2014/03 --label reason=backfill [--job-id ID] \\
        [--cache | --no-cache] [--rewrite-images] [--dry-run]

Project, region, pipeline root, service account and API endpoint come from the
same MLOPS_* variables as the Cloud Functions (docs/triggers.md); a flag
overrides its variable. `--param` values are typed by the template (`epochs=5`,
`hidden_units=[64,32]`). When the template takes `data_version` and it is not
given, it is the fingerprint of the listing under `data_uri` (metadata only, see
triggers/submission/data_version.py), so Vertex reuses no ingest of other bytes.
`--cache`/`--no-cache` set every task's caching as aiplatform's `enable_caching`
does; without either, each task keeps its compiled option. A given `--job-id`
makes the call idempotent: running it twice creates one run. A template that
names images in another project than the target's (compiled/ names this
repository's) is refused, naming each image: submit the template the release
published for your project, or `--rewrite-images` to take the same repository,
image and tag from your project (triggers/submission/images.py). Exit status: 0
created or already there, 2 invalid request or configuration, 75 transient
failure (try again).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

from triggers import config as settings
from triggers.submission.data_version import DATA_VERSION_PARAMETER, data_version_value, listing_version
from triggers.submission.errors import ConfigError, InvalidRequest, TemplateUnavailable, TransientError
from triggers.submission.images import foreign_images, pulls_images
from triggers.submission.pipeline_jobs import RunRequest, VertexTarget, make_job_id, prepare, submit_run
from triggers.submission.templates import load_template, parse_assignments

EXIT_INVALID = 2
EXIT_TRANSIENT = 75  # EX_TEMPFAIL: the caller may retry
FLAG_SETTINGS = {
    "project": settings.PROJECT, "region": settings.REGION, "pipeline_root": settings.PIPELINE_ROOT,
    "service_account": settings.SERVICE_ACCOUNT, "api_endpoint": settings.VERTEX_API_ENDPOINT,
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="runner.py --submit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--template", required=True, help="compiled template: local JSON path or gs://...json")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a pipeline parameter (repeatable); typed by the template")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="a run label (repeatable)")
    parser.add_argument("--job-id", help="run id; the same id twice creates one run (default: NAME-manual-TIME)")
    parser.add_argument("--display-name", help="name shown in the Vertex UI (default: the job id)")
    for flag, setting in FLAG_SETTINGS.items():
        parser.add_argument(f"--{flag.replace('_', '-')}", help=f"{setting.meaning} (default: ${setting.env})")
    parser.add_argument("--cache", action=argparse.BooleanOptionalAction, default=None,
                        help="turn execution caching on (--cache) or off (--no-cache) for every task, as "
                             "aiplatform's enable_caching does (default: as compiled)")
    parser.add_argument("--rewrite-images", action="store_true",
                        help="move the template's images from another project into the target project (same "
                             "registry, repository, image and tag) instead of refusing the template")
    parser.add_argument("--dry-run", action="store_true", help="check and print the request, do not send it")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    environ = dict(os.environ)
    environ.update({setting.env: getattr(args, flag) for flag, setting in FLAG_SETTINGS.items()
                    if getattr(args, flag) is not None})
    try:
        vertex = settings.VertexConfig.from_env(environ)
        target = VertexTarget.from_config(vertex)
        template = load_template(args.template, max_age_seconds=vertex.template_cache_seconds)
        values = dict(vertex.pipeline_parameters) | template.typed(parse_assignments(args.param, "--param"))
        if DATA_VERSION_PARAMETER not in values and isinstance(values.get("data_uri"), str):
            try:
                values.update(data_version_value(template, lambda: listing_version(values["data_uri"])))
            except (InvalidRequest, TransientError) as error:
                if not args.dry_run:
                    raise
                # A dry run sends nothing, so it needs no credentials: show the request without the listing.
                print(f"note: {DATA_VERSION_PARAMETER} is left out of this dry run ({error}); a submission lists "
                      f"{values['data_uri']} for it, or pass --param {DATA_VERSION_PARAMETER}=...", file=sys.stderr)
            if DATA_VERSION_PARAMETER not in template.parameters:
                print(f"note: {args.template} has no {DATA_VERSION_PARAMETER} parameter: on Vertex its steps may "
                      "reuse an earlier run's results for other bytes under the same data_uri (recompile it, or "
                      "use --no-cache)", file=sys.stderr)
        labels = {"trigger": "manual", **parse_assignments(args.label, "--label")}
        now = datetime.datetime.now(datetime.UTC)
        run = RunRequest(template_uri=args.template, parameter_values=values, labels=labels,
                         service_account=vertex.service_account, display_name=args.display_name,
                         job_id=args.job_id or make_job_id(template.name, "manual", f"{now:%Y%m%d%H%M%S}"),
                         enable_caching=args.cache, foreign_images="rewrite" if args.rewrite_images else "refuse")
        if args.rewrite_images and pulls_images(target.api_endpoint):
            for reference in foreign_images(template.spec, {}, target.project):
                print(f"note: image {reference.image} (project {reference.project}) is taken as "
                      f"{reference.in_project(target.project)}", file=sys.stderr)
        if args.dry_run:
            url, body = prepare(run, target)
            caching = "" if args.cache is None else f", caching {'on' if args.cache else 'off'} for every task"
            body["pipelineSpec"] = f"<{template.name} from {args.template}{caching}>"
            print(json.dumps({"url": url, "body": body}, indent=2))
            return 0
        result = submit_run(run, target)
    except (ConfigError, InvalidRequest, TemplateUnavailable) as error:  # at a terminal: a wrong path, not a race
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    except TransientError as error:
        print(f"transient error, try again: {error}", file=sys.stderr)
        return EXIT_TRANSIENT
    print(f"{'created' if result.created else 'already exists, nothing to do:'} {result.job_name}")
    return 0
